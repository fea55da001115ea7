//! A histogram that grows slice by slice, for the cumulative (and rolling)
//! arms of a sequential test: adding or removing a slice touches only that
//! slice's buckets, and a rank look-up skips whole blocks of buckets.
//!
//! A [`SparseHistogram`] is the right form for one slice (a few dozen
//! buckets) but the wrong one for an arm that has accumulated thousands:
//! every new bucket shifts the tail of its vector, and a rank look-up walks
//! every bucket below the rank. Here the bucket indices of the shared layout
//! are grouped into blocks of [`BLOCK`] consecutive indices; a block holds
//! the counts of all its buckets (allocated on its first sample, kept while
//! the block is inside the range in use) and the blocks' totals sit in one dense vector over the range
//! of blocks in use, so a rank is found by summing totals from the nearer
//! end and then scanning one block.
//!
//! The buckets, and therefore every statistic read through
//! [`BucketCounts`], are exactly those of a [`SparseHistogram`] holding the
//! same samples.

use crate::histogram::{Bucket, BucketCounts};
use crate::sparse::{bucket_high, bucket_low, SparseHistogram};
use crate::StatsError;

/// Bucket indices per block.
pub const BLOCK: usize = 32;
const BLOCK_SHIFT: u32 = BLOCK.trailing_zeros();

type Counts = Box<[u64; BLOCK]>;

/// A histogram in the shared bucket layout, built for adding and removing
/// whole slices and for rank look-ups.
#[derive(Debug, Clone, Default)]
pub struct CumulativeHistogram {
    /// Block number (bucket index / [`BLOCK`]) of `totals[0]`.
    first: u32,
    /// Samples per block, for every block from `first` on.
    totals: Vec<u64>,
    /// Per-bucket counts of each block, `None` while the block is empty.
    blocks: Vec<Option<Counts>>,
    total: u64,
}

impl PartialEq for CumulativeHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.buckets().eq(other.buckets())
    }
}

impl CumulativeHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for blocks `lo..=hi`.
    fn cover(&mut self, lo: u32, hi: u32) {
        if self.totals.is_empty() {
            self.first = lo;
        }
        let hi = hi.max(self.first);
        if lo < self.first {
            let extra = (self.first - lo) as usize;
            self.totals.splice(0..0, std::iter::repeat_n(0, extra));
            self.blocks.splice(0..0, std::iter::repeat_n(None, extra));
            self.first = lo;
        }
        let needed = (hi - self.first) as usize + 1;
        if needed > self.totals.len() {
            self.totals.resize(needed, 0);
            self.blocks.resize(needed, None);
        }
    }

    /// Adds every sample of `slice`: O(its buckets).
    pub fn add(&mut self, slice: &SparseHistogram) {
        let pairs = slice.index_counts();
        let (Some(&(lo, _)), Some(&(hi, _))) = (pairs.first(), pairs.last()) else {
            return;
        };
        self.cover(lo >> BLOCK_SHIFT, hi >> BLOCK_SHIFT);
        for &(idx, count) in pairs {
            let b = ((idx >> BLOCK_SHIFT) - self.first) as usize;
            let block = self.blocks[b].get_or_insert_with(|| Box::new([0; BLOCK]));
            block[idx as usize % BLOCK] += count;
            self.totals[b] += count;
        }
        self.total += slice.len();
    }

    /// Records `count` samples of `value`.
    pub fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let idx = crate::sparse::bucket_index(value);
        let block = idx >> BLOCK_SHIFT;
        self.cover(block, block);
        let b = (block - self.first) as usize;
        let counts = self.blocks[b].get_or_insert_with(|| Box::new([0; BLOCK]));
        counts[idx as usize % BLOCK] += count;
        self.totals[b] += count;
        self.total += count;
    }

    /// Removes every sample of `slice`, which must be contained in `self`
    /// (a slice added earlier); on error `self` is unchanged.
    pub fn subtract(&mut self, slice: &SparseHistogram) -> Result<(), StatsError> {
        let pairs = slice.index_counts();
        for &(idx, count) in pairs {
            if self.count_at(idx) < count {
                return Err(StatsError::SubtractionUnderflow);
            }
        }
        for &(idx, count) in pairs {
            let b = ((idx >> BLOCK_SHIFT) - self.first) as usize;
            // An emptied block keeps its allocation: a rolling window
            // refills it within a few slices.
            self.totals[b] -= count;
            if let Some(block) = &mut self.blocks[b] {
                block[idx as usize % BLOCK] -= count;
            }
        }
        self.total -= slice.len();
        // Keep the range to the blocks in use.
        let keep = self
            .totals
            .iter()
            .rposition(|&t| t > 0)
            .map_or(0, |i| i + 1);
        self.totals.truncate(keep);
        self.blocks.truncate(keep);
        let lead = self.totals.iter().take_while(|&&t| t == 0).count();
        if lead > 0 {
            self.totals.drain(..lead);
            self.blocks.drain(..lead);
            self.first += lead as u32;
        }
        Ok(())
    }

    /// Samples in bucket `idx`.
    fn count_at(&self, idx: u32) -> u64 {
        let Some(b) = (idx >> BLOCK_SHIFT).checked_sub(self.first) else {
            return 0;
        };
        self.blocks
            .get(b as usize)
            .and_then(Option::as_ref)
            .map_or(0, |block| block[idx as usize % BLOCK])
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.totals.capacity() * std::mem::size_of::<u64>()
            + self.blocks.capacity() * std::mem::size_of::<Option<Counts>>()
            + self.blocks.iter().flatten().count() * std::mem::size_of::<[u64; BLOCK]>()
    }

    fn bucket(&self, block: usize, slot: usize, count: u64) -> Bucket {
        let idx = ((self.first + block as u32) << BLOCK_SHIFT) + slot as u32;
        Bucket {
            low: bucket_low(idx),
            high: bucket_high(idx),
            count,
        }
    }
}

