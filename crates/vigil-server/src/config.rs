//! `vigil serve`'s configuration: a TOML file, then `VIGIL_*` environment
//! variables (nested keys with `__`: `VIGIL_AUTH__TOKENS`), then command
//! line flags, merged with `figment`. Defaults serve on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use vigil_core::spec::{MetricSpec, Policy};
use vigil_core::store::StoreConfig;

/// Everything `vigil serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (port 0: any free port).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Largest accepted HTTP request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest accepted gRPC message, in bytes.
    pub max_grpc_message_bytes: usize,
    /// How often the judge ticker looks for new stream time, e.g. "1s".
    #[serde(with = "duration_text")]
    pub tick_interval: Duration,
    /// How long (wall clock) after stream time enters a new slice the judge
    /// still waits for samples of the slice before it, e.g. "2s": samples
    /// from a Kafka partition or a client batch a little behind the newest
    /// one. The judge reads a slice once and never again, so samples that
    /// arrive later are stored but not judged. When the stream moves on
    /// faster than this (a backlog, a replay), a slice is judged once the
    /// stream is a whole slice past it. "0s" judges a slice as soon as the
    /// stream leaves it.
    #[serde(with = "duration_text")]
    pub slice_grace: Duration,
    /// Stream time after its last sample during which a version still
    /// counts as emitting (for auto analyses and Flagger), e.g. "2m".
    #[serde(with = "duration_text")]
    pub emitting_within: Duration,
    /// Kafka brokers (the Kafka ingest plugs into the same store).
    pub kafka_brokers: Vec<String>,
    /// OTLP/gRPC receiver (`TraceService`/`MetricsService` export) listen
    /// address, OTLP's port being 4317; off when unset. It has neither TLS
    /// nor auth of its own: bind it to loopback or a trusted network.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// The store's shape and bounds.
    pub store: StoreConfig,
    /// Bearer tokens.
    pub auth: AuthConfig,
    /// TLS for both ports.
    pub tls: TlsConfig,
    /// Analyses that start themselves when a new version starts emitting.
    pub auto_analysis: Vec<AutoRule>,
    /// Analysis templates offered to Kayenta clients (`GET /canaryConfig`).
    pub kayenta_configs: Vec<Template>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 * 1024 * 1024,
            max_grpc_message_bytes: 16 * 1024 * 1024,
            tick_interval: Duration::from_secs(1),
            slice_grace: Duration::from_secs(2),
            emitting_within: Duration::from_secs(120),
            kafka_brokers: Vec::new(),
            otlp_grpc_addr: None,
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            auto_analysis: Vec::new(),
            kayenta_configs: Vec::new(),
        }
    }
}

/// Bearer-token authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens. When none are configured (here or in
    /// `tokens_file`), nothing requires a token.
    pub tokens: Vec<String>,
    /// A file with one token per line (blank lines and `#` comments ignored).
    pub tokens_file: Option<PathBuf>,
    /// Also require a token on reads (writes always need one when tokens
    /// are configured). Health, readiness and metrics stay open.
    pub require_on_reads: bool,
    /// Route groups that need no token even when tokens are configured,
    /// for controllers that can send no credentials at all (Kayenta itself
    /// has no auth: Spinnaker keeps it on an internal network). Only with a
    /// network policy that lets the controller alone reach the HTTP port.
    pub open_routes: Vec<RouteGroup>,
}

/// A group of HTTP routes serving one kind of rollout controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteGroup {
    /// The Kayenta-compatible API: `/canaryConfig`, `/canary/{id}`.
    Kayenta,
    /// Flagger webhooks: `/v1/flagger/{hook}`.
    Flagger,
}

impl RouteGroup {
    /// The group of an HTTP route (as matched, e.g. `/canary/{id}`).
    pub fn of_route(route: &str) -> Option<Self> {
        if route == "/canaryConfig"
            || route.starts_with("/canaryConfig/")
            || route.starts_with("/canary/")
        {
            Some(Self::Kayenta)
        } else if route.starts_with("/v1/flagger/") {
            Some(Self::Flagger)
        } else {
            None
        }
    }
}

/// TLS with rustls, for both ports, when both files are given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// What an analysis started by Vigil itself (or by a Kayenta/Flagger
/// client) compares: the spec without service and versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Name (for Kayenta: the canary config name and id).
    #[serde(default = "Template::default_name")]
    pub name: String,
    /// The service, when the template is for one service only.
    #[serde(default)]
    pub service: Option<String>,
    /// Metrics; default: `latency` and `error_rate` with spec defaults.
    #[serde(default = "Template::default_metrics")]
    pub metrics: Vec<MetricSpec>,
    /// Policy; default: the spec's.
    #[serde(default)]
    pub policy: Policy,
    /// Dimensions to judge separately too.
    #[serde(default)]
    pub dimensions: Vec<String>,
}

impl Template {
    fn default_name() -> String {
        "default".to_owned()
    }

