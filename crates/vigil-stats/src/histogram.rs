//! Histograms with shared bucket boundaries, over `hdrhistogram`.
//!
//! Every [`Histogram`] uses the same layout: HDR with 3 significant digits and
//! a lowest discernible value of 1, growing as larger values arrive. Two
//! histograms therefore always agree on where buckets begin and end, which is
//! what lets the rank tests walk both in one ordered pass: values in one
//! bucket are treated as tied.
//!
//! Values are non-negative integers in a unit the caller states (latency in
//! microseconds, say). Integers below 2048 each get a bucket of their own, so
//! integer data in that range is held exactly; above it a bucket spans at most
//! 1/1024 of its value.

use hdrhistogram::Histogram as Hdr;

use crate::StatsError;

/// Significant decimal digits every histogram keeps.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// One non-empty bucket: all values in `[low, high]` that were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Lowest value that falls into this bucket.
    pub low: u64,
    /// Highest value that falls into this bucket.
    pub high: u64,
    /// Samples recorded in it.
    pub count: u64,
}

impl Bucket {
    /// The value that stands for the bucket in estimates (its middle; for a
    /// bucket of width one, the value itself).
    pub fn value(&self) -> u64 {
        self.low + (self.high - self.low).div_ceil(2)
    }
}

/// The nearest rank of the `q`-quantile among `n` >= 1 samples, ceil(q n)
/// in [1, n], as [`BucketCounts::quantile`] reads it: `q` clamped to
/// [0, 1], NaN taken as the median.
pub fn quantile_rank(q: f64, n: u64) -> u64 {
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    ((q * n as f64).ceil() as u64).clamp(1, n)
}

/// A distribution of non-negative integer samples.
#[derive(Debug, Clone)]
pub struct Histogram {
    inner: Hdr<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Histogram {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.buckets().eq(other.buckets())
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // `new` with 3 significant digits only fails for sigfig > 5.
        #[allow(clippy::expect_used)]
        let mut inner = Hdr::new(SIGNIFICANT_DIGITS)
            .expect("3 significant digits is a valid HDR configuration");
        inner.auto(true);
        Self { inner }
    }

    /// Builds a histogram from raw samples.
    pub fn from_values<I: IntoIterator<Item = u64>>(values: I) -> Result<Self, StatsError> {
        let mut h = Self::new();
        for v in values {
            h.record(v)?;
        }
        Ok(h)
    }

    /// Records one sample.
    pub fn record(&mut self, value: u64) -> Result<(), StatsError> {
        self.record_n(value, 1)
    }

    /// Records `count` samples of the same value.
    pub fn record_n(&mut self, value: u64, count: u64) -> Result<(), StatsError> {
        self.inner
            .record_n(value, count)
            .map_err(|_| StatsError::ValueOutOfRange { value })
    }

    /// Adds every sample of `other` (histogram merge).
    pub fn merge(&mut self, other: &Histogram) -> Result<(), StatsError> {
        self.inner
            .add(&other.inner)
            .map_err(|_| StatsError::ValueOutOfRange {
                value: other.inner.max(),
            })
    }

    /// Removes every sample of `other`, which must be contained in `self`
    /// (used to expire an old time slice from a rolling window). On error
    /// `self` is unchanged.
    pub fn subtract(&mut self, other: &Histogram) -> Result<(), StatsError> {
        // Check first: hdrhistogram may have changed some buckets before it
        // notices an underflow in a later one.
        for b in other.buckets() {
            if self.inner.count_at(b.low) < b.count {
                return Err(StatsError::SubtractionUnderflow);
            }
        }
        self.inner
            .subtract(&other.inner)
            .map_err(|_| StatsError::SubtractionUnderflow)
    }

    /// Removes every sample, keeping the allocation.
    pub fn clear(&mut self) {
        self.inner.reset();
    }

    /// Whether `a` and `b` fall into the same bucket.
    pub fn same_bucket(a: u64, b: u64) -> bool {
        lowest_equivalent(a) == lowest_equivalent(b)
    }
}

/// Read access to a distribution held as buckets of the shared layout:
/// what every test in this crate needs, implemented by the dense
/// [`Histogram`] and the compact [`SparseHistogram`](crate::SparseHistogram).
pub trait BucketCounts {
    /// Number of samples.
    fn len(&self) -> u64;

    /// The non-empty buckets in increasing order of value.
    fn buckets(&self) -> impl Iterator<Item = Bucket> + '_;

    /// Whether no sample was recorded.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket holding the sample of rank `rank` (1-based, in increasing
    /// order); `None` when `rank` is 0 or beyond the number of samples.
    fn bucket_at_rank(&self, rank: u64) -> Option<Bucket> {
        if rank == 0 {
            return None;
        }
        let mut seen = 0u64;
        self.buckets().find(|b| {
            seen += b.count;
            seen >= rank
        })
    }

