//! What the stream carries, decoded: request events and metric samples.
//!
//! A request event feeds two metrics at once, `latency` (its duration) and
//! `error_rate` (whether it failed); a metric sample feeds the metric it
//! names. Timestamps are stream time: epoch seconds as the producer stamped
//! them, never the judge's clock.

use serde::{Deserialize, Serialize};

use crate::names::{Labels, MetricName, ServiceName, Version};

/// Stream time: seconds since the Unix epoch.
pub type Timestamp = f64;

/// One observation of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    /// One sample of a distribution metric, in the metric's unit
    /// (milliseconds for latency).
    Value(f64),
    /// One request of an error-rate metric: failed or not.
    Outcome {
        /// Whether the request failed.
        error: bool,
    },
    /// Pre-aggregated counters of an error-rate metric.
    Counts {
        /// Requests.
        requests: u64,
        /// Of which failed.
        errors: u64,
    },
    /// A pre-aggregated distribution: `(value, count)` pairs, values in the
    /// metric's unit, as a histogram bucket or a batch of equal samples
    /// carries them. Recorded as `count` samples of `value` each; pairs with
    /// a zero count add nothing.
    Histogram(Vec<(f64, u64)>),
}

/// An observation with everything needed to place it in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it happened (stream time).
    pub ts: Timestamp,
    /// Emitting service.
    pub service: ServiceName,
    /// Its version.
    pub version: Version,
    /// Metric it feeds.
    pub metric: MetricName,
    /// All labels the producer sent; the store keeps the allowed ones.
    pub labels: Labels,
    /// The observation.
    pub observation: Observation,
}

/// Names of the two metrics a request event feeds.
pub const LATENCY_METRIC: &str = "latency";
/// See [`LATENCY_METRIC`].
pub const ERROR_RATE_METRIC: &str = "error_rate";
