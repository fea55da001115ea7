//! The analysis spec: what to compare, how, and what counts as worse.
//!
//! Field names are a contract shared by YAML/JSON/TOML files, the HTTP API
//! and the proto. Unknown fields are rejected (a typo such as `tolerence`
//! must not silently fall back to a default), and [`AnalysisSpec::validate`]
//! names the offending field in every error.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::metric::{Direction, MetricKind};
use crate::names::{MetricName, ServiceName, Version};

/// A problem with a spec, naming the field (`metrics[1].tolerance`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path of the offending field; empty for a syntax error.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How the judge decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Anytime-valid tests within time slices (the default).
    #[default]
    Sequential,
    /// Mann-Whitney / proportions test on every tick: what most people wire
    /// up by hand; kept to show the difference.
    FixedHorizon,
    /// Kayenta's NetflixACAJudge semantics, for users migrating from it.
    Kayenta,
}

/// An absolute target, for a service with no baseline version running.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Quantile the target applies to (distributions only).
    #[serde(default)]
    pub quantile: Option<f64>,
    /// Largest acceptable value: milliseconds for latency, a fraction for
    /// error_rate, the metric's unit for gauges.
    pub max: f64,
}

fn default_tolerance() -> f64 {
    0.1
}
fn default_quantiles() -> Vec<f64> {
    vec![0.5, 0.99]
}
fn default_true() -> bool {
    true
}
fn default_weight() -> f64 {
    1.0
}

/// One metric of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Metric name in the stream.
    pub name: MetricName,
    /// How it is stored and compared.
    pub kind: MetricKind,
    /// Which change is bad.
    #[serde(default)]
    pub direction: Direction,
    /// Relative change accepted as harmless (0.10 = 10% worse).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Absolute margin on top (metric units; a fraction for error_rate).
    #[serde(default)]
    pub tolerance_abs: f64,
    /// For distributions: the quantiles to compare.
    #[serde(default = "default_quantiles")]
    pub quantiles: Vec<f64>,
    /// A failing critical metric alone means ROLLBACK.
    #[serde(default = "default_true")]
    pub critical: bool,
    /// Weight in the combined evidence.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// SLO mode: an absolute target instead of a baseline.
    #[serde(default)]
    pub slo: Option<Slo>,
}

/// How the judge decides and when it stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The decision method.
    #[serde(default)]
    pub method: Method,
    /// Accepted rate of false rollbacks, however often the verdict is read.
    #[serde(default = "Policy::default_alpha")]
    pub alpha: f64,
    /// Samples per arm before any verdict but CONTINUE.
    #[serde(default = "Policy::default_min_samples")]
    pub min_samples: u64,
    /// When the analysis ends: PROMOTE if nothing failed and evidence
    /// suffices, else INCONCLUSIVE.
    #[serde(default = "Policy::default_max_duration", with = "duration_text")]
    pub max_duration: Duration,
}

impl Policy {
    fn default_alpha() -> f64 {
        0.01
    }
    fn default_min_samples() -> u64 {
        50
    }
    fn default_max_duration() -> Duration {
        Duration::from_secs(30 * 60)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            method: Method::default(),
            alpha: Self::default_alpha(),
            min_samples: Self::default_min_samples(),
            max_duration: Self::default_max_duration(),
        }
    }
}

/// An analysis: canary against baseline (or against SLOs), per metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// The service under rollout.
    pub service: ServiceName,
    /// The version it is compared against; absent for a new service (SLO mode).
    #[serde(default)]
    pub baseline_version: Option<Version>,
    /// The version being rolled out.
    pub canary_version: Version,
    /// What to compare.
    pub metrics: Vec<MetricSpec>,
    /// How to decide.
    #[serde(default)]
    pub policy: Policy,
    /// Labels to judge separately as well (e.g. `endpoint`), naming the worst.
    #[serde(default)]
    pub dimensions: Vec<String>,
}

/// Text formats a spec can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

impl SpecFormat {
    /// The format a file name's extension suggests (YAML when unknown).
    pub fn from_file_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".json") {
            SpecFormat::Json
        } else if lower.ends_with(".toml") {
            SpecFormat::Toml
        } else {
            SpecFormat::Yaml
        }
    }
}

