//! A histogram that grows slice by slice, for the cumulative (and rolling)
//! arms of a sequential test: adding or removing a slice touches only that
//! slice's buckets, and a rank look-up skips whole blocks of buckets.
//!
//! A [`SparseHistogram`] is the right form for one slice (a few dozen
//! buckets) but the wrong one for an arm that has accumulated thousands:
//! every new bucket shifts the tail of its vector, and a rank look-up walks
//! every bucket below the rank. Here the bucket indices of the shared layout
//! are grouped into blocks of [`BLOCK`] consecutive indices. A block's
//! counts take a slot of one arena (given on the block's first sample, kept
//! while the block is inside the range in use, reused once it leaves it),
//! so an arm is one allocation however many blocks it has; the blocks'
//! totals sit in one dense vector over the range of blocks in use, and the
//! totals of groups of [`GROUP`] blocks in another, so a rank is found by
//! summing group totals from the nearer end, then block totals within one
//! group, then counts within one block.
//!
//! Counts are 32-bit (half the memory an arm's tick touches); a bucket
//! holding more than `u32::MAX` samples keeps the excess in a side map, so
//! every count stays exact.
//!
//! The buckets, and therefore every statistic read through
//! [`BucketCounts`], are exactly those of a [`SparseHistogram`] holding the
//! same samples, unless the histogram was made coarser
//! ([`CumulativeHistogram::coarser`]): then each of its buckets is the
//! union of `2^bits` neighbouring buckets of the shared layout (values
//! below 1024 keep their own buckets), so a bucket's low and high are the
//! low of the first and the high of the last, and a rank falls in the
//! coarse bucket that holds the shared layout's bucket at that rank.
//! Bounds read at a coarse bucket's low (lower bounds) or high (upper
//! bounds) stay valid, only wider, and an arm spans `2^bits` times fewer
//! counters, which is what a judge tick touches per sample.

use std::collections::BTreeMap;

use crate::histogram::{quantile_rank, Bucket, BucketCounts};
use crate::sparse::{bucket_high, bucket_low, SparseHistogram};
use crate::StatsError;

/// Bucket indices per block.
pub const BLOCK: usize = 32;
const BLOCK_SHIFT: u32 = BLOCK.trailing_zeros();

/// Blocks per group in the second level of totals.
const GROUP: usize = 16;

/// A block with no slot in the arena (no sample yet).
const NO_SLOT: u32 = u32::MAX;

/// Bucket indices below this (values below 1024) are never merged: they
/// are one value wide, and merging them would widen small values by more
/// than the coarsening widens the others.
const EXACT_BELOW: u32 = 1024;

/// The most counts' memory [`CumulativeHistogram::touch`] reads: a judge
/// arm at 128 buckets per octave takes about 3 KB for a latency spread over
/// six octaves, one at the shared layout's 1,024 eight times that.
pub const TOUCH_MAX_BYTES: usize = 16 << 10;

/// The most bits [`CumulativeHistogram::coarser`] takes: a whole octave
/// of the shared layout (1024 buckets) in one bucket.
pub const MAX_COARSEN_BITS: u32 = 10;

/// A histogram in the shared bucket layout, built for adding and removing
/// whole slices and for rank look-ups.
#[derive(Debug, Clone, Default)]
pub struct CumulativeHistogram {
    /// Block number (bucket index / [`BLOCK`]) of `totals[0]`.
    first: u32,
    /// Samples per block, for every block from `first` on.
    totals: Vec<u64>,
    /// Samples per group of [`GROUP`] blocks, from `totals[0]` on.
    groups: Vec<u64>,
    /// Arena slot of each block from `first` on, [`NO_SLOT`] while the
    /// block has had no sample.
    slots: Vec<u32>,
    /// [`BLOCK`] counts per slot.
    arena: Vec<u32>,
    /// Slots of blocks that left the range, all counts zero.
    free: Vec<u32>,
    /// Per bucket index, the samples beyond `u32::MAX` (its arena count
    /// then stays at `u32::MAX`).
    excess: BTreeMap<u32, u64>,
    total: u64,
    /// Bits of the shared layout's bucket index merged into one bucket
    /// (above [`EXACT_BELOW`]); 0 keeps every bucket.
    coarsen: u32,
}