impl From<&SparseHistogram> for CumulativeHistogram {
    fn from(h: &SparseHistogram) -> Self {
        let mut c = Self::new();
        c.add(h);
        c
    }
}

impl BucketCounts for CumulativeHistogram {
    fn len(&self) -> u64 {
        self.total
    }

    fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(b, block)| block.as_ref().map(|counts| (b, counts)))
            .flat_map(move |(b, counts)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c > 0)
                    .map(move |(slot, &c)| self.bucket(b, slot, c))
            })
    }

    /// O(blocks + [`BLOCK`]), from whichever end is nearer.
    fn bucket_at_rank(&self, rank: u64) -> Option<Bucket> {
        if rank == 0 || rank > self.total {
            return None;
        }
        if rank <= self.total / 2 {
            let mut seen = 0;
            for (b, &t) in self.totals.iter().enumerate() {
                if seen + t < rank {
                    seen += t;
                    continue;
                }
                let counts = self.blocks[b].as_ref()?;
                for (slot, &c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        return Some(self.bucket(b, slot, c));
                    }
                }
                return None;
            }
        } else {
            // The same sample, counted from the top.
            let from_top = self.total - rank + 1;
            let mut seen = 0;
            for (b, &t) in self.totals.iter().enumerate().rev() {
                if seen + t < from_top {
                    seen += t;
                    continue;
                }
                let counts = self.blocks[b].as_ref()?;
                for (slot, &c) in counts.iter().enumerate().rev() {
                    seen += c;
                    if seen >= from_top {
                        return Some(self.bucket(b, slot, c));
                    }
                }
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sparse(values: &[u64]) -> SparseHistogram {
        let mut h = SparseHistogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    #[test]
    fn same_buckets_and_ranks_as_the_sparse_histogram() {
        let slices = [
            sparse(&[5, 5, 70, 3000, 150_000]),
            sparse(&[1, 2, 2, 64, 65, 9_999_999]),
            sparse(&[]),
            sparse(&[0, 150_001, 40_000_000_000]),
        ];
        let mut all = SparseHistogram::new();
        let mut cum = CumulativeHistogram::new();
        for s in &slices {
            all.merge(s);
            cum.add(s);
            assert!(cum.buckets().eq(all.buckets()));
            assert_eq!(BucketCounts::len(&cum), BucketCounts::len(&all));
            for rank in 0..=BucketCounts::len(&all) + 1 {
                assert_eq!(cum.bucket_at_rank(rank), all.bucket_at_rank(rank), "{rank}");
            }
        }
        for s in &slices[..2] {
            all.subtract(s).unwrap();
            cum.subtract(s).unwrap();
            assert!(cum.buckets().eq(all.buckets()));
            for rank in 0..=BucketCounts::len(&all) + 1 {
                assert_eq!(cum.bucket_at_rank(rank), all.bucket_at_rank(rank), "{rank}");
            }
        }
        let before = cum.clone();
        assert_eq!(
            cum.subtract(&slices[0]),
            Err(StatsError::SubtractionUnderflow)
        );
        assert_eq!(cum, before);
        cum.subtract(&slices[3]).unwrap();
        assert!(cum.is_empty() && cum.totals.is_empty());
        assert_eq!(cum.bucket_at_rank(1), None);
    }
}
