//! One series' window, compact: completed slices encoded in one byte ring,
//! the newest (open) slice, and the few before it while samples still
//! arrive late for them, as plain buckets.
//!
//! Layout. A series holds the slices `first ..= open_index`, every index in
//! that range (a slice without data is one byte), so a slice's index is
//! implicit from its position:
//! - `done`: the oldest completed slices, each a LEB128 length then its
//!   payload. An empty payload is a slice without data. A distribution
//!   payload is its non-empty buckets in increasing order, each a varint
//!   token `(index delta) << 1 | (count == 1)`, followed by a varint count
//!   when the count is not 1 (most buckets of a 10 s slice hold one sample,
//!   and neighbouring bucket indices are close, so a bucket costs 2 bytes
//!   where a `(u32, u64)` pair costs 16). A counter payload is two varints,
//!   requests and errors.
//! - `open`: the newest slice, as [`Buckets`] (sorted pairs plus a buffer
//!   of single samples' bucket indices, and a dense count once the slice
//!   is busy) or the two counters, which samples update in place.
//! - recent slices (in `late`, for a series that gets late samples): the
//!   completed slices newer than the ring's, kept as the open one is, up
//!   to the series' allowed lateness ([`Late::depth`], at most
//!   [`MAX_DEPTH`] slices). It follows the stream: it rises at once to
//!   the lateness of a sample that came later than it allows (the newest
//!   ring slices are decoded back into recent ones), and falls back to
//!   what the stream needed after [`DEPTH_PERIOD`] slices. A series in
//!   stream order has none. When the open slice advances, the completed
//!   slices past the allowed lateness are encoded onto the ring's end
//!   (all are newer than what it holds, so nothing is re-encoded). A
//!   partitioned Kafka topic read in parallel delivers a series' samples
//!   dozens of slices apart, even in stream order: this makes a late
//!   sample as cheap as an in-order one.
//!
//! The ring is a `VecDeque<u8>` grown by an eighth at a time, so it stays
//! within about 12% of the window's encoded size; expiring the oldest slice
//! pops its bytes off the front without moving the rest.
//! - late additions (also in `late`): samples for ring slices, or slices
//!   older than any held (inside the window), kept per slice like `open`
//!   and merged into the ring in one pass once they take twice the ring's
//!   bytes (plus [`LATE_MIN_BYTES`]): each slice they touch is decoded,
//!   added to and re-encoded. Readers merge them into what they decode.

use std::collections::VecDeque;

use vigil_stats::SparseHistogram;

use super::{Slice, SliceData};

/// Writes `v` as LEB128.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 value; `None` on a truncated or over-long encoding.
fn get_varint(bytes: &mut impl Iterator<Item = u8>) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes.next()?;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Appends the payload of a distribution slice.
fn encode_buckets(buckets: &[(u32, u64)], out: &mut Vec<u8>) {
    let mut prev = 0u32;
    for &(idx, count) in buckets {
        let token = (u64::from(idx - prev) << 1) | u64::from(count == 1);
        put_varint(out, token);
        if count != 1 {
            put_varint(out, count);
        }
        prev = idx;
    }
}

/// Decodes a distribution payload into sorted pairs (appended to `out`).
fn decode_buckets(mut bytes: impl Iterator<Item = u8>, out: &mut Vec<(u32, u64)>) {
    let mut idx = 0u32;
    while let Some(token) = get_varint(&mut bytes) {
        idx = idx.saturating_add((token >> 1) as u32);
        let count = if token & 1 == 1 {
            1
        } else {
            match get_varint(&mut bytes) {
                Some(c) => c,
                None => return,
            }
        };
        out.push((idx, count));
    }
}

/// Adds sorted, deduplicated pairs into sorted pairs, in place: one
/// binary search for a single pair, else a merge from the back.
pub(super) fn merge_buckets(dst: &mut Vec<(u32, u64)>, src: &[(u32, u64)]) {
    if let [(idx, count)] = src {
        match dst.binary_search_by_key(idx, |&(i, _)| i) {
            Ok(pos) => dst[pos].1 += count,
            Err(pos) => dst.insert(pos, (*idx, *count)),
        }
        return;
    }
    merge_runs(dst, src.iter().copied());
}

/// Adds `runs` (sorted by index, each index once) into sorted pairs, in
/// place: count the new indices, grow once, then merge from the back so
/// that nothing is overwritten before it is read.
fn merge_runs<I>(dst: &mut Vec<(u32, u64)>, runs: I)
where
    I: DoubleEndedIterator<Item = (u32, u64)> + Clone,
{
    let (mut i, mut new) = (0, 0);
    for (idx, _) in runs.clone() {
        while i < dst.len() && dst[i].0 < idx {
            i += 1;
        }
        if i >= dst.len() || dst[i].0 != idx {
            new += 1;
        }
    }
    let old_len = dst.len();
    // Exact growth: a slice is merged into once per buffer of its size,
    // and doubling would leave up to half of it unused.
    dst.reserve_exact(new);
    dst.resize(old_len + new, (0, 0));
    let (mut a, mut w) = (old_len, old_len + new);
    for (idx, count) in runs.rev() {
        while a > 0 && dst[a - 1].0 > idx {
            w -= 1;
            dst[w] = dst[a - 1];
            a -= 1;
        }
        w -= 1;
        if a > 0 && dst[a - 1].0 == idx {
            dst[w] = (idx, dst[a - 1].1 + count);
            a -= 1;
        } else {
            dst[w] = (idx, count);
        }
    }
}