/// The bucket of a histogram coarsened by `coarsen` bits that holds the
/// shared layout's bucket `idx`.
fn own_index(coarsen: u32, idx: u32) -> u32 {
    if idx < EXACT_BELOW {
        idx
    } else {
        EXACT_BELOW + ((idx - EXACT_BELOW) >> coarsen)
    }
}

/// Bucket `own` of a histogram coarsened by `coarsen` bits, holding
/// `count` samples: from the low of the first shared-layout bucket it
/// merges to the high of the last.
fn coarse_bucket(coarsen: u32, own: u32, count: u64) -> Bucket {
    let (first, last) = if own < EXACT_BELOW {
        (own, own)
    } else {
        let first = EXACT_BELOW + ((own - EXACT_BELOW) << coarsen);
        (first, first + ((1 << coarsen) - 1))
    };
    Bucket {
        low: bucket_low(first),
        high: bucket_high(last),
        count,
    }
}

/// `slice`'s buckets in a histogram coarsened by `coarsen` bits: (index,
/// count) runs in order, neighbours that share a bucket merged.
fn own_pairs(coarsen: u32, pairs: &[(u32, u64)]) -> impl Iterator<Item = (u32, u64)> + '_ {
    let mut pairs = pairs.iter().peekable();
    std::iter::from_fn(move || {
        let &(idx, mut count) = pairs.next()?;
        let own = own_index(coarsen, idx);
        while let Some(&&(next, c)) = pairs.peek() {
            if own_index(coarsen, next) != own {
                break;
            }
            count = count.saturating_add(c);
            pairs.next();
        }
        Some((own, count))
    })
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

    /// An empty histogram whose buckets each merge `2^bits` neighbouring
    /// buckets of the shared layout (`bits` at most
    /// [`MAX_COARSEN_BITS`], larger values are taken as that): at 3 bits,
    /// 128 buckets per octave, each at most 0.78% wide.
    pub fn coarser(bits: u32) -> Self {
        Self {
            coarsen: bits.min(MAX_COARSEN_BITS),
            ..Self::default()
        }
    }

    /// Bits merged per bucket (0: the shared layout's buckets).
    pub fn coarsen_bits(&self) -> u32 {
        self.coarsen
    }

    /// This histogram's bucket for the shared layout's bucket `idx`.
    fn own_index(&self, idx: u32) -> u32 {
        own_index(self.coarsen, idx)
    }

    /// Makes room for blocks `lo..=hi`.
    fn cover(&mut self, lo: u32, hi: u32) {
        if self.totals.is_empty() {
            self.first = lo;
        }
        let first_before = self.first;
        let hi = hi.max(self.first);
        if lo < self.first {
            let extra = (self.first - lo) as usize;
            self.totals.splice(0..0, std::iter::repeat_n(0, extra));
            self.slots.splice(0..0, std::iter::repeat_n(NO_SLOT, extra));
            self.first = lo;
        }
        let needed = (hi - self.first) as usize + 1;
        if needed > self.totals.len() {
            self.totals.resize(needed, 0);
            self.slots.resize(needed, NO_SLOT);
        }
        if lo < first_before || self.groups.len() != self.totals.len().div_ceil(GROUP) {
            self.regroup();
        }
    }

    /// Recomputes the group totals (after the range of blocks moved).
    fn regroup(&mut self) {
        self.groups.clear();
        self.groups
            .extend(self.totals.chunks(GROUP).map(|c| c.iter().sum::<u64>()));
    }

    /// Offset in the arena of block `b`'s counts (relative to `first`),
    /// giving it a slot if it has none.
    fn slot_of(&mut self, b: usize) -> usize {
        let slot = match self.slots[b] {
            NO_SLOT => {
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        let slot = (self.arena.len() / BLOCK) as u32;
                        self.arena.resize(self.arena.len() + BLOCK, 0);
                        slot
                    }
                };
                self.slots[b] = slot;
                slot
            }
            slot => slot,
        };
        slot as usize * BLOCK
    }

    /// Adds `count` samples to bucket `idx` (its block covered).
    fn add_at(&mut self, idx: u32, count: u64) {
        let b = ((idx >> BLOCK_SHIFT) - self.first) as usize;
        let at = self.slot_of(b) + idx as usize % BLOCK;
        let sum = u64::from(self.arena[at]) + count;
        match u32::try_from(sum) {
            Ok(c) => self.arena[at] = c,
            Err(_) => {
                self.arena[at] = u32::MAX;
                *self.excess.entry(idx).or_insert(0) += sum - u64::from(u32::MAX);
            }
        }
        self.totals[b] += count;
        self.groups[b / GROUP] += count;
    }

    /// Adds every sample of `slice`: O(its buckets).
    pub fn add(&mut self, slice: &SparseHistogram) {
        self.add_pairs(slice.index_counts());
    }

    /// Adds the samples of `pairs`: (bucket index in the shared layout,
    /// count), in increasing index order, as a [`SparseHistogram`] holds
    /// them ([`SparseHistogram::index_counts`]).
    pub fn add_pairs(&mut self, pairs: &[(u32, u64)]) {
        let (Some(&(lo, _)), Some(&(hi, _))) = (pairs.first(), pairs.last()) else {
            return;
        };
        let (lo, hi) = (self.own_index(lo), self.own_index(hi));
        self.cover(lo >> BLOCK_SHIFT, hi >> BLOCK_SHIFT);
        let mut total = 0u64;
        for (idx, count) in own_pairs(self.coarsen, pairs) {
            self.add_at(idx, count);
            total = total.saturating_add(count);
        }
        self.total += total;
    }

    /// Records `count` samples of `value`.
    pub fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let idx = self.own_index(crate::sparse::bucket_index(value));
        let block = idx >> BLOCK_SHIFT;
        self.cover(block, block);
        self.add_at(idx, count);
        self.total += count;
    }

    /// Removes every sample of `slice`, which must be contained in `self`
    /// (a slice added earlier); on error `self` is unchanged.
    pub fn subtract(&mut self, slice: &SparseHistogram) -> Result<(), StatsError> {
        self.subtract_pairs(slice.index_counts())
    }

    /// Removes the samples of `pairs` (as [`CumulativeHistogram::add_pairs`]
    /// takes them), which must be contained in `self`; on error `self` is
    /// unchanged.
    pub fn subtract_pairs(&mut self, pairs: &[(u32, u64)]) -> Result<(), StatsError> {
        let mut total = 0u64;
        for (idx, count) in own_pairs(self.coarsen, pairs) {
            if self.count_at(idx) < count {
                return Err(StatsError::SubtractionUnderflow);
            }
            total = total.saturating_add(count);
        }
        for (idx, count) in own_pairs(self.coarsen, pairs) {
            let b = ((idx >> BLOCK_SHIFT) - self.first) as usize;
            // An emptied block keeps its slot: a rolling window refills it
            // within a few slices.
            self.totals[b] -= count;
            self.groups[b / GROUP] -= count;
            let at = self.slots[b] as usize * BLOCK + idx as usize % BLOCK;
            let left = self.count_at(idx) - count;
            let stored = u32::try_from(left).unwrap_or(u32::MAX);
            self.arena[at] = stored;
            if stored == u32::MAX || self.excess.contains_key(&idx) {
                let beyond = left - u64::from(stored);
                if beyond == 0 {
                    self.excess.remove(&idx);
                } else {
                    self.excess.insert(idx, beyond);
                }
            }
        }
        self.total -= total;
        // Keep the range to the blocks in use; the slots of the blocks
        // that leave it (all their counts zero) are free for others.
        let keep = self
            .totals
            .iter()
            .rposition(|&t| t > 0)
            .map_or(0, |i| i + 1);
        self.free
            .extend(self.slots.drain(keep..).filter(|&s| s != NO_SLOT));
        self.totals.truncate(keep);
        let lead = self.totals.iter().take_while(|&&t| t == 0).count();
        if lead > 0 {
            self.totals.drain(..lead);
            self.free
                .extend(self.slots.drain(..lead).filter(|&s| s != NO_SLOT));
            self.first += lead as u32;
        }
        if lead > 0 || self.groups.len() != self.totals.len().div_ceil(GROUP) {
            self.regroup();
        }
        Ok(())
    }

    /// The counts of block `b` (relative to `first`), if it has a slot.
    fn block(&self, b: usize) -> Option<&[u32]> {
        match *self.slots.get(b)? {
            NO_SLOT => None,
            slot => {
                let at = slot as usize * BLOCK;
                self.arena.get(at..at + BLOCK)
            }
        }
    }

    /// The true count of a bucket whose arena count is `stored`.
    fn full_count(&self, idx: u32, stored: u32) -> u64 {
        let c = u64::from(stored);
        if stored == u32::MAX {
            c + self.excess.get(&idx).copied().unwrap_or(0)
        } else {
            c
        }
    }

    /// Samples in bucket `idx`.
    fn count_at(&self, idx: u32) -> u64 {
        let Some(b) = (idx >> BLOCK_SHIFT).checked_sub(self.first) else {
            return 0;
        };
        self.block(b as usize).map_or(0, |counts| {
            self.full_count(idx, counts[idx as usize % BLOCK])
        })
    }

    /// Reads a word of each cache line its counts and totals take, and
    /// returns a value made of them (for `std::hint::black_box`): a caller
    /// about to add a slice to a histogram that is cold in memory loads it
    /// in one loop of independent reads, whose cache misses overlap,
    /// instead of one miss per bucket as it adds. Counts taking more than
    /// [`TOUCH_MAX_BYTES`] are not read (a slice's adds touch a few dozen
    /// lines; reading hundreds first would cost more than it spares).
    pub fn touch(&self) -> u64 {
        let mut acc = self.total;
        if self.arena.len() * std::mem::size_of::<u32>() <= TOUCH_MAX_BYTES {
            for x in self.arena.iter().step_by(16) {
                acc ^= u64::from(*x);
            }
        }
        for x in self.slots.iter().step_by(16) {
            acc ^= u64::from(*x);
        }
        for x in self.totals.iter().step_by(8) {
            acc ^= x;
        }
        for x in self.groups.iter().step_by(8) {
            acc ^= x;
        }
        acc
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        (self.totals.capacity() + self.groups.capacity()) * std::mem::size_of::<u64>()
            + (self.slots.capacity() + self.arena.capacity() + self.free.capacity())
                * std::mem::size_of::<u32>()
            + self.excess.len() * 2 * std::mem::size_of::<u64>()
    }

    /// Bucket index of `slot` in block `b` (relative to `first`).
    fn index(&self, b: usize, slot: usize) -> u32 {
        ((self.first + b as u32) << BLOCK_SHIFT) + slot as u32
    }

    /// Bucket `idx` (this histogram's index) holding `count` samples.
    fn bucket(&self, idx: u32, count: u64) -> Bucket {
        coarse_bucket(self.coarsen, idx, count)
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
        (0..self.slots.len())
            .filter_map(|b| self.block(b).map(|counts| (b, counts)))
            .flat_map(move |(b, counts)| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c > 0)
                    .map(move |(slot, &c)| {
                        let idx = self.index(b, slot);
                        self.bucket(idx, self.full_count(idx, c))
                    })
            })
    }

    /// O(blocks / [`GROUP`] + [`GROUP`] + [`BLOCK`]), from whichever end
    /// is nearer.
    fn bucket_at_rank(&self, rank: u64) -> Option<Bucket> {
        if rank == 0 || rank > self.total {
            return None;
        }
        let blocks = self.totals.len();
        if rank <= self.total / 2 {
            let mut seen = 0;
            let (g, _) = self.groups.iter().enumerate().find(|&(_, &gt)| {
                let found = seen + gt >= rank;
                if !found {
                    seen += gt;
                }
                found
            })?;
            for b in g * GROUP..((g + 1) * GROUP).min(blocks) {
                let t = self.totals[b];
                if seen + t < rank {
                    seen += t;
                    continue;
                }
                let counts = self.block(b)?;
                for (slot, &c) in counts.iter().enumerate() {
                    let idx = self.index(b, slot);
                    let c = self.full_count(idx, c);
                    seen += c;
                    if seen >= rank {
                        return Some(self.bucket(idx, c));
                    }
                }
                return None;
            }
        } else {
            // The same sample, counted from the top.
            let from_top = self.total - rank + 1;
            let mut seen = 0;
            let (g, _) = self.groups.iter().enumerate().rev().find(|&(_, &gt)| {
                let found = seen + gt >= from_top;
                if !found {
                    seen += gt;
                }
                found
            })?;
            for b in (g * GROUP..((g + 1) * GROUP).min(blocks)).rev() {
                let t = self.totals[b];
                if seen + t < from_top {
                    seen += t;
                    continue;
                }
                let counts = self.block(b)?;
                for (slot, &c) in counts.iter().enumerate().rev() {
                    let idx = self.index(b, slot);
                    let c = self.full_count(idx, c);
                    seen += c;
                    if seen >= from_top {
                        return Some(self.bucket(idx, c));
                    }
                }
                return None;
            }
        }
        None
    }
}