impl AnalysisSpec {
    /// Parses and validates a spec.
    pub fn parse(text: &str, format: SpecFormat) -> Result<Self, SpecError> {
        let spec: AnalysisSpec = match format {
            SpecFormat::Json => {
                serde_json::from_str(text).map_err(|e| SpecError::new("", e.to_string()))?
            }
            SpecFormat::Yaml => {
                serde_norway::from_str(text).map_err(|e| SpecError::new("", e.to_string()))?
            }
            SpecFormat::Toml => toml::from_str(text)
                .map_err(|e| SpecError::new("", e.to_string().trim().to_owned()))?,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Whether the canary is judged against absolute targets (no baseline).
    pub fn is_slo_mode(&self) -> bool {
        self.baseline_version.is_none()
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.metrics.is_empty() {
            return Err(SpecError::new("metrics", "at least one metric is needed"));
        }
        if self.baseline_version.as_ref() == Some(&self.canary_version) {
            return Err(SpecError::new(
                "canary_version",
                "must differ from baseline_version",
            ));
        }
        let p = &self.policy;
        if !(p.alpha > 0.0 && p.alpha < 0.5) {
            return Err(SpecError::new(
                "policy.alpha",
                format!("must be in (0, 0.5), got {}", p.alpha),
            ));
        }
        if p.max_duration.is_zero() {
            return Err(SpecError::new("policy.max_duration", "must be positive"));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            if d.is_empty() {
                return Err(SpecError::new(format!("dimensions[{i}]"), "is empty"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let at = |f: &str| format!("metrics[{i}].{f}");
            if !seen.insert((m.name.clone(), m.kind)) {
                return Err(SpecError::new(
                    at("name"),
                    format!("metric {} ({}) is listed twice", m.name, m.kind.as_str()),
                ));
            }
            if !(m.tolerance.is_finite() && m.tolerance >= 0.0) {
                return Err(SpecError::new(
                    at("tolerance"),
                    format!("must be >= 0, got {}", m.tolerance),
                ));
            }
            if !(m.tolerance_abs.is_finite() && m.tolerance_abs >= 0.0) {
                return Err(SpecError::new(
                    at("tolerance_abs"),
                    format!("must be >= 0, got {}", m.tolerance_abs),
                ));
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return Err(SpecError::new(
                    at("weight"),
                    format!("must be > 0, got {}", m.weight),
                ));
            }
            if m.kind != MetricKind::ErrorRate {
                if m.quantiles.is_empty() {
                    return Err(SpecError::new(
                        at("quantiles"),
                        "at least one quantile is needed",
                    ));
                }
                if let Some(q) = m.quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
                    return Err(SpecError::new(
                        at("quantiles"),
                        format!("each must be in (0, 1), got {q}"),
                    ));
                }
            }
            if m.direction == Direction::Either
                && m.tolerance > 0.0
                && m.kind == MetricKind::ErrorRate
            {
                return Err(SpecError::new(
                    at("direction"),
                    "an error rate is only worse when it increases: use `increase`",
                ));
            }
            match (&m.slo, self.is_slo_mode()) {
                (None, true) => {
                    return Err(SpecError::new(
                        at("slo"),
                        "needed without a baseline_version: the canary is judged against absolute targets",
                    ))
                }
                (Some(slo), _) => {
                    if !(slo.max.is_finite() && slo.max >= 0.0) {
                        return Err(SpecError::new(at("slo.max"), format!("must be >= 0, got {}", slo.max)));
                    }
                    match (m.kind, slo.quantile) {
                        (MetricKind::ErrorRate, Some(_)) => {
                            return Err(SpecError::new(at("slo.quantile"), "an error-rate SLO has no quantile"))
                        }
                        (MetricKind::ErrorRate, None) if slo.max > 1.0 => {
                            return Err(SpecError::new(at("slo.max"), "an error-rate SLO is a fraction in [0, 1]"))
                        }
                        (MetricKind::Latency | MetricKind::Gauge, None) => {
                            return Err(SpecError::new(at("slo.quantile"), "needed for a distribution metric"))
                        }
                        (_, Some(q)) if !(q > 0.0 && q < 1.0) => {
                            return Err(SpecError::new(at("slo.quantile"), format!("must be in (0, 1), got {q}")))
                        }
                        _ => {}
                    }
                    if self.is_slo_mode() && m.direction == Direction::Either {
                        return Err(SpecError::new(at("direction"), "an SLO is a maximum: use `increase`"));
                    }
                }
                (None, false) => {}
            }
        }
        Ok(())
    }
}

/// Durations as text (`30m`, `1h 30m`, `90s`) or a number of seconds.
mod duration_text {
    use super::*;

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
                serde::de::Error::custom(format!(
                    "invalid duration {t:?}: {e} (use e.g. \"30m\" or \"90s\")"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests;
