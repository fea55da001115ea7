//! The judge: turns an analysis spec and the store's slices into a verdict
//! a person can act on.
//!
//! Layout:
//! - [`analysis`]: an [`Analysis`] holds one spec and its evidence; each
//!   [`Analysis::tick`] feeds the slices completed since the last tick and
//!   returns the current [`VerdictReport`](vigil_core::VerdictReport).
//! - `track`: one metric in one dimension: its tests and what they say.
//! - [`kayenta`]: Kayenta's NetflixACAJudge semantics.
//! - [`compare`]: the one-shot comparison of two fixed sample sets
//!   (`vigil compare` and the gRPC `Compare` call).
//!
//! Methods (`policy.method`):
//! - `sequential` (default): per time slice, anytime-valid tests (a rank
//!   test of the whole distribution and one of the tail beyond each tail
//!   quantile, within the pooled slice; error-rate ratios with each slice's
//!   traffic split); ROLLBACK when the weighted mean of the tracks'
//!   e-values reaches 1 / alpha, failing tracks named by weighted Holm at
//!   alpha (whose first rejection implies that mean's, so a failing
//!   critical metric alone rolls back); PROMOTE as soon as every critical
//!   metric's confidence sequence lies inside its tolerance.
//! - `fixed-horizon`: Mann-Whitney / two-proportion z-test on the cumulative
//!   data at every tick, what people wire up by hand; invalid under repeated
//!   looks, kept to show the difference.
//! - `kayenta`: per-slice points classified and scored as Kayenta does.
//!
//! Pure: stream time is a parameter, no IO, no clock, no async.

pub mod analysis;
pub mod compare;
pub mod kayenta;
mod kayenta_method;
mod track;

pub use analysis::{Analysis, TimelineEntry};

/// Why an analysis could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] vigil_core::SpecError),
    /// A statistical parameter derived from the spec is invalid.
    #[error("invalid test parameter: {0}")]
    Stats(#[from] vigil_stats::StatsError),
}