/// One bucket of a coarse run (see [`coarse_run`]): the bucket's index in
/// a histogram coarsened by some bits, and samples in it. Every index of
/// the shared layout fits 16 bits (the largest, of values near 2^64, is
/// 56,319), and a count past `u16::MAX` is carried in several pairs of the
/// same index: a quarter of the bytes of a `(u32, u64)` pair.
pub type CoarsePair = (u16, u16);

/// Gives `pairs` (one slice's shared-layout (bucket index, count) pairs,
/// in increasing index order) to `push` as the buckets of a histogram
/// coarsened by `bits` bits would hold them: (coarse index, count) pairs
/// in the same order, neighbours that share a coarse bucket merged, a
/// count past `u16::MAX` carried in several pairs of the same index.
/// Returns the number of pairs pushed.
pub fn coarse_run(bits: u32, pairs: &[(u32, u64)], mut push: impl FnMut(CoarsePair)) -> usize {
    let coarsen = bits.min(MAX_COARSEN_BITS);
    let mut pushed = 0;
    for (own, mut count) in own_pairs(coarsen, pairs) {
        // Not reachable past 56,319 (above); kept in the top bucket rather
        // than lost if it were.
        let own = u16::try_from(own).unwrap_or(u16::MAX);
        while count > 0 {
            let part = u16::try_from(count).unwrap_or(u16::MAX);
            push((own, part));
            count -= u64::from(part);
            pushed += 1;
        }
    }
    pushed
}

