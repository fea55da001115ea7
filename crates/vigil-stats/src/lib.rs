//! Pure statistics on histograms and counts: everything a canary verdict
//! rests on.
//!
//! Layout:
//! - [`histogram`]: HDR histograms with shared bucket boundaries (merge,
//!   subtract, ordered buckets).
//! - [`sparse`]: the compact form the store keeps (non-empty buckets only);
//!   every test reads either form through [`BucketCounts`].
//! - [`mann_whitney`]: U, tie-corrected asymptotic and exact p-values, from
//!   two histograms in O(buckets).
//! - [`hodges_lehmann`]: the shift estimate and its interval, by bisection
//!   with O(buckets) pair counting.
//! - [`sequential`]: anytime-valid tests (counts, quantiles, batch ranks) and
//!   the combination of several metrics.
//! - [`normal`], [`special`]: the distribution functions those need.
//!
//! This crate does no IO, reads no clock (time is whatever the caller's
//! batches say), and has no async: it is checked exhaustively against
//! reference implementations (golden files from scipy and savvi) and by
//! property tests, and everything above it trusts it.

pub mod error;
pub mod histogram;
pub mod hodges_lehmann;
pub mod mann_whitney;
pub mod normal;
pub mod sequential;
pub mod sparse;
pub mod special;

pub(crate) use error::check_alpha;
pub use error::StatsError;
pub use histogram::{Bucket, BucketCounts, Histogram, RankIndex};
pub use hodges_lehmann::{hodges_lehmann, HodgesLehmann};
pub use mann_whitney::{mann_whitney, Alternative, MannWhitney, PValues};
pub use sparse::SparseHistogram;
