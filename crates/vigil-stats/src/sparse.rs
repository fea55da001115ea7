//! A compact histogram for storage: only non-empty buckets, in the same
//! layout as [`Histogram`](crate::Histogram).
//!
//! A dense HDR histogram covering latencies up to 10 s at 3 significant
//! digits holds about 14,000 counters (over 100 KiB) whatever it contains;
//! a 10-second slice of one series usually has a few dozen distinct buckets.
//! The store keeps every slice in this form (8-byte index + 8-byte count per
//! non-empty bucket) and the tests read it through [`BucketCounts`] without
//! converting.

use serde::{Deserialize, Serialize};

use crate::histogram::{Bucket, BucketCounts};
use crate::StatsError;

/// Index of the bucket holding `value` in the shared layout: integers below
/// 2048 are their own bucket; above, each power of two adds 1024 buckets.
pub fn bucket_index(value: u64) -> u32 {
    if value < 2048 {
        return value as u32;
    }
    let shift = 63 - value.leading_zeros() - 10;
    // value >> shift is in [1024, 2048).
    (shift + 1) * 1024 + ((value >> shift) as u32 - 1024)
}

/// The lowest value of bucket `index`; inverse of [`bucket_index`] on bucket
/// lows.
pub fn bucket_low(index: u32) -> u64 {
    if index < 2048 {
        return u64::from(index);
    }
    let shift = index / 1024 - 1;
    (u64::from(index % 1024) + 1024) << shift
}

/// The highest value of bucket `index`.
pub fn bucket_high(index: u32) -> u64 {
    if index < 2048 {
        return u64::from(index);
    }
    let shift = index / 1024 - 1;
    bucket_low(index) + ((1u64 << shift) - 1)
}

/// Non-empty buckets as sorted (index, count) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseHistogram {
    buckets: Vec<(u32, u64)>,
    total: u64,
}

impl SparseHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `count` samples of `value`. O(log buckets) to find the bucket;
    /// a new bucket shifts the (short) tail of the vector.
    pub fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let idx = bucket_index(value);
        match self.buckets.binary_search_by_key(&idx, |&(i, _)| i) {
            Ok(pos) => self.buckets[pos].1 += count,
            Err(pos) => self.buckets.insert(pos, (idx, count)),
        }
        self.total += count;
    }

    /// Records one sample.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &SparseHistogram) {
        if other.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.clone_from(other);
            return;
        }
        // A few buckets into many (one sample into a slice, a slice into a
        // cumulative arm): insert in place rather than rebuild the vector.
        if other.buckets.len() * 8 <= self.buckets.len() || other.buckets.len() <= 2 {
            for &(idx, count) in &other.buckets {
                match self.buckets.binary_search_by_key(&idx, |&(i, _)| i) {
                    Ok(pos) => self.buckets[pos].1 += count,
                    Err(pos) => self.buckets.insert(pos, (idx, count)),
                }
            }
            self.total += other.total;
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.buckets, &other.buckets);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1 + y.1));
                    i += 1;
                    j += 1;
                }
                (Some(&x), Some(&y)) if x.0 < y.0 => {
                    merged.push(x);
                    i += 1;
                }
                (Some(_), Some(&y)) | (None, Some(&y)) => {
                    merged.push(y);
                    j += 1;
                }
                (Some(&x), None) => {
                    merged.push(x);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
        self.total += other.total;
    }

    /// Removes every sample of `other`, which must be contained in `self`;
    /// on error `self` is unchanged.
    pub fn subtract(&mut self, other: &SparseHistogram) -> Result<(), StatsError> {
        let mut j = 0;
        for &(idx, count) in &other.buckets {
            while j < self.buckets.len() && self.buckets[j].0 < idx {
                j += 1;
            }
            match self.buckets.get(j) {
                Some(&(i, c)) if i == idx && c >= count => {}
                _ => return Err(StatsError::SubtractionUnderflow),
            }
        }
        let mut j = 0;
        for &(idx, count) in &other.buckets {
            while self.buckets[j].0 < idx {
                j += 1;
            }
            self.buckets[j].1 -= count;
        }
        self.buckets.retain(|&(_, c)| c > 0);
        self.total -= other.total;
        Ok(())
    }

    /// The non-empty buckets as (bucket index, count) pairs, in increasing
    /// order of index.
    pub fn index_counts(&self) -> &[(u32, u64)] {
        &self.buckets
    }

    /// Number of non-empty buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u32, u64)>()
    }

    /// Releases spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.buckets.shrink_to_fit();
    }
}

impl BucketCounts for SparseHistogram {
    fn len(&self) -> u64 {
        self.total
    }

    fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.buckets.iter().map(|&(idx, count)| Bucket {
            low: bucket_low(idx),
            high: bucket_high(idx),
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::lowest_equivalent;
    use crate::Histogram;

    #[test]
    fn layout_matches_hdr() {
        for v in (0..10_000u64)
            .chain((11..60).flat_map(|k| [(1u64 << k) - 1, 1u64 << k, (1u64 << k) + 777]))
        {
            let idx = bucket_index(v);
            assert_eq!(bucket_low(idx), lowest_equivalent(v), "v={v}");
            assert!(bucket_low(idx) <= v && v <= bucket_high(idx), "v={v}");
            assert_eq!(bucket_index(bucket_high(idx)), idx);
        }
    }

    #[test]
    fn same_buckets_as_the_dense_histogram() {
        let values = [0u64, 1, 5, 5, 2047, 2048, 2049, 150_000, 150_001, 9_999_999];
        let mut sparse = SparseHistogram::new();
        for &v in &values {
            sparse.record(v);
        }
        let dense = Histogram::from_values(values).unwrap();
        assert!(sparse.buckets().eq(dense.buckets()));
        assert_eq!(BucketCounts::len(&sparse), dense.len());
    }

    #[test]
    fn merge_and_subtract() {
        let mut a = SparseHistogram::new();
        let mut b = SparseHistogram::new();
        for v in [1, 3, 3, 100_000] {
            a.record(v);
        }
        for v in [2, 3, 200_000] {
            b.record(v);
        }
        let before = a.clone();
        a.merge(&b);
        assert_eq!(BucketCounts::len(&a), 7);
        assert_eq!(a.bucket_count(), 5);
        a.subtract(&b).unwrap();
        assert_eq!(a, before);
        assert_eq!(a.subtract(&b), Err(StatsError::SubtractionUnderflow));
        assert_eq!(a, before);
    }
}