    /// An index for repeated rank look-ups in O(log buckets).
    fn rank_index(&self) -> RankIndex {
        let mut cumulative = Vec::new();
        let mut buckets = Vec::new();
        let mut seen = 0u64;
        for b in self.buckets() {
            seen += b.count;
            cumulative.push(seen);
            buckets.push(b);
        }
        RankIndex {
            buckets,
            cumulative,
        }
    }

    /// The `q`-quantile by nearest rank (the bucket holding the sample of
    /// rank ceil(q n)), as the bucket's representative value; `None` when
    /// empty. `q` is clamped to [0, 1].
    fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        self.bucket_at_rank(quantile_rank(q, n)).map(|b| b.value())
    }

    /// Smallest recorded value (bucket low), `None` when empty.
    fn min(&self) -> Option<u64> {
        self.buckets().next().map(|b| b.low)
    }

    /// Largest recorded value (bucket high), `None` when empty.
    fn max(&self) -> Option<u64> {
        self.buckets().last().map(|b| b.high)
    }

    /// Mean of the bucket representatives, `None` when empty.
    fn mean(&self) -> Option<f64> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let sum: f64 = self
            .buckets()
            .map(|b| b.value() as f64 * b.count as f64)
            .sum();
        Some(sum / n as f64)
    }
}

impl BucketCounts for Histogram {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.inner.iter_recorded().map(|v| {
            let high = v.value_iterated_to();
            Bucket {
                low: self.inner.lowest_equivalent(high),
                high,
                count: v.count_at_value(),
            }
        })
    }
}

/// A histogram's buckets with cumulative counts, for rank queries.
#[derive(Debug, Clone, Default)]
pub struct RankIndex {
    buckets: Vec<Bucket>,
    cumulative: Vec<u64>,
}

impl RankIndex {
    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bucket holding the sample of rank `rank` (1-based); `None` when
    /// `rank` is 0 or beyond the number of samples.
    pub fn at_rank(&self, rank: u64) -> Option<Bucket> {
        if rank == 0 {
            return None;
        }
        let i = self.cumulative.partition_point(|&c| c < rank);
        self.buckets.get(i).copied()
    }
}

/// The lowest value of the bucket that holds `value`, in the shared layout:
/// integers below 2048 are their own bucket; above, a value with highest set
/// bit k shares a bucket of width 2^(k-10).
pub fn lowest_equivalent(value: u64) -> u64 {
    if value < 2048 {
        return value;
    }
    let shift = 63 - value.leading_zeros() - 10;
    (value >> shift) << shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_integers_are_exact() {
        let h = Histogram::from_values([0, 1, 2, 2, 2047, 1000]).unwrap();
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.len(), 5);
        assert!(b.iter().all(|b| b.low == b.high));
        assert_eq!(
            b[0],
            Bucket {
                low: 0,
                high: 0,
                count: 1
            }
        );
        assert_eq!(
            b[2],
            Bucket {
                low: 2,
                high: 2,
                count: 2
            }
        );
        assert_eq!(h.len(), 6);
        assert_eq!(h.quantile(0.5), Some(2));
        assert_eq!(h.min(), Some(0));
        assert_eq!(h.max(), Some(2047));
    }

    #[test]
    fn large_values_share_buckets_within_resolution() {
        assert!(!Histogram::same_bucket(2046, 2047));
        assert!(Histogram::same_bucket(10_000, 10_001));
        assert!(!Histogram::same_bucket(10_000, 20_000));
        let h = Histogram::from_values([150_000]).unwrap();
        let b = h.buckets().next().unwrap();
        assert!(b.low <= 150_000 && 150_000 <= b.high);
        assert!((b.high - b.low) as f64 / 150_000.0 < 1.0 / 1000.0);
    }

    #[test]
    fn lowest_equivalent_matches_hdrhistogram() {
        let mut h = Histogram::new();
        for v in (0..5000).chain((1..40).map(|k| (1u64 << k) + 12_345 % (1u64 << k))) {
            h.record(v).unwrap();
            assert_eq!(lowest_equivalent(v), h.inner.lowest_equivalent(v), "v={v}");
        }
    }

    #[test]
    fn subtract_rejects_what_is_not_contained_and_leaves_self_intact() {
        let mut a = Histogram::from_values([1, 2, 3]).unwrap();
        let b = Histogram::from_values([3, 4]).unwrap();
        let before = a.clone();
        assert_eq!(a.subtract(&b), Err(StatsError::SubtractionUnderflow));
        assert_eq!(a, before);
        let c = Histogram::from_values([2, 3]).unwrap();
        a.subtract(&c).unwrap();
        assert_eq!(a, Histogram::from_values([1]).unwrap());
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let h = Histogram::new();
        assert!(h.is_empty());
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.bucket_at_rank(1), None);
        assert_eq!(h.mean(), None);
    }
}
