//! The scenario file: traffic, the change under test, and the analysis.
//!
//! A scenario is TOML. The keys of issue 7 are kept as they are; what real
//! traffic needs beyond them (endpoints with their own mix, coarse timer
//! resolution, a second latency mode) is optional and defaults to "absent".
//! Unknown keys are rejected, and every validation error names its field
//! (`canary.tail_fraction: must be in [0, 1], got 1.5`).

use serde::{Deserialize, Serialize};
use vigil_core::{AnalysisSpec, MetricKind};

/// Names filled into `[analysis]` when it leaves them out.
pub const DEFAULT_SERVICE: &str = "sim";
/// See [`DEFAULT_SERVICE`].
pub const DEFAULT_BASELINE_VERSION: &str = "baseline";
/// See [`DEFAULT_SERVICE`].
pub const DEFAULT_CANARY_VERSION: &str = "canary";

/// A problem with a scenario, naming the field (`baseline.latency_sigma`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", if field.is_empty() { message.clone() } else { format!("{field}: {message}") })]
pub struct ScenarioError {
    /// Path of the offending field; empty for a syntax error.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ScenarioError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Traffic growing linearly from `start_fraction * rps` to `rps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Share of `rps` at the start, in (0, 1].
    pub start_fraction: f64,
    /// Seconds until full traffic.
    pub ramp_s: f64,
}

/// Sinusoidal latency drift hitting both arms alike (load, time of day):
/// latencies are multiplied by `1 + amplitude * sin(2 pi t / period_s)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// In [0, 1).
    pub amplitude: f64,
    /// Seconds per cycle.
    pub period_s: f64,
}

fn default_error_rate() -> f64 {
    0.001
}
fn one() -> f64 {
    1.0
}
fn default_resolution() -> f64 {
    0.001
}

/// How the baseline behaves (and the canary before `change_at_s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Median of the lognormal latency, in milliseconds.
    pub latency_median_ms: f64,
    /// Sigma of the lognormal (of ln latency).
    pub latency_sigma: f64,
    /// Share of requests that fail.
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
    /// Bimodal latency: share of requests from a second mode (cache misses,
    /// a slow dependency), 0 for none.
    #[serde(default)]
    pub slow_fraction: f64,
    /// Median of the second mode, in milliseconds.
    #[serde(default)]
    pub slow_median_ms: Option<f64>,
    /// Sigma of the second mode (default: `latency_sigma`).
    #[serde(default)]
    pub slow_sigma: Option<f64>,
}

/// The change under test: how the canary differs from the baseline from
/// `change_at_s` on (before it, it behaves like the baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Stream seconds after the start at which the change takes effect.
    #[serde(default)]
    pub change_at_s: f64,
    /// Every canary latency is multiplied by this.
    #[serde(default = "one")]
    pub latency_multiplier: f64,
    /// Share of canary requests additionally slowed by `tail_multiplier`.
    #[serde(default)]
    pub tail_fraction: f64,
    /// See `tail_fraction`.
    #[serde(default = "one")]
    pub tail_multiplier: f64,
    /// The canary's error rate (default: the baseline's). Endpoints with
    /// their own error rate are scaled by `error_rate / baseline.error_rate`
    /// unless they set `canary_error_rate`.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Latencies of the second (slow) mode are additionally multiplied by
    /// this: a shift in one mode only.
    #[serde(default = "one")]
    pub slow_multiplier: f64,
}

/// One endpoint, with its own share of traffic, latency and errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Value of the `endpoint` label (`/charge`).
    pub name: String,
    /// Relative share of requests (normalised over all endpoints).
    #[serde(default = "one")]
    pub weight: f64,
    /// Its latencies relative to `[baseline]` (2.0: twice as slow).
    #[serde(default = "one")]
    pub latency_factor: f64,
    /// Its baseline error rate (default: `baseline.error_rate`).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Its canary error rate after the change.
    #[serde(default)]
    pub canary_error_rate: Option<f64>,
    /// Its canary latency multiplier after the change (default:
    /// `canary.latency_multiplier`).
    #[serde(default)]
    pub canary_latency_multiplier: Option<f64>,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    duration_s: f64,
    rps: f64,
    canary_fraction: f64,
    #[serde(default = "default_resolution")]
    timer_resolution_ms: f64,
    #[serde(default)]
    ramp: Option<Ramp>,
    #[serde(default)]
    drift: Option<Drift>,
    baseline: Baseline,
    #[serde(default)]
    canary: Option<Canary>,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    analysis: toml::Table,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// One line on what it shows.
    pub description: String,
    /// Stream seconds the analysis runs.
    pub duration_s: f64,
    /// Requests per second, both arms together (at full traffic).
    pub rps: f64,
    /// Share of requests the canary serves.
    pub canary_fraction: f64,
    /// Latencies are rounded to multiples of this (ms): 1.0 or 10.0 model
    /// coarse timers and give heavy ties.
    pub timer_resolution_ms: f64,
    /// Optional traffic ramp.
    pub ramp: Option<Ramp>,
    /// Optional latency drift on both arms.
    pub drift: Option<Drift>,
    /// The baseline.
    pub baseline: Baseline,
    /// The change.
    pub canary: Canary,
    /// Endpoints (none: requests carry no endpoint label).
    pub endpoints: Vec<Endpoint>,
    /// The analysis spec, names filled in.
    pub analysis: AnalysisSpec,
}