/// Sorts bucket indices: a least-significant-digit radix sort by bytes,
/// only over the bytes some index uses (two for any value the store
/// takes: indices stay below 2^16), for buffers of a few hundred or more
/// (a comparison sort's dozen compares per index took a sixth of the
/// ingest time); `sort_unstable` below that.
fn sort_units(units: &mut [u32], tmp: &mut Vec<u32>) {
    if units.len() < 256 {
        units.sort_unstable();
        return;
    }
    let max = units.iter().copied().max().unwrap_or(0);
    let bytes = (32 - max.leading_zeros()).div_ceil(8);
    tmp.clear();
    tmp.resize(units.len(), 0);
    let (mut src, mut dst): (&mut [u32], &mut [u32]) = (units, tmp);
    for byte in 0..bytes {
        let shift = byte * 8;
        let mut starts = [0usize; 256];
        for &u in src.iter() {
            starts[((u >> shift) & 0xff) as usize] += 1;
        }
        let mut at = 0;
        for start in &mut starts {
            let n = *start;
            *start = at;
            at += n;
        }
        for &u in src.iter() {
            let digit = ((u >> shift) & 0xff) as usize;
            dst[starts[digit]] = u;
            starts[digit] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    // After an odd number of passes the sorted indices are in `tmp`.
    if bytes % 2 == 1 {
        dst.copy_from_slice(src);
    }
}

/// Bucket indices the store makes are below this: `bucket_index(u64::MAX)`
/// is 56,319.
const INDEX_LIMIT: usize = 56_320;

/// Buffers of at least this many indices are counted (see [`tally_runs`]);
/// smaller ones are sorted, which costs less than a pass over their span:
/// counting from 32 on made the judge tick, which reads open slices of a
/// hundred samples, 7% slower (`cargo bench --bench judge`).
const TALLY_MIN: usize = 128;

/// A buffer is counted when its indices span fewer than this many times
/// its length: passing over an empty count costs a fraction of a
/// nanosecond, sorting an index ten or more.
const TALLY_SPAN: usize = 32;

/// A count per bucket index, all zero between uses (see [`tally_runs`]),
/// and the runs it gives.
type Tally = (Vec<u32>, Vec<(u32, u64)>);

thread_local! {
    /// Each thread's [`Tally`].
    static TALLY: std::cell::RefCell<Tally> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    /// Each thread's copy of a slice's buffered indices, sorted when the
    /// slice is read (it keeps its own unsorted): a judge tick reads
    /// several open slices per analysis.
    static UNITS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The runs of `units` (bucket indices of single samples, in any order):
/// each index once, in increasing order, with how often it occurs, passed
/// to `f`. `units` may be left reordered.
///
/// A buffer of [`TALLY_MIN`] or more whose indices span less than
/// [`TALLY_SPAN`] times its length is counted in a per-thread table (a
/// counting sort: one increment per index, then one pass over the span,
/// which also sets the table back to zero; the table takes 220 KB per
/// thread that uses it); others are sorted. The radix sort and the merge
/// of its runs were over a quarter of a Kafka ingest worker's time
/// (`cargo bench --bench ingest_path`).
fn with_runs<R>(units: &mut [u32], mut f: impl FnMut(&[(u32, u64)]) -> R) -> R {
    let done = TALLY.with(|tally| {
        let mut tally = tally.try_borrow_mut().ok()?;
        let (table, runs) = &mut *tally;
        if !tally_runs(units, table, runs) {
            sorted_runs(units, runs);
        }
        Some(f(runs))
    });
    match done {
        Some(r) => r,
        None => {
            let mut runs = Vec::new();
            sorted_runs(units, &mut runs);
            f(&runs)
        }
    }
}

/// The runs of `units`, sorted, into `runs` (cleared first): the thread's
/// buffer when [`with_runs`] has it, so that the many small buffers of a
/// judge tick (open slices of a hundred samples) and of ingest allocate
/// nothing here.
fn sorted_runs(units: &mut [u32], runs: &mut Vec<(u32, u64)>) {
    sort_units(units, &mut Vec::new());
    runs.clear();
    runs.extend(
        units
            .chunk_by(|a, b| a == b)
            .map(|run| (run[0], run.len() as u64)),
    );
}

/// Counts `units` in `table` into `runs` (cleared first), if they suit a
/// count (see [`with_runs`]); false, and nothing changed, if not.
fn tally_runs(units: &[u32], table: &mut Vec<u32>, runs: &mut Vec<(u32, u64)>) -> bool {
    if units.len() < TALLY_MIN || units.len() > u32::MAX as usize {
        return false;
    }
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    for &u in units {
        lo = lo.min(u);
        hi = hi.max(u);
    }
    let (lo, hi) = (lo as usize, hi as usize);
    if hi >= INDEX_LIMIT || hi - lo >= TALLY_SPAN * units.len() {
        return false;
    }
    if table.len() < INDEX_LIMIT {
        table.resize(INDEX_LIMIT, 0);
    }
    for &u in units {
        table[u as usize] += 1;
    }
    runs.clear();
    for (idx, count) in table[lo..=hi].iter_mut().enumerate() {
        if *count != 0 {
            runs.push(((lo + idx) as u32, u64::from(*count)));
            *count = 0;
        }
    }
    true
}

/// Adds bucket indices of single samples (any order, repeats allowed,
/// left reordered) into sorted pairs, in place.
fn add_units_into(dst: &mut Vec<(u32, u64)>, units: &mut [u32]) {
    with_runs(units, |runs| merge_buckets(dst, runs));
}

/// Bucket indices of single samples a slice buffers before sorting them
/// in, at least (see [`Buckets`]).
const UNITS_MIN: usize = 32;

/// A count per bucket index over one contiguous span: what a busy slice
/// collects its single samples in (see [`Buckets`]). Empty when unused.
#[derive(Debug, Clone, Default)]
struct Dense {
    /// The bucket index of `counts[0]`.
    base: u32,
    counts: Vec<u32>,
    /// Samples counted.
    samples: u64,
}

/// Samples (pairs and buffered) a slice holds before it may count its
/// samples densely: below this, sparse pairs are small and sorting few
/// indices is cheap.
const DENSE_MIN: usize = 512;

/// A dense count may span at most this many indices per sample it holds:
/// 4 bytes per index in the span, against the 16 bytes a pair takes, so a
/// dense count takes at most twice what the sparse pairs of as many
/// samples would, at worst (and only while its slice is open or recent).
/// At 4 (never more than the pairs), a slice filled in chunks of a few
/// hundred samples, as a consumer of many partitions fills it, started
/// counting densely only once half full: 15% more time in `cargo bench
/// --bench ingest_path`'s partition order, merging chunks into the pairs.
const DENSE_SPAN_PER_SAMPLE: u64 = 8;

impl Dense {
    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Counts one sample; false (and nothing counted) when `idx` is outside
    /// the span or its count is full.
    #[inline]
    fn add(&mut self, idx: u32) -> bool {
        let Some(count) = idx
            .checked_sub(self.base)
            .and_then(|at| self.counts.get_mut(at as usize))
        else {
            return false;
        };
        match count.checked_add(1) {
            Some(c) => {
                *count = c;
                self.samples += 1;
                true
            }
            None => false,
        }
    }

    /// Whether counting `more` samples spanning `lo..=hi` keeps the span
    /// within [`DENSE_SPAN_PER_SAMPLE`] per sample.
    fn may_span(&self, lo: u32, hi: u32, more: usize) -> bool {
        let (lo, hi) = if self.is_empty() {
            (lo, hi)
        } else {
            (lo.min(self.base), hi.max(self.top()))
        };
        let span = u64::from(hi - lo) + 1;
        (hi as usize) < INDEX_LIMIT && span <= DENSE_SPAN_PER_SAMPLE * (self.samples + more as u64)
    }

    /// The highest index of the span (`base` when empty).
    fn top(&self) -> u32 {
        self.base + (self.counts.len() as u32).saturating_sub(1)
    }

    /// Widens the span to take `lo..=hi` (exactly: the span is the memory).
    fn widen(&mut self, lo: u32, hi: u32) {
        if self.is_empty() {
            self.base = lo;
            self.counts = vec![0; (hi - lo) as usize + 1];
            return;
        }
        let (new_lo, new_hi) = (lo.min(self.base), hi.max(self.top()));
        let mut counts = vec![0; (new_hi - new_lo) as usize + 1];
        let at = (self.base - new_lo) as usize;
        counts[at..at + self.counts.len()].copy_from_slice(&self.counts);
        self.base = new_lo;
        self.counts = counts;
    }

    /// The counted buckets as sorted pairs, appended to `out`.
    fn runs_into(&self, out: &mut Vec<(u32, u64)>) {
        for (at, &c) in self.counts.iter().enumerate() {
            if c != 0 {
                out.push((self.base + at as u32, u64::from(c)));
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        malloc_size(self.counts.capacity() * std::mem::size_of::<u32>())
    }
}

/// A distribution slice being filled: sorted pairs, the bucket indices of
/// single samples not yet added to them, in arrival order, and (once the
/// slice is busy) a dense count; the slice is the sum of the three.
///
/// A sample is a push; once the buffer holds twice as many indices as
/// there are pairs (and at least [`UNITS_MIN`]), it is counted and merged
/// into the pairs in one pass. So a sample costs O(1) amortised plus its
/// share of a sort, in order or late, where inserting each group into a
/// slice of a thousand pairs cost a pass over them; and the buffer takes
/// at most half the pairs' bytes.
///
/// A busy slice ([`DENSE_MIN`] samples or more, whose indices span at most
/// [`DENSE_SPAN_PER_SAMPLE`] per sample) counts its samples densely
/// instead: one increment per sample, and one pass over the span when the
/// slice is read or sealed. Merging buffers into a few thousand pairs,
/// again and again as a 10 s slice of a busy series fills, was a third of
/// a Kafka ingest worker's time (`cargo bench --bench ingest_path`).
/// Samples outside the span are buffered as before; when they are due,
/// the span widens to take them if it stays within the bound, or they
/// merge into the pairs.
#[derive(Debug, Clone, Default)]
pub(super) struct Buckets {
    sorted: Vec<(u32, u64)>,
    units: Vec<u32>,
    dense: Dense,
}

impl Buckets {
    fn with_capacity(pairs: usize, units: usize) -> Self {
        Buckets {
            sorted: Vec::with_capacity(pairs),
            units: Vec::with_capacity(units),
            dense: Dense::default(),
        }
    }

    /// Sorted pairs as a slice (nothing buffered, nothing dense).
    fn from_sorted(sorted: Vec<(u32, u64)>) -> Self {
        Buckets {
            sorted,
            units: Vec::new(),
            dense: Dense::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.units.is_empty() && self.dense.samples == 0
    }

    fn clear(&mut self) {
        self.sorted.clear();
        self.units.clear();
        self.dense = Dense::default();
    }

    fn heap_bytes(&self) -> usize {
        malloc_size(self.sorted.capacity() * std::mem::size_of::<(u32, u64)>())
            + malloc_size(self.units.capacity() * std::mem::size_of::<u32>())
            + self.dense.heap_bytes()
    }

    fn add_units(&mut self, units: &[u32]) {
        if self.units.capacity() == 0 {
            // One allocation for a typical slice (doubling from a few
            // would leave freed blocks behind per series).
            self.units.reserve_exact(UNITS_MIN.max(units.len()));
        }
        if self.dense.is_empty() {
            self.units.extend_from_slice(units);
        } else {
            for &u in units {
                if !self.dense.add(u) {
                    self.units.push(u);
                }
            }
        }
        if self.units.len() >= UNITS_MIN.max(2 * self.sorted.len()) {
            self.flush_units();
        }
    }

    /// Takes the buffered indices into the dense count if it has (or may
    /// start, for a busy slice) a span for them, else into the pairs.
    fn flush_units(&mut self) {
        if self.units.is_empty() {
            return;
        }
        let (mut lo, mut hi) = (u32::MAX, 0u32);
        for &u in &self.units {
            lo = lo.min(u);
            hi = hi.max(u);
        }
        let held = self.sorted.len() + self.units.len();
        let start = self.dense.is_empty() && held >= DENSE_MIN;
        if start {
            if let (Some(first), Some(last)) = (self.sorted.first(), self.sorted.last()) {
                lo = lo.min(first.0);
                hi = hi.max(last.0);
            }
        }
        let more = if start { held } else { self.units.len() };
        if (start || !self.dense.is_empty()) && self.dense.may_span(lo, hi, more) {
            self.dense.widen(lo, hi);
            let mut spilled = Vec::new();
            if start {
                for (idx, count) in std::mem::take(&mut self.sorted) {
                    let at = (idx - self.dense.base) as usize;
                    match u32::try_from(u64::from(self.dense.counts[at]) + count) {
                        Ok(c) => {
                            self.dense.counts[at] = c;
                            self.dense.samples += count;
                        }
                        Err(_) => spilled.push((idx, count)),
                    }
                }
            }
            let mut full = Vec::new();
            for &u in &self.units {
                if !self.dense.add(u) {
                    full.push(u);
                }
            }
            self.units.clear();
            if !spilled.is_empty() {
                self.sorted = spilled;
            }
            if !full.is_empty() {
                add_units_into(&mut self.sorted, &mut full);
            }
        } else {
            add_units_into(&mut self.sorted, &mut self.units);
            self.units.clear();
        }
        if self.units.capacity() > 4 * UNITS_MIN {
            self.units = Vec::new();
        }
    }

    /// Sorts the buffered indices and the dense count into the pairs. A
    /// large buffer is given back (up to half the pairs' bytes, which a
    /// slice past its busy time would hold for nothing).
    fn settle(&mut self) {
        if !self.dense.is_empty() {
            let mut runs = Vec::with_capacity(self.dense.counts.len().min(4096));
            self.dense.runs_into(&mut runs);
            self.dense = Dense::default();
            if self.sorted.is_empty() {
                runs.shrink_to_fit();
                self.sorted = runs;
            } else {
                merge_buckets(&mut self.sorted, &runs);
            }
        }
        if self.units.is_empty() {
            return;
        }
        add_units_into(&mut self.sorted, &mut self.units);
        self.units.clear();
        if self.units.capacity() > 4 * UNITS_MIN {
            self.units = Vec::new();
        }
    }

    /// Settles and gives back spare room: the slice is complete, and
    /// late samples for it are few.
    fn compact(&mut self) {
        self.settle();
        self.sorted.shrink_to_fit();
        if self.units.is_empty() {
            self.units = Vec::new();
        }
    }

    /// Appends the payload (see the module docs). A slice of buffered
    /// samples only is encoded straight from them, sorted in place.
    fn encode(&mut self, out: &mut Vec<u8>) {
        if !self.sorted.is_empty() || !self.dense.is_empty() {
            self.settle();
            encode_buckets(&self.sorted, out);
            return;
        }
        with_runs(&mut self.units, |runs| encode_buckets(runs, out));
    }

    /// Adds these buckets into `dst` (sorted pairs), without changing them.
    fn add_into(&self, dst: &mut Vec<(u32, u64)>) {
        merge_buckets(dst, &self.sorted);
        self.add_unsorted_into(dst);
    }

    /// The sorted pairs, buffered and densely counted samples included.
    fn pairs(&self) -> Vec<(u32, u64)> {
        if self.units.is_empty() && self.dense.is_empty() {
            return self.sorted.clone();
        }
        let mut out = Vec::with_capacity(self.sorted.len() + self.units.len());
        out.extend_from_slice(&self.sorted);
        self.add_unsorted_into(&mut out);
        out
    }

    /// Adds the buffered and the densely counted samples into `dst`
    /// (sorted pairs), without changing them.
    fn add_unsorted_into(&self, dst: &mut Vec<(u32, u64)>) {
        if !self.units.is_empty() {
            // Sorted in a copy: the thread's, or a new one if it is taken.
            let copied = UNITS.with(|copy| {
                let mut copy = copy.try_borrow_mut().ok()?;
                copy.clear();
                copy.extend_from_slice(&self.units);
                add_units_into(dst, &mut copy);
                Some(())
            });
            if copied.is_none() {
                add_units_into(dst, &mut self.units.clone());
            }
        }
        if !self.dense.is_empty() {
            let mut runs = Vec::new();
            self.dense.runs_into(&mut runs);
            merge_buckets(dst, &runs);
        }
    }
}

/// What a group of samples adds to one slice of one series.
#[derive(Debug, Clone, Copy)]
pub(super) enum Delta<'a> {
    /// Sorted, deduplicated `(bucket index, count)` pairs.
    Buckets(&'a [(u32, u64)]),
    /// Bucket indices of single samples, in any order, repeats allowed.
    Units(&'a [u32]),
    /// Counters.
    Counts { requests: u64, errors: u64 },
}

/// A slice updated in place (the newest, or pending late additions).
#[derive(Debug, Clone)]
enum Open {
    Buckets(Buckets),
    Counts { requests: u64, errors: u64 },
}

impl Open {
    /// An empty slice of the kind of `delta`.
    fn empty_like(delta: Delta<'_>) -> Open {
        match delta {
            Delta::Buckets(_) | Delta::Units(_) => Open::Buckets(Buckets::default()),
            Delta::Counts { .. } => Open::Counts {
                requests: 0,
                errors: 0,
            },
        }
    }

    /// This slice as a delta to add to another (settled first).
    fn as_delta(&mut self) -> Delta<'_> {
        match self {
            Open::Buckets(b) => {
                b.settle();
                Delta::Buckets(&b.sorted)
            }
            Open::Counts { requests, errors } => Delta::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }

    /// Bytes of its allocation, as the allocator sizes it.
    fn heap_bytes(&self) -> usize {
        match self {
            Open::Buckets(b) => b.heap_bytes(),
            Open::Counts { .. } => 0,
        }
    }

    fn apply(&mut self, delta: Delta<'_>) {
        match (self, delta) {
            (Open::Buckets(b), Delta::Buckets(d)) => merge_buckets(&mut b.sorted, d),
            (Open::Buckets(b), Delta::Units(d)) => b.add_units(d),
            (
                Open::Counts { requests, errors },
                Delta::Counts {
                    requests: r,
                    errors: e,
                },
            ) => {
                *requests += r;
                *errors += e;
            }
            // Kinds are checked before anything is applied.
            _ => {}
        }
    }

    /// An empty slice of the same kind.
    fn emptied(&self) -> Open {
        match self {
            Open::Buckets(_) => Open::Buckets(Buckets::default()),
            Open::Counts { .. } => Open::Counts {
                requests: 0,
                errors: 0,
            },
        }
    }

    fn clear(&mut self) {
        match self {
            Open::Buckets(b) => b.clear(),
            Open::Counts { requests, errors } => {
                *requests = 0;
                *errors = 0;
            }
        }
    }

    /// Appends the payload (settled first).
    fn encode(&mut self, out: &mut Vec<u8>) {
        match self {
            Open::Buckets(b) => b.encode(out),
            Open::Counts { requests, errors } => {
                put_varint(out, *requests);
                put_varint(out, *errors);
            }
        }
    }

    fn to_slice_data(&self) -> SliceData {
        match self {
            Open::Buckets(b) => {
                SliceData::Distribution(SparseHistogram::from_index_counts(b.pairs()))
            }
            Open::Counts { requests, errors } => SliceData::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }
}

/// glibc's chunk for a request of `n` bytes: 8 bytes of header, rounded up
/// to 16, at least 32; nothing for no allocation.
pub(super) const fn malloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else if n + 8 <= 32 {
        32
    } else {
        (n + 8).next_multiple_of(16)
    }
}

/// Buckets the open slice has room for when a series of histograms is
/// created.
const OPEN_CAPACITY: usize = 16;

/// Bytes of pending late additions a series always may hold before they are
/// merged into its ring, beyond twice the ring's length. (Under heavy
/// reordering, a few dozen recent slices take late samples at once: a
/// smaller bound merges them over and over.)
pub(super) const LATE_MIN_BYTES: usize = 4096;

/// Most completed slices a series keeps unencoded for late samples (the
/// largest allowed lateness, in slices): about 10 minutes of 10 s slices.
const MAX_DEPTH: u32 = 64;

/// Slices of stream time after which a series' allowed lateness is set
/// down to the largest lateness it saw meanwhile.
const DEPTH_PERIOD: u32 = 64;

/// What a series with late samples holds besides the ring and the open
/// slice.
#[derive(Debug, Clone, Default)]
struct Late {
    /// Additions to slices in the ring or older than any held: sorted by
    /// slice index, each index at most once, inside the window.
    slices: Vec<(i64, Open)>,
    /// Sum of the entries' [`Open::heap_bytes`].
    heap: usize,
    /// The newest completed slices, not yet encoded into the ring: indices
    /// `open_index - recent.len() ..= open_index - 1`, oldest first; `None`
    /// for a slice without data.
    recent: VecDeque<Option<Open>>,
    /// Sum of the recent slices' [`Open::heap_bytes`].
    recent_heap: usize,
    /// Completed slices kept in `recent` (the allowed lateness, in
    /// slices): raised at once to the lateness of a sample that came too
    /// late for it, set down every [`DEPTH_PERIOD`] slices to the largest
    /// lateness seen meanwhile.
    depth: u32,
    /// Largest lateness seen in this period (at most [`MAX_DEPTH`]).
    needed: u32,
    /// Slices of stream time advanced in this period.
    since: u32,
}

impl Late {
    /// Bytes held, as the allocator sizes them.
    fn bytes(&self) -> usize {
        malloc_size(std::mem::size_of::<Late>())
            + self.additions_bytes()
            + malloc_size(self.recent.capacity() * std::mem::size_of::<Option<Open>>())
            + self.recent_heap
    }

    /// Bytes of the additions to the ring's slices.
    fn additions_bytes(&self) -> usize {
        malloc_size(self.slices.capacity() * std::mem::size_of::<(i64, Open)>()) + self.heap
    }

    /// Notes a sample `lateness` slices older than the open one, in a window
    /// of `window_slices`.
    fn note(&mut self, lateness: i64, window_slices: i64) {
        let cap = i64::from(MAX_DEPTH).min(window_slices - 1).max(0);
        let lateness = u32::try_from(lateness.min(cap)).unwrap_or(0);
        self.needed = self.needed.max(lateness);
        self.depth = self.depth.max(lateness);
    }

    fn recount_recent(&mut self) {
        self.recent_heap = self.recent.iter().flatten().map(Open::heap_bytes).sum();
    }

    /// Whether it holds nothing and expects no late samples.
    fn is_idle(&self) -> bool {
        self.slices.is_empty() && self.recent.is_empty() && self.depth == 0 && self.needed == 0
    }
}

/// Appends a slice to encoded ring bytes (its length, then its payload);
/// `payload` is a buffer.
fn push_encoded(data: Option<&mut Open>, bytes: &mut Vec<u8>, payload: &mut Vec<u8>) {
    payload.clear();
    if let Some(data) = data {
        data.encode(payload);
    }
    put_varint(bytes, payload.len() as u64);
    bytes.extend_from_slice(payload);
}

/// The byte range (header start, payload start, payload end) of the encoded
/// slice starting at `at`; `None` past the end or on a bad header.
fn span_at(ring: &[u8], at: usize) -> Option<(usize, usize, usize)> {
    let rest = ring.get(at..)?;
    let mut it = rest.iter().copied();
    let len = usize::try_from(get_varint(&mut it)?).ok()?;
    let payload = ring.len() - it.len();
    Some((at, payload, payload.saturating_add(len).min(ring.len())))
}

/// Bytes from the header of the last slice encoded in `bytes` (whole
/// slices, each a header and its payload) to their end, as
/// [`Series::last_span`] keeps it: 0 (unknown) for none, or should the
/// bytes not read as whole slices.
fn last_span_of(bytes: &[u8]) -> u32 {
    let mut last = None;
    let mut at = 0;
    while at < bytes.len() {
        let Some((start, _, end)) = span_at(bytes, at) else {
            return 0;
        };
        last = Some(start);
        at = end;
    }
    last.and_then(|start| u32::try_from(bytes.len() - start).ok())
        .unwrap_or(0)
}

/// One series' window.
#[derive(Debug, Clone)]
pub(super) struct Series {
    done: VecDeque<u8>,
    n_done: u32,
    /// Bytes from the newest ring slice's header to the ring's end (0:
    /// unknown, or no slice). A reader of the newest completed slice, as
    /// a judge tick is, starts there instead of walking the ring from its
    /// oldest slice (up to a window's 180 headers, each on its own cache
    /// line). The ring's front is dropped as slices expire, which leaves
    /// this distance as it is.
    last_span: u32,
    open_index: i64,
    open: Open,
    /// Late additions not yet merged into `done`, and the recent slices
    /// kept unencoded for late samples (boxed: most series never get
    /// any, and this keeps them one pointer).
    late: Option<Box<Late>>,
    /// Logical time of the last update, for least-recently-updated eviction.
    pub(super) touched: u64,
    /// Bytes accounted for this series (see [`Series::account`]).
    pub(super) bytes: usize,
}

/// A series behind its own lock, as the store's map and its readers share
/// it (`None` once evicted).
pub(super) type Cell = std::sync::Mutex<Option<Series>>;

/// Bytes of a series outside its own allocations: its map entry (key and
/// pointer) with the hash table's spare slots (a table is between 44% and
/// 87% full, and doubles) and control byte, and the shared allocation that
/// holds the series (reference counts, lock and the series itself).
/// Calibrated against resident memory by the store benchmark and a
/// counting-allocator test.
pub(super) const ENTRY_BYTES: usize =
    (std::mem::size_of::<(crate::names::SeriesKey, std::sync::Arc<Cell>)>() + 1) * 3 / 2
        + malloc_size(2 * std::mem::size_of::<usize>() + std::mem::size_of::<Cell>());

impl Series {
    /// An empty series of the kind of `delta`, open at `slice`.
    pub(super) fn new(slice: i64, delta: Delta<'_>, touched: u64) -> Self {
        let open = match delta {
            // Room for a typical slice at once: growing by doubling would
            // leave three freed blocks behind per series.
            Delta::Buckets(_) => Open::Buckets(Buckets::with_capacity(OPEN_CAPACITY, 0)),
            Delta::Units(_) => Open::Buckets(Buckets::with_capacity(0, UNITS_MIN)),
            Delta::Counts { .. } => Open::Counts {
                requests: 0,
                errors: 0,
            },
        };
        Series {
            done: VecDeque::new(),
            n_done: 0,
            last_span: 0,
            open_index: slice,
            open,
            late: None,
            touched,
            bytes: 0,
        }
    }

    /// Whether `delta` is of this series' kind.
    pub(super) fn accepts(&self, delta: Delta<'_>) -> bool {
        matches!(
            (&self.open, delta),
            (Open::Buckets(_), Delta::Buckets(_) | Delta::Units(_))
                | (Open::Counts { .. }, Delta::Counts { .. })
        )
    }

    /// Whether the series holds distributions (else counters).
    pub(super) fn is_distribution(&self) -> bool {
        matches!(self.open, Open::Buckets(_))
    }

    /// Completed slices kept unencoded.
    fn recent_len(&self) -> i64 {
        self.late.as_ref().map_or(0, |l| l.recent.len() as i64)
    }

    /// Index of the oldest slice in the ring (or of the oldest recent
    /// slice, or the open one, when there is none).
    fn first_index(&self) -> i64 {
        self.open_index - self.recent_len() - i64::from(self.n_done)
    }

    /// Recomputes [`Series::bytes`]: the map entry, the ring's and the open
    /// slice's allocations as the allocator sizes them, plus three eighths
    /// of those for the allocator's rounding to its size classes and the
    /// blocks they left free as they grew (which the process holds too).
    /// Calibrated against the resident memory of the `vigil` binary, whose
    /// allocator is mimalloc: the store benchmark measured it 22% above
    /// the accounting with an eighth (glibc's, until 2026-12-07: 4%), and
    /// within a few percent with three eighths. O(1).
    pub(super) fn account(&mut self) -> usize {
        let open = self.open.heap_bytes();
        let late = self.late.as_ref().map_or(0, |l| l.bytes());
        let heap = malloc_size(self.done.capacity()) + open + late;
        self.bytes = ENTRY_BYTES + heap + heap * 3 / 8;
        self.bytes
    }

    /// Adds `delta` to slice `slice` (>= `oldest`, of this series' kind),
    /// first dropping slices older than `oldest`. `scratch` is reused
    /// across calls to avoid allocating.
    pub(super) fn add(
        &mut self,
        slice: i64,
        oldest: i64,
        window_slices: i64,
        delta: Delta<'_>,
        scratch: &mut Scratch,
    ) {
        if slice > self.open_index {
            self.advance(slice, oldest, window_slices, scratch);
        }
        self.expire(oldest);
        if slice == self.open_index {
            self.open.apply(delta);
            return;
        }
        let lateness = self.open_index - slice;
        let late = self.late.get_or_insert_with(Box::default);
        late.note(lateness, window_slices);
        if lateness > late.recent.len() as i64 && lateness <= i64::from(late.depth) {
            // The allowed lateness just rose: the newest ring slices it
            // now covers become recent ones again.
            self.reopen(lateness);
        }
        let Some(late) = &mut self.late else {
            return;
        };
        let recent = late.recent.len() as i64;
        if lateness > recent {
            self.add_late(slice, delta, scratch);
            return;
        }
        let Some(slot) = late.recent.get_mut((recent - lateness) as usize) else {
            return;
        };
        let data = slot.get_or_insert_with(|| Open::empty_like(delta));
        let before = data.heap_bytes();
        data.apply(delta);
        late.recent_heap = late.recent_heap + data.heap_bytes() - before;
    }

    /// Makes `slice` (newer than the open slice) the open one. The
    /// completed slices (the recent ones, the open one, those without data
    /// between it and `slice`) stay unencoded, newest first, up to the
    /// allowed lateness; the others are encoded onto the ring's end, in
    /// order (all of them are newer than what it holds).
    fn advance(&mut self, slice: i64, oldest: i64, window_slices: i64, scratch: &mut Scratch) {
        let mut bytes = std::mem::take(&mut scratch.bytes);
        let mut payload = std::mem::take(&mut scratch.encoded);
        bytes.clear();
        if let Some(late) = &mut self.late {
            let steps = u32::try_from(slice - self.open_index).unwrap_or(u32::MAX);
            late.since = late.since.saturating_add(steps);
            if late.since >= DEPTH_PERIOD {
                late.depth = late.needed;
                late.needed = 0;
                late.since = 0;
            }
        }
        if self.open_index < oldest {
            // Everything held is out of the window: only slices without
            // data from its start on.
            self.done.clear();
            self.n_done = 0;
            self.last_span = 0;
            if let Some(late) = &mut self.late {
                late.recent.clear();
                late.recent_heap = 0;
            }
            let gap = usize::try_from(slice - oldest).unwrap_or(0);
            bytes.resize(gap, 0);
            self.n_done += gap as u32;
            self.open.clear();
        } else {
            let gap = usize::try_from(slice - self.open_index - 1).unwrap_or(0);
            let depth = self.late.as_ref().map_or(0, |l| l.depth as usize);
            let mut encode = (self.recent_len() as usize + 1 + gap).saturating_sub(depth);
            // A slice emptied on the way, to be the new open one.
            let mut spare = None;
            if let Some(late) = &mut self.late {
                while encode > 0 {
                    let Some(mut data) = late.recent.pop_front() else {
                        break;
                    };
                    encode -= 1;
                    push_encoded(data.as_mut(), &mut bytes, &mut payload);
                    self.n_done += 1;
                    if let (Some(mut data), None) = (data, &spare) {
                        data.clear();
                        spare = Some(data);
                    }
                }
            }
            match (encode, &mut self.late) {
                (0, Some(late)) => {
                    let next = spare.unwrap_or_else(|| self.open.emptied());
                    let mut done = std::mem::replace(&mut self.open, next);
                    if let Open::Buckets(b) = &mut done {
                        b.compact();
                    }
                    late.recent.push_back(Some(done));
                }
                _ => {
                    encode = encode.saturating_sub(1);
                    push_encoded(Some(&mut self.open), &mut bytes, &mut payload);
                    self.n_done += 1;
                    self.open.clear();
                }
            }
            let encoded_gap = encode.min(gap);
            bytes.resize(bytes.len() + encoded_gap, 0);
            self.n_done += encoded_gap as u32;
            if let Some(late) = &mut self.late {
                late.recent.extend((encoded_gap..gap).map(|_| None));
                late.recount_recent();
            }
        }
        self.push_back(&bytes, window_slices);
        self.open_index = slice;
        scratch.bytes = bytes;
        scratch.encoded = payload;
    }

    /// Decodes the newest ring slices back into recent ones, so that the
    /// recent slices reach `lateness` slices back from the open one (or
    /// the ring is empty), and moves the late additions to them along. A
    /// pass over the ring, once per rise of the allowed lateness.
    fn reopen(&mut self, lateness: i64) {
        let recent = self.recent_len();
        let k = usize::try_from(lateness - recent)
            .unwrap_or(0)
            .min(self.n_done as usize);
        if k == 0 {
            return;
        }
        let distribution = self.is_distribution();
        let spans: Vec<(usize, usize, usize)> = self.spans().collect();
        let Some(&(cut, _, _)) = spans.get(spans.len().saturating_sub(k)) else {
            return;
        };
        let mut reopened = Vec::with_capacity(k);
        for &(_, payload, end) in &spans[spans.len() - k..] {
            let bytes = self.done.range(payload..end).copied();
            reopened.push(if payload == end {
                None
            } else if distribution {
                let mut sorted = Vec::with_capacity(end - payload);
                decode_buckets(bytes, &mut sorted);
                sorted.shrink_to_fit();
                Some(Open::Buckets(Buckets::from_sorted(sorted)))
            } else {
                let mut it = bytes;
                Some(Open::Counts {
                    requests: get_varint(&mut it).unwrap_or(0),
                    errors: get_varint(&mut it).unwrap_or(0),
                })
            });
        }
        self.done.truncate(cut);
        self.n_done -= k as u32;
        self.last_span = match spans.len().checked_sub(k + 1) {
            Some(last) => u32::try_from(cut - spans[last].0).unwrap_or(0),
            None => 0,
        };
        let ring_end = self.open_index - recent - k as i64;
        let Some(late) = &mut self.late else {
            return;
        };
        for data in reopened.into_iter().rev() {
            late.recent.push_front(data);
        }
        let moved = late.slices.partition_point(|(i, _)| *i < ring_end);
        for (index, mut add) in late.slices.split_off(moved) {
            let Some(slot) = late.recent.get_mut((index - ring_end) as usize) else {
                continue;
            };
            match slot {
                Some(data) => data.apply(add.as_delta()),
                None => *slot = Some(add),
            }
        }
        late.heap = late.slices.iter().map(|(_, d)| d.heap_bytes()).sum();
        late.recount_recent();
    }

    /// Appends encoded slices. The ring grows by at least an eighth, and
    /// once a few slices are held, straight to what a full window of
    /// slices of the same average size takes: a series reaches its size in
    /// a couple of steps instead of dozens, which would leave as many freed
    /// blocks of odd sizes behind in the allocator.
    fn push_back(&mut self, bytes: &[u8], window_slices: i64) {
        let need = self.done.len() + bytes.len();
        if need > self.done.capacity() {
            let mut target = need.max(self.done.capacity() + self.done.capacity() / 8);
            if self.n_done >= 2 {
                let per_slice = self.done.len().div_ceil(self.n_done as usize);
                let window = usize::try_from(window_slices).unwrap_or(0);
                target = target.max(per_slice * (window + 1) + per_slice / 2);
            }
            self.done.reserve_exact(target - self.done.len());
        }
        self.done.extend(bytes);
        if !bytes.is_empty() {
            self.last_span = last_span_of(bytes);
        }
    }

    /// Drops completed slices older than `oldest`.
    fn expire(&mut self, oldest: i64) {
        while self.n_done > 0 && self.first_index() < oldest {
            let mut it = self.done.iter().copied();
            let Some(len) = get_varint(&mut it) else {
                self.done.clear();
                self.n_done = 0;
                return;
            };
            let header = self.done.len() - it.len();
            let n = (header + len as usize).min(self.done.len());
            self.done.drain(..n);
            self.n_done -= 1;
        }
        let ring_empty = self.n_done == 0;
        if ring_empty {
            self.last_span = 0;
        }
        if let Some(late) = &mut self.late {
            if ring_empty {
                // The recent slices may be out of the window too.
                let mut start = self.open_index - late.recent.len() as i64;
                let mut dropped = false;
                while start < oldest && late.recent.pop_front().is_some() {
                    start += 1;
                    dropped = true;
                }
                if dropped {
                    late.recount_recent();
                }
            }
            let expired = late.slices.partition_point(|(i, _)| *i < oldest);
            if expired > 0 {
                late.slices.drain(..expired);
                late.heap = late.slices.iter().map(|(_, d)| d.heap_bytes()).sum();
            }
            if late.is_idle() {
                self.late = None;
            }
        }
        if self.done.is_empty() && self.done.capacity() > 0 && self.n_done == 0 {
            // An idle series' ring is given back.
            self.done = VecDeque::new();
        }
    }

    /// Byte ranges (header start, payload start, payload end) of the
    /// completed slices, oldest first.
    fn spans(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.spans_at(0, self.n_done)
    }

    /// The index of the first ring slice at or after `from` that a walk
    /// can start at (the oldest, or the newest when `from` is that one
    /// and [`Series::last_span`] is known), and the byte ranges of the
    /// slices from it on, as [`Series::spans`].
    fn spans_from(&self, from: i64) -> (i64, impl Iterator<Item = (usize, usize, usize)> + '_) {
        let first = self.first_index();
        let newest = first + i64::from(self.n_done) - 1;
        let tail = self.last_span as usize;
        if self.n_done > 1 && from >= newest && tail > 0 && tail <= self.done.len() {
            let at = self.done.len() - tail;
            debug_assert_eq!(
                self.spans().last().map(|(start, _, _)| start),
                Some(at),
                "the newest slice's header is where last_span says"
            );
            return (newest, self.spans_at(at, 1));
        }
        (first, self.spans_at(0, self.n_done))
    }

    /// Byte ranges of `n` completed slices from the header at `at` on.
    fn spans_at(&self, at: usize, n: u32) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut at = at;
        (0..n).map_while(move |_| {
            let mut it = self.done.range(at..).copied();
            let len = get_varint(&mut it)? as usize;
            let payload = self.done.len() - it.len();
            let end = (payload + len).min(self.done.len());
            let span = (at, payload, end);
            at = end;
            Some(span)
        })
    }

    /// Adds `delta` to a completed slice, or to one older than any held
    /// (inside the window): into the pending late additions, merged into
    /// the ring once they are twice as large as it.
    fn add_late(&mut self, slice: i64, delta: Delta<'_>, scratch: &mut Scratch) {
        let late = self.late.get_or_insert_with(Box::default);
        let pos = match late.slices.binary_search_by_key(&slice, |(i, _)| *i) {
            Ok(pos) => pos,
            Err(pos) => {
                late.slices.insert(pos, (slice, Open::empty_like(delta)));
                pos
            }
        };
        let data = &mut late.slices[pos].1;
        let before = data.heap_bytes();
        data.apply(delta);
        late.heap = late.heap + data.heap_bytes() - before;
        if late.additions_bytes() > LATE_MIN_BYTES + 2 * self.done.len() {
            self.merge_late(scratch);
        }
    }

    /// Merges the pending late additions into the ring, in one pass:
    /// each slice they touch is decoded, added to and re-encoded, the
    /// others are copied as they are.
    fn merge_late(&mut self, scratch: &mut Scratch) {
        let Some(late) = &mut self.late else {
            return;
        };
        let mut slices = std::mem::take(&mut late.slices);
        late.heap = 0;
        let Some(&(oldest_late, _)) = slices.first() else {
            return;
        };
        let first = self.first_index();
        let new_first = first.min(oldest_late);
        let distribution = self.is_distribution();
        let ring: &[u8] = self.done.make_contiguous();
        let out = &mut scratch.bytes;
        out.clear();
        let mut encoded = std::mem::take(&mut scratch.encoded);
        let mut pending = slices.iter_mut().peekable();
        // Slices older than any held: the late ones, empty ones between.
        for index in new_first..first {
            match pending.next_if(|(i, _)| *i == index) {
                Some((_, data)) => {
                    encoded.clear();
                    data.encode(&mut encoded);
                    put_varint(out, encoded.len() as u64);
                    out.extend_from_slice(&encoded);
                }
                None => out.push(0),
            }
        }
        let mut at = 0;
        for k in 0..i64::from(self.n_done) {
            let Some((start, payload, end)) = span_at(ring, at) else {
                break;
            };
            at = end;
            let Some((_, add)) = pending.next_if(|(i, _)| *i == first + k) else {
                out.extend_from_slice(&ring[start..end]);
                continue;
            };
            let bytes = ring[payload..end].iter().copied();
            let mut data = if distribution {
                scratch.buckets.clear();
                decode_buckets(bytes, &mut scratch.buckets);
                Open::Buckets(Buckets::from_sorted(std::mem::take(&mut scratch.buckets)))
            } else if payload == end {
                Open::Counts {
                    requests: 0,
                    errors: 0,
                }
            } else {
                let mut it = bytes;
                Open::Counts {
                    requests: get_varint(&mut it).unwrap_or(0),
                    errors: get_varint(&mut it).unwrap_or(0),
                }
            };
            data.apply(add.as_delta());
            encoded.clear();
            data.encode(&mut encoded);
            put_varint(out, encoded.len() as u64);
            out.extend_from_slice(&encoded);
            if let Open::Buckets(b) = data {
                scratch.buckets = b.sorted;
            }
        }
        debug_assert!(pending.next().is_none(), "late slices are all held");
        scratch.encoded = encoded;
        self.n_done += u32::try_from(first - new_first).unwrap_or(0);
        // The new ring, sized exactly (plus the usual eighth when growing).
        let capacity = out.len().max(self.done.capacity().min(out.len() * 9 / 8));
        let mut ring = Vec::with_capacity(capacity);
        ring.extend_from_slice(out);
        self.last_span = last_span_of(&ring);
        self.done = VecDeque::from(ring);
    }

    /// The slices with index in `[from, to]` that hold data, oldest first.
    pub(super) fn slices(&self, from: i64, to: i64) -> Vec<Slice> {
        let first = self.first_index();
        // At most one slice per index from `from.max(first)` to the open one.
        let span = self
            .open_index
            .min(to)
            .saturating_sub(from.max(first))
            .saturating_add(1);
        let mut out = Vec::with_capacity(usize::try_from(span).unwrap_or(0));
        let late: &[(i64, Open)] = self.late.as_ref().map_or(&[], |l| &l.slices);
        let mut late = late
            .iter()
            .filter(|(i, _)| (from..=to).contains(i))
            .peekable();
        // A late slice with nothing held at its index.
        let alone = |index: i64, data: &Open| match data {
            Open::Buckets(b) if b.is_empty() => None,
            _ => Some(Slice {
                index,
                data: data.to_slice_data(),
            }),
        };
        let recent = self.late.as_ref().map(|l| &l.recent);
        let ring_end = self.open_index - self.recent_len();
        if to >= first && from < ring_end {
            let (start, spans) = self.spans_from(from);
            for (k, (_, payload, end)) in spans.enumerate() {
                let index = start + k as i64;
                if index > to {
                    break;
                }
                while let Some((i, data)) = late.next_if(|(i, _)| *i < index) {
                    out.extend(alone(*i, data));
                }
                let add = late.next_if(|(i, _)| *i == index).map(|(_, d)| d);
                if index < from || (payload == end && add.is_none()) {
                    continue;
                }
                let bytes = self.done.range(payload..end).copied();
                let data = if self.is_distribution() {
                    // A bucket takes at least a byte: room for all at once
                    // (growing by doubling cost more than the slack).
                    let mut buckets = Vec::with_capacity(end - payload);
                    decode_buckets(bytes, &mut buckets);
                    if let Some(Open::Buckets(b)) = add {
                        b.add_into(&mut buckets);
                    }
                    if buckets.is_empty() {
                        continue;
                    }
                    // The bound is several times the need, and callers may
                    // keep slices (a snapshot holds a window of them): give
                    // the rest back (in place).
                    buckets.shrink_to_fit();
                    SliceData::Distribution(SparseHistogram::from_index_counts(buckets))
                } else {
                    let mut it = bytes;
                    let (mut requests, mut errors) = (
                        get_varint(&mut it).unwrap_or(0),
                        get_varint(&mut it).unwrap_or(0),
                    );
                    if let Some(Open::Counts {
                        requests: r,
                        errors: e,
                    }) = add
                    {
                        requests += r;
                        errors += e;
                    }
                    SliceData::Counts { requests, errors }
                };
                out.push(Slice { index, data });
            }
        }
        for (i, data) in late {
            out.extend(alone(*i, data));
        }
        for (index, data) in (ring_end..).zip(recent.into_iter().flatten()) {
            if (from..=to).contains(&index) {
                out.extend(data.as_ref().and_then(|d| alone(index, d)));
            }
        }
        if (from..=to).contains(&self.open_index) {
            out.push(Slice {
                index: self.open_index,
                data: self.open.to_slice_data(),
            });
        }
        out
    }

    /// Rebuilds a series from slices in increasing index order (a
    /// snapshot); `None` if there are none or their kinds differ.
    pub(super) fn from_slices(slices: &[Slice], touched: u64) -> Option<Series> {
        let last = slices.last()?;
        let mut scratch = Scratch::default();
        let first_delta = |s: &Slice, buf: &mut Vec<(u32, u64)>| -> Option<()> {
            buf.clear();
            match &s.data {
                SliceData::Distribution(h) => {
                    buf.extend_from_slice(h.index_counts());
                }
                SliceData::Counts { .. } => {}
            }
            Some(())
        };
        let mut series: Option<Series> = None;
        let mut buf = Vec::new();
        for s in slices {
            first_delta(s, &mut buf)?;
            let delta = match &s.data {
                SliceData::Distribution(_) => Delta::Buckets(&buf),
                SliceData::Counts { requests, errors } => Delta::Counts {
                    requests: *requests,
                    errors: *errors,
                },
            };
            let series = series.get_or_insert_with(|| Series::new(s.index, delta, touched));
            if !series.accepts(delta) || s.index < series.open_index {
                return None;
            }
            series.add(s.index, i64::MIN, 0, delta, &mut scratch);
        }
        let mut series = series?;
        debug_assert_eq!(series.open_index, last.index);
        series.account();
        Some(series)
    }
}

/// Buffers reused across recordings.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    bytes: Vec<u8>,
    buckets: Vec<(u32, u64)>,
    encoded: Vec<u8>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints_and_buckets_round_trip() {
        let buckets = vec![
            (0u32, 1u64),
            (5, 2),
            (2047, 1),
            (40_000, u64::MAX),
            (40_001, 1),
        ];
        let mut bytes = Vec::new();
        encode_buckets(&buckets, &mut bytes);
        let mut back = Vec::new();
        decode_buckets(bytes.iter().copied(), &mut back);
        assert_eq!(back, buckets);
    }

    /// Adds deltas to a series in any order (in-order, late, older than
    /// anything held, expiring), as the store does, and compares what it
    /// reads back with a plain map of slices, also after a snapshot
    /// round trip; enough late data to merge it into the ring many times.
    #[test]
    fn late_additions_read_back_exactly() {
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        // Each addition either as sorted pairs or as single samples (in
        // reverse order, each pair's count times).
        let adds = prop::collection::vec(
            (
                0i64..60,
                prop::collection::vec((0u32..300, 1u64..4), 1..40),
                any::<bool>(),
            ),
            1..400,
        );
        proptest!(ProptestConfig::with_cases(48), |(adds in adds, window in 5i64..40)| {
            let mut model: BTreeMap<i64, BTreeMap<u32, u64>> = BTreeMap::new();
            let mut series: Option<Series> = None;
            let mut scratch = Scratch::default();
            let mut high = i64::MIN;
            for (slice, mut buckets, as_units) in adds {
                buckets.sort_unstable_by_key(|&(i, _)| i);
                buckets.dedup_by_key(|&mut (i, _)| i);
                let units: Vec<u32> = buckets
                    .iter()
                    .rev()
                    .flat_map(|&(i, c)| std::iter::repeat_n(i, c as usize))
                    .collect();
                high = high.max(slice);
                let oldest = high - window + 1;
                if slice < oldest {
                    continue;
                }
                let delta = if as_units {
                    Delta::Units(&units)
                } else {
                    Delta::Buckets(&buckets)
                };
                let s = series.get_or_insert_with(|| Series::new(slice, delta, 0));
                s.add(slice, oldest, window, delta, &mut scratch);
                s.account();
                let slot = model.entry(slice).or_default();
                for &(i, c) in &buckets {
                    *slot.entry(i).or_default() += c;
                }
                model.retain(|&i, _| i >= oldest);
            }
            let Some(series) = series else { return Ok(()) };
            let expected: Vec<(i64, Vec<(u32, u64)>)> = model
                .into_iter()
                .map(|(i, b)| (i, b.into_iter().collect()))
                .collect();
            let read = |s: &Series| -> Vec<(i64, Vec<(u32, u64)>)> {
                s.slices(i64::MIN, i64::MAX)
                    .into_iter()
                    .map(|s| match s.data {
                        SliceData::Distribution(h) => (s.index, h.index_counts().to_vec()),
                        SliceData::Counts { .. } => (s.index, Vec::new()),
                    })
                    .collect()
            };
            prop_assert_eq!(&read(&series), &expected);
            // A sub-range reads the same slices.
            let (lo, hi) = (high - window / 2, high - 1);
            let part: Vec<_> = expected.iter().filter(|(i, _)| (lo..=hi).contains(i)).cloned().collect();
            let got: Vec<_> = series.slices(lo, hi).into_iter().map(|s| match s.data {
                SliceData::Distribution(h) => (s.index, h.index_counts().to_vec()),
                SliceData::Counts { .. } => (s.index, Vec::new()),
            }).collect();
            prop_assert_eq!(got, part);
            let back = Series::from_slices(&series.slices(i64::MIN, i64::MAX), 0).unwrap();
            prop_assert_eq!(read(&back), expected);
        });
    }

    /// A slice as read back: index, buckets, requests.
    type ReadSlice = (i64, Vec<(u32, u64)>, u64);

    /// A stream whose samples arrive up to 30 slices late while time
    /// moves on over hundreds of slices (the allowed lateness grows, is
    /// set down again after quiet periods, recent slices expire with the
    /// window): every slice reads back as recorded, counters too, also
    /// after a snapshot round trip; bytes are accounted within bounds.
    #[test]
    fn drifting_late_stream_reads_back_exactly() {
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        let steps = prop::collection::vec(
            (
                prop_oneof![3 => Just(0i64), 1 => 1i64..4, 1 => Just(0i64)],
                prop_oneof![2 => Just(0i64), 2 => 0i64..4, 1 => 0i64..31, 1 => 0i64..80],
                prop::collection::vec(0u32..200, 1..12),
            ),
            1..700,
        );
        proptest!(ProptestConfig::with_cases(40), |(steps in steps, window in 3i64..60, counters in any::<bool>())| {
            let mut model: BTreeMap<i64, (BTreeMap<u32, u64>, u64)> = BTreeMap::new();
            let mut series: Option<Series> = None;
            let mut scratch = Scratch::default();
            let (mut cursor, mut high) = (1_000i64, i64::MIN);
            for (advance, back, units) in steps {
                cursor += advance;
                let slice = cursor - back;
                high = high.max(slice);
                let oldest = high - window + 1;
                if slice < oldest {
                    continue;
                }
                let delta = if counters {
                    Delta::Counts { requests: units.len() as u64, errors: u64::from(units[0] % 2) }
                } else {
                    Delta::Units(&units)
                };
                let s = series.get_or_insert_with(|| Series::new(slice, delta, 0));
                s.add(slice, oldest, window, delta, &mut scratch);
                let bytes = s.account();
                prop_assert!(bytes < 1 << 20);
                let slot = model.entry(slice).or_default();
                if counters {
                    slot.1 += units.len() as u64;
                } else {
                    for &u in &units {
                        *slot.0.entry(u).or_default() += 1;
                    }
                }
                model.retain(|&i, _| i >= oldest);
            }
            let Some(series) = series else { return Ok(()) };
            let expected: Vec<ReadSlice> = model
                .into_iter()
                .map(|(i, (b, n))| (i, b.into_iter().collect(), n))
                .collect();
            let read = |s: &Series, from: i64, to: i64| -> Vec<ReadSlice> {
                s.slices(from, to)
                    .into_iter()
                    .map(|s| match s.data {
                        SliceData::Distribution(h) => (s.index, h.index_counts().to_vec(), 0),
                        SliceData::Counts { requests, .. } => (s.index, Vec::new(), requests),
                    })
                    .collect()
            };
            // Reads are clipped to the window as the store does.
            let oldest = high - window + 1;
            prop_assert_eq!(&read(&series, oldest, i64::MAX), &expected);
            let (lo, hi) = (high - window / 2, high - 1);
            let part: Vec<_> = expected.iter().filter(|(i, _, _)| (lo..=hi).contains(i)).cloned().collect();
            prop_assert_eq!(read(&series, lo.max(oldest), hi), part);
            let back = Series::from_slices(&series.slices(oldest, i64::MAX), 0);
            if let Some(back) = back {
                prop_assert_eq!(read(&back, oldest, i64::MAX), expected);
            }
        });
    }

    /// The allowed lateness follows what the stream needs: a run of late
    /// samples keeps recent slices unencoded, a quiet period sets it back
    /// to none.
    #[test]
    fn allowed_lateness_rises_and_falls() {
        let mut scratch = Scratch::default();
        let units = [1u32, 2, 3];
        let delta = Delta::Units(&units);
        let mut s = Series::new(100, delta, 0);
        s.add(100, 0, 1000, delta, &mut scratch);
        s.add(101, 0, 1000, delta, &mut scratch);
        assert!(s.late.is_none());
        // Five slices late: into the ring's late additions, and the
        // allowed lateness becomes 5.
        s.add(96, 0, 1000, delta, &mut scratch);
        assert_eq!(s.late.as_ref().map(|l| l.depth), Some(5));
        for slice in 102..110 {
            s.add(slice, 0, 1000, delta, &mut scratch);
            s.add(slice - 4, 0, 1000, delta, &mut scratch);
        }
        let late = s.late.as_ref().unwrap();
        assert_eq!(late.recent.len(), 5);
        // In order for two periods: back to encoding at once.
        for slice in 110..110 + 2 * i64::from(DEPTH_PERIOD) {
            s.add(slice, 0, 1000, delta, &mut scratch);
        }
        let late = s.late.as_ref().unwrap();
        assert_eq!((late.depth, late.recent.len()), (0, 0));
        // Additions to slices older than any the series held then (96,
        // 98, 99: slice 100 was reopened, and took 104's late sample as a
        // recent slice) wait to be merged.
        assert_eq!(
            late.slices.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [96, 98, 99]
        );
        let counts: u64 = s
            .slices(i64::MIN, i64::MAX)
            .iter()
            .map(|x| x.data.count())
            .sum();
        assert_eq!(counts, 3 * (2 + 1 + 8 * 2 + 2 * u64::from(DEPTH_PERIOD)));
    }

    #[test]
    fn late_counters_add_up() {
        let mut scratch = Scratch::default();
        let counts = |r, e| Delta::Counts {
            requests: r,
            errors: e,
        };
        let mut s = Series::new(1000, counts(1, 0), 0);
        s.add(1000, 0, 2000, counts(1, 0), &mut scratch);
        s.add(1002, 0, 2000, counts(2, 1), &mut scratch);
        s.add(1001, 0, 2000, counts(3, 0), &mut scratch);
        s.add(998, 0, 2000, counts(0, 0), &mut scratch);
        // Hundreds of late slices, some twice: merged into the ring on the
        // way (counter slices take no heap, only entries).
        for round in 0..2 {
            for index in (0..998).rev() {
                s.add(
                    index,
                    0,
                    2000,
                    counts(round + 1, (index % 2) as u64),
                    &mut scratch,
                );
            }
        }
        let got: Vec<_> = s
            .slices(i64::MIN, i64::MAX)
            .into_iter()
            .map(|s| (s.index, s.data))
            .collect();
        let c = |requests, errors| SliceData::Counts { requests, errors };
        let mut expected: Vec<_> = (0..998).map(|i| (i, c(3, 2 * (i as u64 % 2)))).collect();
        expected.extend([
            (998, c(0, 0)),
            (1000, c(1, 0)),
            (1001, c(3, 0)),
            (1002, c(2, 1)),
        ]);
        assert_eq!(got, expected);
        assert!(s.late.as_ref().map_or(0, |l| l.slices.len()) < 998);
    }

    #[test]
    fn merge_keeps_order_and_sums() {
        let mut dst = vec![(2, 1), (5, 1), (9, 3)];
        merge_buckets(&mut dst, &[(1, 1), (5, 2), (7, 1), (12, 4)]);
        assert_eq!(dst, vec![(1, 1), (2, 1), (5, 3), (7, 1), (9, 3), (12, 4)]);
        merge_buckets(&mut dst, &[(6, 1)]);
        assert_eq!(dst[3], (6, 1));
        add_units_into(&mut dst, &mut [13, 0, 6, 5, 6, 0, 6, 13]);
        assert_eq!(
            dst,
            vec![
                (0, 2),
                (1, 1),
                (2, 1),
                (5, 4),
                (6, 4),
                (7, 1),
                (9, 3),
                (12, 4),
                (13, 2)
            ]
        );
        let mut empty = Vec::new();
        add_units_into(&mut empty, &mut [3, 4, 3]);
        assert_eq!(empty, vec![(3, 2), (4, 1)]);
    }

    #[test]
    fn radix_sort_sorts() {
        use proptest::prelude::*;
        // Values of up to 1 to 32 bits: one to four passes.
        let units = prop::collection::vec(any::<u32>(), 0..3_000);
        proptest!(ProptestConfig::with_cases(64), |(units in units, bits in 1u32..=32)| {
            let mut units: Vec<u32> = units.into_iter().map(|u| u >> (32 - bits)).collect();
            let mut expected = units.clone();
            expected.sort_unstable();
            sort_units(&mut units, &mut Vec::new());
            prop_assert_eq!(units, expected);
        });
    }

    /// Counted or sorted, buffered indices add up to their counts, and the
    /// per-thread table is left zeroed for the next use.
    #[test]
    fn units_add_as_their_counts() {
        use proptest::prelude::*;
        // Spans from one index to the whole layout, and buffers on both
        // sides of TALLY_MIN: both the counting and the sorting path.
        let case = (
            0u32..INDEX_LIMIT as u32,
            1u32..=INDEX_LIMIT as u32,
            0usize..600,
        )
            .prop_flat_map(|(lo, span, n)| {
                let hi = (lo + span).min(INDEX_LIMIT as u32);
                (
                    prop::collection::vec(lo..hi, n),
                    prop::collection::vec((0u32..INDEX_LIMIT as u32, 1u64..5), 0..50),
                )
            });
        proptest!(ProptestConfig::with_cases(256), |((units, pairs) in case)| {
            let mut expected = std::collections::BTreeMap::new();
            let mut dst: Vec<(u32, u64)> = {
                let mut m = std::collections::BTreeMap::new();
                for (i, c) in pairs {
                    *m.entry(i).or_insert(0u64) += c;
                }
                m.into_iter().collect()
            };
            for &(i, c) in &dst {
                expected.insert(i, c);
            }
            for &u in &units {
                *expected.entry(u).or_insert(0u64) += 1;
            }
            add_units_into(&mut dst, &mut units.clone());
            let expected: Vec<(u32, u64)> = expected.into_iter().collect();
            prop_assert_eq!(dst, expected);
            TALLY.with(|t| {
                let t = t.borrow();
                prop_assert!(t.0.iter().all(|&c| c == 0));
                Ok(())
            })?;
        });
    }

    /// However samples arrive (clustered, with outliers, as pairs), a slice
    /// reads, merges and encodes as their counts, while sparse, dense or
    /// both.
    #[test]
    fn buckets_count_exactly_sparse_or_dense() {
        use proptest::prelude::*;
        #[derive(Debug, Clone)]
        enum Step {
            Units(Vec<u32>),
            Pairs(Vec<(u32, u64)>),
        }
        let centre = 0u32..50_000;
        let step = prop_oneof![
            8 => (centre.clone(), prop::collection::vec((0u32..2_000, any::<bool>(), 0u32..INDEX_LIMIT as u32), 1..300))
                .prop_map(|(c, v)| Step::Units(v.into_iter().map(|(d, outlier, o)| if outlier && d % 17 == 0 { o } else { c + d }).collect())),
            1 => prop::collection::btree_map(0u32..INDEX_LIMIT as u32, 1u64..1_000, 1..20)
                .prop_map(|m| Step::Pairs(m.into_iter().collect())),
        ];
        proptest!(ProptestConfig::with_cases(64), |(steps in prop::collection::vec(step, 1..40))| {
            let mut b = Buckets::default();
            let mut model = std::collections::BTreeMap::new();
            for step in steps {
                match step {
                    Step::Units(units) => {
                        b.add_units(&units);
                        for u in units {
                            *model.entry(u).or_insert(0u64) += 1;
                        }
                    }
                    Step::Pairs(pairs) => {
                        merge_buckets(&mut b.sorted, &pairs);
                        for (i, c) in pairs {
                            *model.entry(i).or_insert(0u64) += c;
                        }
                    }
                }
                let expected: Vec<(u32, u64)> = model.iter().map(|(&i, &c)| (i, c)).collect();
                prop_assert_eq!(&b.pairs(), &expected);
                let mut into = Vec::new();
                b.add_into(&mut into);
                prop_assert_eq!(&into, &expected);
                if !b.dense.is_empty() {
                    let span = b.dense.counts.len() as u64;
                    // The dense count's memory bound.
                    prop_assert!(span <= DENSE_SPAN_PER_SAMPLE * b.dense.samples);
                }
            }
            let expected: Vec<(u32, u64)> = model.into_iter().collect();
            let mut encoded = Vec::new();
            b.clone().encode(&mut encoded);
            let mut decoded = Vec::new();
            decode_buckets(encoded.into_iter(), &mut decoded);
            prop_assert_eq!(&decoded, &expected);
            b.compact();
            prop_assert!(b.dense.is_empty() && b.units.is_empty());
            prop_assert_eq!(b.sorted, expected);
        });
    }

    /// A dense count that would overflow its 32 bits leaves the sample to
    /// the pairs instead: nothing is lost.
    #[test]
    fn a_full_dense_count_spills_to_the_pairs() {
        let mut b = Buckets::default();
        let units: Vec<u32> = (0..DENSE_MIN as u32).map(|k| 100 + k % 200).collect();
        b.add_units(&units);
        b.flush_units();
        assert!(!b.dense.is_empty(), "a busy slice counts densely");
        let at = (150 - b.dense.base) as usize;
        let before = u64::from(b.dense.counts[at]);
        b.dense.counts[at] = u32::MAX - 1;
        b.dense.samples += u64::from(u32::MAX - 1) - before;
        b.add_units(&[150, 150, 150]);
        let count = |b: &Buckets| b.pairs().iter().find(|p| p.0 == 150).map(|p| p.1);
        assert_eq!(count(&b), Some(u64::from(u32::MAX) + 2));
        b.settle();
        assert_eq!(count(&b), Some(u64::from(u32::MAX) + 2));
    }

    /// A slice filled with single samples, past several settles, reads as
    /// their counts, before and after it is settled.
    #[test]
    fn buffered_units_count_exactly() {
        let mut b = Buckets::default();
        let mut expected = std::collections::BTreeMap::new();
        for k in 0..5_000u32 {
            let idx = (k * 7919) % 1_000;
            b.add_units(&[idx]);
            *expected.entry(idx).or_insert(0u64) += 1;
            assert!(b.units.len() < UNITS_MIN.max(2 * b.sorted.len()));
        }
        let expected: Vec<(u32, u64)> = expected.into_iter().collect();
        assert_eq!(b.pairs(), expected);
        let mut into = vec![(0, 1)];
        b.add_into(&mut into);
        assert_eq!(into[0], (0, expected[0].1 + 1));
        b.settle();
        assert!(b.units.is_empty());
        assert_eq!(b.sorted, expected);
    }
}
