//! Verdicts and the per-metric results behind them.

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::metric::MetricKind;

/// The judge's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The canary is worse than tolerated: roll it back.
    Rollback,
    /// Not enough evidence yet: keep watching.
    Continue,
    /// The canary is within tolerance: promote it, stop watching.
    Promote,
    /// The analysis ended without a decision the policy accepts.
    Inconclusive,
}

impl Verdict {
    /// Whether the analysis is over.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Verdict::Continue)
    }

    /// The contract name (`ROLLBACK`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Rollback => "ROLLBACK",
            Verdict::Continue => "CONTINUE",
            Verdict::Promote => "PROMOTE",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }
}

/// One metric's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricStatus {
    /// Within tolerance, with confidence.
    Pass,
    /// Worse than tolerated, with confidence.
    Fail,
    /// Not decided yet.
    Pending,
}

/// An effect estimate with its interval, in the metric's unit (ms for
/// latency, a fraction for error rates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// What is measured ("p99", "error rate").
    pub what: String,
    /// Canary's value.
    pub canary: Option<f64>,
    /// Baseline's value (or the SLO target in SLO mode).
    pub baseline: Option<f64>,
    /// Relative change (0.38 = 38% worse); `None` when the baseline is 0.
    pub relative: Option<f64>,
    /// Interval for the canary's value (confidence sequence, valid at every
    /// look) when the method gives one.
    pub canary_low: Option<f64>,
    /// See `canary_low`.
    pub canary_high: Option<f64>,
}

/// The result of one metric (in one dimension, when dimensions are judged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// Metric name.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// The dimension this result is for (`endpoint=/charge`); `None` for the
    /// metric as a whole.
    pub dimension: Option<String>,
    /// Standing.
    pub status: MetricStatus,
    /// Whether the metric is critical.
    pub critical: bool,
    /// Current e-value (sequential method).
    pub e_value: Option<f64>,
    /// P-value: anytime-valid for the sequential method.
    pub p_value: Option<f64>,
    /// Test statistic, where the method has one (U, z, score).
    pub statistic: Option<f64>,
    /// The effect that matters most (the worst quantile, or the error rate).
    pub effect: Option<Effect>,
    /// Samples (requests for error rates) in the canary.
    pub n_canary: u64,
    /// Samples in the baseline.
    pub n_baseline: u64,
    /// One sentence about this metric.
    pub summary: String,
}

/// A verdict with everything a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictReport {
    /// The verdict.
    pub verdict: Verdict,
    /// One sentence: which metric, which endpoint, how much worse, the
    /// tolerance, and what to do.
    pub reason: String,
    /// Per-metric (and per-dimension) results.
    pub metrics: Vec<MetricResult>,
    /// The worst dimension, when dimensions are judged and one failed.
    pub worst_dimension: Option<String>,
    /// Stream time at which a terminal verdict was reached.
    pub decided_at: Option<Timestamp>,
    /// Stream time of this evaluation.
    pub evaluated_at: Timestamp,
}