impl Default for Canary {
    fn default() -> Self {
        Self {
            change_at_s: 0.0,
            latency_multiplier: 1.0,
            tail_fraction: 0.0,
            tail_multiplier: 1.0,
            error_rate: None,
            slow_multiplier: 1.0,
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario from TOML.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text)
            .map_err(|e| ScenarioError::new("", e.to_string().trim().to_owned()))?;
        let analysis = parse_analysis(file.analysis)?;
        let scenario = Scenario {
            name: file.name,
            description: file.description,
            duration_s: file.duration_s,
            rps: file.rps,
            canary_fraction: file.canary_fraction,
            timer_resolution_ms: file.timer_resolution_ms,
            ramp: file.ramp,
            drift: file.drift,
            baseline: file.baseline,
            canary: file.canary.unwrap_or_default(),
            endpoints: file.endpoints,
            analysis,
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The canary's error rate after the change, service-wide.
    pub fn canary_error_rate(&self) -> f64 {
        self.canary.error_rate.unwrap_or(self.baseline.error_rate)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() {
            return Err(ScenarioError::new("name", "is empty"));
        }
        positive("duration_s", self.duration_s)?;
        if self.duration_s > 7.0 * 86_400.0 {
            return Err(ScenarioError::new(
                "duration_s",
                format!("must be at most a week (604800), got {}", self.duration_s),
            ));
        }
        positive("rps", self.rps)?;
        if self.rps > 1e7 {
            return Err(ScenarioError::new(
                "rps",
                format!("must be at most 1e7, got {}", self.rps),
            ));
        }
        if !(self.canary_fraction > 0.0 && self.canary_fraction < 1.0) {
            return Err(ScenarioError::new(
                "canary_fraction",
                format!("must be in (0, 1), got {}", self.canary_fraction),
            ));
        }
        positive("timer_resolution_ms", self.timer_resolution_ms)?;
        if let Some(r) = &self.ramp {
            if !(r.start_fraction > 0.0 && r.start_fraction <= 1.0) {
                return Err(ScenarioError::new(
                    "ramp.start_fraction",
                    format!("must be in (0, 1], got {}", r.start_fraction),
                ));
            }
            non_negative("ramp.ramp_s", r.ramp_s)?;
        }
        if let Some(d) = &self.drift {
            if !(d.amplitude >= 0.0 && d.amplitude < 1.0) {
                return Err(ScenarioError::new(
                    "drift.amplitude",
                    format!("must be in [0, 1), got {}", d.amplitude),
                ));
            }
            positive("drift.period_s", d.period_s)?;
        }
        let b = &self.baseline;
        positive("baseline.latency_median_ms", b.latency_median_ms)?;
        sigma("baseline.latency_sigma", b.latency_sigma)?;
        rate("baseline.error_rate", b.error_rate)?;
        if !(b.slow_fraction >= 0.0 && b.slow_fraction < 1.0) {
            return Err(ScenarioError::new(
                "baseline.slow_fraction",
                format!("must be in [0, 1), got {}", b.slow_fraction),
            ));
        }
        match (b.slow_fraction > 0.0, b.slow_median_ms) {
            (true, None) => {
                return Err(ScenarioError::new(
                    "baseline.slow_median_ms",
                    "is needed when slow_fraction > 0",
                ))
            }
            (_, Some(m)) => positive("baseline.slow_median_ms", m)?,
            (false, None) => {}
        }
        if let Some(s) = b.slow_sigma {
            sigma("baseline.slow_sigma", s)?;
        }
        let c = &self.canary;
        if !(c.change_at_s.is_finite() && c.change_at_s >= 0.0 && c.change_at_s < self.duration_s) {
            return Err(ScenarioError::new(
                "canary.change_at_s",
                format!(
                    "must be in [0, duration_s = {}), got {}",
                    self.duration_s, c.change_at_s
                ),
            ));
        }
        positive("canary.latency_multiplier", c.latency_multiplier)?;
        rate("canary.tail_fraction", c.tail_fraction)?;
        positive("canary.tail_multiplier", c.tail_multiplier)?;
        if let Some(e) = c.error_rate {
            rate("canary.error_rate", e)?;
        }
        positive("canary.slow_multiplier", c.slow_multiplier)?;
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = |f: &str| format!("endpoints[{i}].{f}");
            if e.name.trim().is_empty() {
                return Err(ScenarioError::new(at("name"), "is empty"));
            }
            if !names.insert(e.name.as_str()) {
                return Err(ScenarioError::new(
                    at("name"),
                    format!("endpoint {} is listed twice", e.name),
                ));
            }
            positive(&at("weight"), e.weight)?;
            positive(&at("latency_factor"), e.latency_factor)?;
            if let Some(r) = e.error_rate {
                rate(&at("error_rate"), r)?;
            }
            if let Some(r) = e.canary_error_rate {
                rate(&at("canary_error_rate"), r)?;
            }
            if let Some(m) = e.canary_latency_multiplier {
                positive(&at("canary_latency_multiplier"), m)?;
            }
        }
        self.validate_analysis()
    }

    /// The analysis must judge what the simulator generates: the `latency`
    /// and `error_rate` metrics of request events, against the baseline.
    fn validate_analysis(&self) -> Result<(), ScenarioError> {
        let a = &self.analysis;
        a.validate()
            .map_err(|e| ScenarioError::new(prefixed(&e.field), e.message))?;
        if a.baseline_version.is_none() {
            return Err(ScenarioError::new(
                "analysis.baseline_version",
                "the simulator compares against a baseline (SLO mode is not simulated)",
            ));
        }
        for (i, m) in a.metrics.iter().enumerate() {
            let expected = match m.name.as_str() {
                vigil_core::event::LATENCY_METRIC => MetricKind::Latency,
                vigil_core::event::ERROR_RATE_METRIC => MetricKind::ErrorRate,
                other => {
                    return Err(ScenarioError::new(
                        format!("analysis.metrics[{i}].name"),
                        format!(
                            "the simulator generates request events, which feed only `latency` and `error_rate`, not `{other}`"
                        ),
                    ))
                }
            };
            if m.kind != expected {
                return Err(ScenarioError::new(
                    format!("analysis.metrics[{i}].kind"),
                    format!(
                        "`{}` is generated as {}, not {}",
                        m.name,
                        expected.as_str(),
                        m.kind.as_str()
                    ),
                ));
            }
        }
        for (i, d) in a.dimensions.iter().enumerate() {
            if d != "endpoint" {
                return Err(ScenarioError::new(
                    format!("analysis.dimensions[{i}]"),
                    format!("the simulator labels requests only with `endpoint`, not `{d}`"),
                ));
            }
        }
        Ok(())
    }
}

fn prefixed(field: &str) -> String {
    if field.is_empty() {
        "analysis".to_owned()
    } else {
        format!("analysis.{field}")
    }
}

/// `[analysis]` with the names filled in, through the spec's own
/// deserializer and validation.
fn parse_analysis(mut table: toml::Table) -> Result<AnalysisSpec, ScenarioError> {
    for (key, value) in [
        ("service", DEFAULT_SERVICE),
        ("baseline_version", DEFAULT_BASELINE_VERSION),
        ("canary_version", DEFAULT_CANARY_VERSION),
    ] {
        table
            .entry(key)
            .or_insert_with(|| toml::Value::String(value.to_owned()));
    }
    let spec: AnalysisSpec = table
        .try_into()
        .map_err(|e: toml::de::Error| ScenarioError::new("analysis", e.message().to_owned()))?;
    Ok(spec)
}

fn positive(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("must be a positive number, got {v}"),
        ))
    }
}

fn non_negative(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::new(field, format!("must be >= 0, got {v}")))
    }
}

fn sigma(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && (0.0..=5.0).contains(&v) {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("must be in [0, 5], got {v}"),
        ))
    }
}

fn rate(field: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ScenarioError::new(
            field,
            format!("must be in [0, 1], got {v}"),
        ))
    }
}