/// The quantiles of samples given as coarse runs ([`coarse_run`] at the
/// same `bits`; runs may overlap, as the slices of a rolling window do),
/// exactly as a [`CumulativeHistogram::coarser`]`(bits)` holding them
/// reads them with [`BucketCounts::quantile`]: for a few look-ups over a
/// few slices, this sums the runs into a dense, reused array of coarse
/// buckets instead of keeping a histogram that every slice is added to and
/// taken from.
///
/// Writes one value per entry of `qs` into `out` (`None` when there is no
/// sample) and returns the number of samples. `scratch` is working room,
/// of any content (zeroed over the span here, once; it grows to the coarse
/// span of the samples: 8 bytes per bucket, 128 buckets per octave at 3
/// bits).
pub fn quantiles_of_runs<'a>(
    bits: u32,
    runs: impl Iterator<Item = &'a [CoarsePair]> + Clone,
    qs: &[f64],
    scratch: &mut Vec<u64>,
    out: &mut Vec<Option<u64>>,
) -> u64 {
    let coarsen = bits.min(MAX_COARSEN_BITS);
    out.clear();
    // Each run is sorted, so its ends bound its span.
    let span = runs
        .clone()
        .filter_map(|run| Some((run.first()?.0, run.last()?.0)))
        .fold(None, |acc: Option<(u16, u16)>, (first, last)| {
            let (lo, hi) = (first.min(last), first.max(last));
            Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
        });
    let Some((lo, hi)) = span else {
        out.resize(qs.len(), None);
        return 0;
    };
    let width = usize::from(hi - lo) + 1;
    scratch.clear();
    scratch.resize(width, 0);
    // Counts of 16 bits: no number of pairs that fits in memory sums past
    // u64::MAX.
    let mut n = 0u64;
    for run in runs {
        for &(own, count) in run {
            // Inside the span for runs in order; a run out of order has
            // its samples outside its ends left out, not a panic.
            let at = usize::from(own.wrapping_sub(lo));
            if let Some(slot) = scratch.get_mut(at) {
                *slot += u64::from(count);
                n += u64::from(count);
            }
        }
    }
    for &q in qs {
        if n == 0 {
            out.push(None);
            continue;
        }
        let rank = quantile_rank(q, n);
        // The bucket where the count from below first reaches `rank`,
        // walked from the nearer end.
        let at = if rank <= n / 2 {
            let mut seen = 0u64;
            scratch.iter().position(|&c| {
                seen += c;
                seen >= rank
            })
        } else {
            // From above: the bucket holding the (n - rank + 1)-th largest.
            let from_top = n - rank + 1;
            let mut seen = 0u64;
            scratch.iter().rposition(|&c| {
                seen += c;
                seen >= from_top
            })
        };
        out.push(at.map(|at| coarse_bucket(coarsen, u32::from(lo) + at as u32, 0).value()));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift64 sequence.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn sparse(values: &[u64]) -> SparseHistogram {
        let mut h = SparseHistogram::new();
        for &v in values {
            h.record(v);
        }
        h
    }

    proptest::proptest! {
        /// The quantiles of runs read as those of a coarse histogram
        /// holding the same samples.
        #[test]
        fn quantiles_of_runs_read_as_the_histogram_does(
            bits in 0u32..6,
            runs in proptest::collection::vec(
                proptest::collection::vec((0u64..5_000_000, proptest::prop_oneof![9 => 1u64..4, 1 => 60_000u64..200_000]), 0..40),
                0..7,
            ),
            qs in proptest::collection::vec(proptest::prop_oneof![0.0..=1.0f64, proptest::strategy::Just(0.5), proptest::strategy::Just(0.99), proptest::strategy::Just(1.0)], 1..5),
        ) {
            let mut hist = CumulativeHistogram::coarser(bits);
            let runs: Vec<Vec<CoarsePair>> = runs
                .iter()
                .map(|run| {
                    let mut h = SparseHistogram::new();
                    for &(v, c) in run {
                        h.record_n(v, c);
                    }
                    hist.add(&h);
                    let mut coarse = Vec::new();
                    let n = coarse_run(bits, h.index_counts(), |p| coarse.push(p));
                    assert_eq!(n, coarse.len());
                    // One pair per bucket of the run's coarse histogram,
                    // more for a count past u16::MAX, in index order.
                    let mut own = CumulativeHistogram::coarser(bits);
                    own.add(&h);
                    let want: usize = own
                        .buckets()
                        .map(|b| b.count.div_ceil(u64::from(u16::MAX)) as usize)
                        .sum();
                    assert_eq!(coarse.len(), want);
                    assert!(coarse.windows(2).all(|w| w[0].0 <= w[1].0));
                    coarse
                })
                .collect();
            // Working room of any content: left over from another call.
            let (mut scratch, mut out) = (vec![u64::from(u16::MAX); 70_000], Vec::new());
            let n = quantiles_of_runs(bits, runs.iter().map(Vec::as_slice), &qs, &mut scratch, &mut out);
            proptest::prop_assert_eq!(n, BucketCounts::len(&hist));
            let expected: Vec<Option<u64>> = qs.iter().map(|&q| hist.quantile(q)).collect();
            proptest::prop_assert_eq!(&out, &expected);
            // And again, on what this call left.
            let n = quantiles_of_runs(bits, runs.iter().map(Vec::as_slice), &qs, &mut scratch, &mut out);
            proptest::prop_assert_eq!(n, BucketCounts::len(&hist));
            proptest::prop_assert_eq!(out, expected);
        }
    }

    #[test]
    fn quantiles_of_runs_out_of_order_do_not_panic() {
        // Against the contract (runs in index order): the samples outside
        // a run's ends are left out, and nothing panics.
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let runs: [&[CoarsePair]; 2] = [&[(3000, 2), (1500, 1), (2000, 1)], &[]];
        let n = quantiles_of_runs(3, runs.into_iter(), &[0.5], &mut scratch, &mut out);
        assert_eq!(n, 3);
        assert_eq!(out.len(), 1);
        let n = quantiles_of_runs(3, std::iter::empty(), &[0.5, 0.9], &mut scratch, &mut out);
        assert_eq!((n, out.as_slice()), (0, &[None, None][..]));
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
        assert!(cum.is_empty() && cum.totals.is_empty() && cum.slots.is_empty());
        assert_eq!(cum.bucket_at_rank(1), None);
    }

    #[test]
    fn ranks_across_many_groups_after_adds_and_removals() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut cum = CumulativeHistogram::new();
        let mut all = SparseHistogram::new();
        let mut window = std::collections::VecDeque::new();
        for round in 0..60 {
            // Values over many octaves: thousands of buckets, dozens of groups.
            let s = sparse(
                &(0..1 + next() % 50)
                    .map(|_| (1 + next() % 1000) << (next() % 20))
                    .collect::<Vec<_>>(),
            );
            cum.add(&s);
            all.merge(&s);
            window.push_back(s);
            if window.len() > 5 {
                let old = window.pop_front().unwrap();
                cum.subtract(&old).unwrap();
                all.subtract(&old).unwrap();
            }
            let n = BucketCounts::len(&all);
            assert_eq!(cum.len(), n);
            for rank in (0..=n + 1).step_by(1 + round % 3) {
                assert_eq!(
                    cum.bucket_at_rank(rank),
                    all.bucket_at_rank(rank),
                    "{round} {rank}"
                );
            }
        }
    }

    /// The shared layout's buckets of `all` merged as a histogram
    /// coarsened by `bits` merges them: a merged bucket spans all of its
    /// shared buckets, empty ones included.
    fn merged(all: &SparseHistogram, bits: u32) -> Vec<Bucket> {
        let mut out: Vec<(u32, Bucket)> = Vec::new();
        for &(idx, count) in all.index_counts() {
            let own = own_index(bits, idx);
            match out.last_mut() {
                Some((i, last)) if *i == own => last.count += count,
                _ => {
                    // The shared buckets merged into `own`: those whose
                    // index maps to it.
                    let first = (0..=idx)
                        .rev()
                        .take_while(|&i| own_index(bits, i) == own)
                        .last()
                        .unwrap_or(idx);
                    let last = (idx..)
                        .take_while(|&i| own_index(bits, i) == own)
                        .last()
                        .unwrap_or(idx);
                    out.push((
                        own,
                        Bucket {
                            low: bucket_low(first),
                            high: bucket_high(last),
                            count,
                        },
                    ));
                }
            }
        }
        out.into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn coarser_buckets_merge_neighbours_and_hold_each_rank() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for bits in [1, 3, 4, MAX_COARSEN_BITS] {
            let mut cum = CumulativeHistogram::coarser(bits);
            assert_eq!(cum.coarsen_bits(), bits);
            let mut all = SparseHistogram::new();
            let mut window = std::collections::VecDeque::new();
            for round in 0..40 {
                // Small exact values and values over many octaves.
                let s = sparse(
                    &(0..1 + next() % 60)
                        .map(|_| (next() % 3000) << (next() % 12))
                        .collect::<Vec<_>>(),
                );
                cum.add(&s);
                all.merge(&s);
                window.push_back(s);
                if window.len() > 4 {
                    let old = window.pop_front().unwrap();
                    cum.subtract(&old).unwrap();
                    all.subtract(&old).unwrap();
                }
                let want = merged(&all, bits);
                assert!(cum.buckets().eq(want.iter().copied()), "{bits} {round}");
                let n = BucketCounts::len(&all);
                assert_eq!(cum.len(), n);
                for rank in 1..=n {
                    let fine = all.bucket_at_rank(rank).unwrap();
                    let coarse = cum.bucket_at_rank(rank).unwrap();
                    assert!(
                        coarse.low <= fine.low && fine.high <= coarse.high,
                        "{bits} {round} {rank}: {coarse:?} does not hold {fine:?}"
                    );
                    assert!(want.contains(&coarse));
                }
            }
        }
    }

    #[test]
    fn touching_reads_without_changing() {
        let empty = CumulativeHistogram::coarser(3);
        assert_eq!(empty.touch(), 0);
        let mut a = CumulativeHistogram::coarser(3);
        a.add(&sparse(&[5000, 5000, 70_000, 900_000]));
        let before = a.clone();
        assert_eq!(a.touch(), a.touch());
        assert_eq!(a, before);
        // It reads the counts, not only the total.
        let mut b = CumulativeHistogram::coarser(3);
        b.add(&sparse(&[5000, 70_000, 70_000, 900_000]));
        assert_eq!(a.len(), b.len());
        assert_ne!(a.touch(), b.touch());
        // Counts over the limit are not read: two histograms that differ
        // only there touch alike.
        // 32 blocks per octave at the shared layout: six octaves, 24 KB.
        let wide: Vec<u64> = (20..26)
            .flat_map(|oct| (0..32).map(move |j| (1u64 << oct) + j * ((1u64 << oct) / 32)))
            .collect();
        let (mut c, mut d) = (CumulativeHistogram::new(), CumulativeHistogram::new());
        c.add(&sparse(&wide));
        d.add(&sparse(&wide));
        assert!(c.arena.len() * 4 > TOUCH_MAX_BYTES);
        c.add(&sparse(&[1000]));
        d.add(&sparse(&[1001]));
        assert_eq!(c.touch(), d.touch());
    }

    #[test]
    fn coarser_buckets_are_at_most_their_width() {
        // 3 bits: 128 buckets per octave, none wider than 2^3 / 1024 of
        // its low; values below 1024 keep their own bucket.
        let cum = CumulativeHistogram::coarser(3);
        for idx in [0, 1, 1023, 1024, 1031, 1032, 2047, 2048, 2055, 9000, 20_000] {
            let own = cum.own_index(idx);
            let b = cum.bucket(own, 1);
            assert!(b.low <= bucket_low(idx) && bucket_high(idx) <= b.high);
            if idx < 1024 {
                assert_eq!((b.low, b.high), (u64::from(idx), u64::from(idx)));
            } else {
                let width = (b.high - b.low + 1) as f64 / b.low as f64;
                assert!(width <= 8.0 / 1024.0 + 1e-12, "{idx}: {b:?}");
            }
        }
        // Recording a value lands where adding it in a slice does.
        let mut by_value = CumulativeHistogram::coarser(3);
        by_value.record_n(150_123, 2);
        let mut by_slice = CumulativeHistogram::coarser(3);
        by_slice.add(&sparse(&[150_123, 150_123]));
        assert_eq!(by_value, by_slice);
        assert!(by_value.buckets().eq(by_slice.buckets()));
    }

    #[test]
    fn counts_beyond_32_bits_stay_exact() {
        let big = u64::from(u32::MAX) + 7;
        let mut s = SparseHistogram::new();
        s.record_n(150_000, big);
        s.record_n(150_000_000, 3);
        let mut all = SparseHistogram::new();
        let mut cum = CumulativeHistogram::new();
        for _ in 0..3 {
            cum.add(&s);
            all.merge(&s);
            assert!(cum.buckets().eq(all.buckets()));
            let n = BucketCounts::len(&all);
            for rank in [1, big, big + 1, n - 3, n - 2, n] {
                assert_eq!(cum.bucket_at_rank(rank), all.bucket_at_rank(rank), "{rank}");
            }
        }
        let mut small = SparseHistogram::new();
        small.record_n(150_000, 5);
        cum.subtract(&small).unwrap();
        all.subtract(&small).unwrap();
        assert!(cum.buckets().eq(all.buckets()));
        cum.add(&small);
        all.merge(&small);
        for _ in 0..3 {
            cum.subtract(&s).unwrap_or_else(|_| panic!("subtract"));
            all.subtract(&s).unwrap_or_else(|_| panic!("subtract"));
            assert!(cum.buckets().eq(all.buckets()));
        }
        assert!(cum.excess.is_empty());
        assert_eq!(cum.len(), 0);
        let mut over = SparseHistogram::new();
        over.record_n(150_000, 1);
        assert_eq!(cum.subtract(&over), Err(StatsError::SubtractionUnderflow));
    }
}
