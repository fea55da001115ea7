//! The crate's error type.

use thiserror::Error;

use crate::metric::MetricKind;

/// Why a name, sample or snapshot was rejected. Each variant is a reason
/// the ingest layer counts under its own label.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A service, version or metric name that cannot be used.
    #[error("invalid {what} name: {reason}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// NaN or infinity where a number was needed.
    #[error("{what} must be a finite number, got {value}")]
    NotFinite {
        /// What the number was.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A negative latency or gauge value.
    #[error("{what} must be >= 0, got {value}")]
    Negative {
        /// What the number was.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A value too large to store.
    #[error("{what} {value} is too large to store")]
    TooLarge {
        /// What the number was.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A pre-aggregated histogram with no samples in it.
    #[error("a histogram observation holds no samples")]
    EmptyHistogram,

    /// More errors than requests in pre-aggregated counts.
    #[error("errors ({errors}) exceed requests ({requests})")]
    ErrorsExceedRequests {
        /// Requests.
        requests: u64,
        /// Errors.
        errors: u64,
    },
    /// An observation that does not fit the metric's kind (a value for an
    /// error-rate metric, an outcome for a latency metric).
    #[error("a {observation} observation does not fit metric {metric} of kind {}", .kind.as_str())]
    KindMismatch {
        /// The metric.
        metric: String,
        /// Its kind (fixed by its first sample).
        kind: MetricKind,
        /// What was offered.
        observation: &'static str,
    },
    /// A sample older than the window: it would be expired at once.
    #[error("sample at {ts} is older than the window (which starts at {window_start})")]
    TooOld {
        /// Its timestamp.
        ts: f64,
        /// Where the window starts.
        window_start: f64,
    },
    /// A snapshot that cannot be restored.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
}
