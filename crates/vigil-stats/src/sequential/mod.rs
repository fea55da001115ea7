//! Anytime-valid sequential tests: each is updated with new data and can be
//! asked for its current e-value or confidence sequence at any time, as often
//! as a rollout controller polls, without inflating the false-rollback rate.
//!
//! - [`counts`]: Dirichlet-multinomial / beta-binomial mixture e-values for
//!   error counts.
//! - [`quantile`]: time-uniform quantile bands, a sequential test on p50, p99...
//! - [`batch_rank`]: a rank e-process over per-batch comparisons, valid under
//!   drift that hits both arms.
//! - [`combine`]: e-value averaging and Holm's procedure across metrics.

pub mod batch_rank;
pub mod combine;
pub mod counts;
pub mod quantile;
