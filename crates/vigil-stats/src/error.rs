//! The crate's one error type.

use thiserror::Error;

/// What can go wrong in a statistical computation.
///
/// "Not enough data yet" is deliberately not an error: tests report it in
/// their results (an empty arm gives no p-value, a band is unbounded), so the
/// judge can answer `CONTINUE` without handling a failure.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum StatsError {
    /// A value that a histogram cannot hold (beyond its trackable range).
    #[error("value {value} is out of the histogram's range")]
    ValueOutOfRange {
        /// The rejected value.
        value: u64,
    },
    /// Subtracting more samples from a bucket than it holds.
    #[error("cannot subtract a histogram that is not contained in this one")]
    SubtractionUnderflow,
    /// A parameter outside its domain (alpha not in (0,1), negative weight, ...).
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name as the caller knows it.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A test that needs samples in both arms got an empty one.
    #[error("both arms need at least one sample")]
    EmptyArm,
    /// More samples than the exact integer arithmetic supports (2^40 per arm).
    #[error("too many samples: {n} exceeds the supported {max}")]
    TooManySamples {
        /// The offending count.
        n: u64,
        /// The supported maximum.
        max: u64,
    },
}

/// Checks that `alpha` is a probability strictly between 0 and 1.
pub(crate) fn check_alpha(name: &'static str, alpha: f64) -> Result<(), StatsError> {
    if alpha.is_finite() && alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name,
            reason: format!("must be in (0, 1), got {alpha}"),
        })
    }
}

/// Checks that a tolerance (relative or absolute) is finite and >= 0.
pub(crate) fn check_tolerance(name: &'static str, tolerance: f64) -> Result<(), StatsError> {
    if tolerance.is_finite() && tolerance >= 0.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name,
            reason: format!("must be finite and >= 0, got {tolerance}"),
        })
    }
}
