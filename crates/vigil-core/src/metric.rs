//! Metric kinds and which direction of change is bad.

/// Distribution values are stored as integers in thousandths of their unit:
/// a latency in milliseconds becomes microseconds, 0.25 CPU seconds 250.
pub const DISTRIBUTION_SCALE: f64 = 1_000.0;

use serde::{Deserialize, Serialize};

/// How a metric is stored and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A latency distribution, given in milliseconds, stored in microseconds.
    Latency,
    /// Requests and errors counters; compared as the error share.
    ErrorRate,
    /// Any other non-negative distribution-valued metric (CPU seconds, bytes),
    /// stored in thousandths of its unit like latency.
    Gauge,
}

impl MetricKind {
    /// Whether the metric is a distribution (held in histograms).
    pub fn is_distribution(self) -> bool {
        !matches!(self, MetricKind::ErrorRate)
    }

    /// The unit a person reads values in.
    pub fn unit(self) -> &'static str {
        match self {
            MetricKind::Latency => "ms",
            MetricKind::Gauge | MetricKind::ErrorRate => "",
        }
    }

    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Latency => "latency",
            MetricKind::ErrorRate => "error_rate",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Which change of a metric is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (latency, errors, CPU).
    #[default]
    Increase,
    /// Lower is worse (throughput, cache hit rate).
    Decrease,
    /// Any change is bad.
    Either,
}