    /// `latency` (p50, p99, 10%) and `error_rate` (10% relative plus 0.2
    /// points absolute), both critical.
    pub fn default_metrics() -> Vec<MetricSpec> {
        serde_json::from_value(serde_json::json!([
            {"name": "latency", "kind": "latency"},
            {"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002}
        ]))
        .unwrap_or_default()
    }
}

impl Default for Template {
    fn default() -> Self {
        Self {
            name: Self::default_name(),
            service: None,
            metrics: Self::default_metrics(),
            policy: Policy::default(),
            dimensions: Vec::new(),
        }
    }
}

/// `[[auto_analysis]]`: for `service` (or `*`, every service), start an
/// analysis when a new version starts emitting while an older one still is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRule {
    /// A service name, or `*`.
    pub service: String,
    /// Metrics; default: `latency` and `error_rate`.
    #[serde(default = "Template::default_metrics")]
    pub metrics: Vec<MetricSpec>,
    /// Policy; default: the spec's.
    #[serde(default)]
    pub policy: Policy,
    /// Dimensions to judge separately too.
    #[serde(default)]
    pub dimensions: Vec<String>,
}

impl AutoRule {
    /// Whether the rule applies to `service`.
    pub fn matches(&self, service: &str) -> bool {
        self.service == "*" || self.service == service
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Merging or decoding failed (names the key).
    #[error("configuration: {0}")]
    Figment(Box<figment::Error>),
    /// A file named by the configuration cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something else, naming the key.
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Defaults, then `file` (when given), then `VIGIL_*` variables, then
    /// `overrides` (command line flags, already in config form).
    pub fn load(
        file: Option<&Path>,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Io {
                    path: f.to_owned(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only variables naming a config key: VIGIL_TOKEN and VIGIL_ADDR
        // belong to the clients, not to the server.
        let keys: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let env = Env::prefixed("VIGIL_").split("__").filter(move |k| {
            let top = k.as_str().split('.').next().unwrap_or("");
            keys.iter().any(|key| key.eq_ignore_ascii_case(top))
        });
        fig = fig.merge(env).merge(Serialized::defaults(overrides));
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Figment(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if self.tick_interval.is_zero() {
            return Err(invalid("tick_interval", "must be positive"));
        }
        if self.store.slice_secs == 0 {
            return Err(invalid("store.slice_secs", "must be positive"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(invalid("tls", "cert and key must be given together"));
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes", "must be positive"));
        }
        Ok(())
    }

    /// The effective configuration as TOML (`vigil serve --print-config`).
    /// Tokens are masked.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for t in &mut shown.auth.tokens {
            *t = "********".to_owned();
        }
        toml_text(&shown)
    }
}

fn toml_text(c: &Config) -> String {
    // figment's Toml provider is read-only; render through serde_json to a
    // simple TOML writer of our own would duplicate the toml crate, so use
    // the crate the workspace already has.
    match toml::to_string_pretty(c) {
        Ok(s) => s,
        Err(e) => format!("# cannot render configuration: {e}\n"),
    }
}

/// Durations as text (`1s`, `500ms`, `2m`).
pub(crate) mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(u64),
            Text(String),
        }
        match Text::deserialize(d)? {
            Text::Seconds(s) => Ok(Duration::from_secs(s)),
            Text::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                serde::de::Error::custom(format!("invalid duration {t:?}: {e} (use e.g. \"1s\")"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    // figment's Jail returns its large error type; only in tests.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use super::*;

    #[test]
    fn file_env_and_flags_merge_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                r#"
                http_addr = "127.0.0.1:9000"
                tick_interval = "250ms"
                [auth]
                tokens = ["a"]
                open_routes = ["kayenta"]
                [[auto_analysis]]
                service = "*"
                "#,
            )?;
            jail.set_env("VIGIL_HTTP_ADDR", "127.0.0.1:9001");
            jail.set_env("VIGIL_AUTH__REQUIRE_ON_READS", "true");
            jail.set_env("VIGIL_TOKEN", "for the clients");
            let mut flags = serde_json::Map::new();
            flags.insert("grpc_addr".into(), "127.0.0.1:0".into());
            let c = Config::load(Some(Path::new("vigil.toml")), &flags).unwrap();
            assert_eq!(c.http_addr.port(), 9001);
            assert_eq!(c.grpc_addr.port(), 0);
            assert_eq!(c.tick_interval, Duration::from_millis(250));
            assert!(c.auth.require_on_reads);
            assert_eq!(c.auth.open_routes, vec![RouteGroup::Kayenta]);
            assert_eq!(c.auto_analysis[0].metrics.len(), 2);
            let shown = c.to_toml();
            assert!(
                shown.contains("********") && !shown.contains("\"a\""),
                "{shown}"
            );
            Ok(())
        });
    }

    #[test]
    fn route_groups() {
        assert_eq!(
            RouteGroup::of_route("/canaryConfig"),
            Some(RouteGroup::Kayenta)
        );
        assert_eq!(
            RouteGroup::of_route("/canaryConfig/{id}"),
            Some(RouteGroup::Kayenta)
        );
        assert_eq!(
            RouteGroup::of_route("/canary/{id}"),
            Some(RouteGroup::Kayenta)
        );
        assert_eq!(
            RouteGroup::of_route("/v1/flagger/{hook}"),
            Some(RouteGroup::Flagger)
        );
        assert_eq!(RouteGroup::of_route("/v1/analyses"), None);
        assert_eq!(RouteGroup::of_route("unmatched"), None);
    }

    #[test]
    fn unknown_route_groups_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vigil.toml", "[auth]\nopen_routes = [\"argo\"]\n")?;
            let err = Config::load(Some(Path::new("vigil.toml")), &Default::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("argo") && err.contains("kayenta"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vigil.toml", "tick_intervall = \"1s\"\n")?;
            let err = Config::load(Some(Path::new("vigil.toml")), &Default::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("tick_intervall"), "{err}");
            Ok(())
        });
    }
}
