//! One series' window, compact: completed slices encoded in one byte ring,
//! the newest (open) slice as plain sorted buckets.
//!
//! Layout. A series holds the slices `first ..= open_index`, every index in
//! that range (a slice without data is one byte), so a slice's index is
//! implicit from its position and `first = open_index - n_done`:
//! - `done`: the completed slices, oldest first, each a LEB128 length then
//!   its payload. An empty payload is a slice without data. A distribution
//!   payload is its non-empty buckets in increasing order, each a varint
//!   token `(index delta) << 1 | (count == 1)`, followed by a varint count
//!   when the count is not 1 (most buckets of a 10 s slice hold one sample,
//!   and neighbouring bucket indices are close, so a bucket costs 2 bytes
//!   where a `(u32, u64)` pair costs 16). A counter payload is two varints,
//!   requests and errors.
//! - `open`: the newest slice, sorted `(bucket index, count)` pairs (or the
//!   two counters), which samples update in place. When a sample for a
//!   newer slice arrives, the open slice is encoded onto the end of `done`.
//!
//! The ring is a `VecDeque<u8>` grown by an eighth at a time, so it stays
//! within about 12% of the window's encoded size; expiring the oldest slice
//! pops its bytes off the front without moving the rest. Recording into the
//! open slice is a binary search and an insert into a few dozen pairs; a
//! late sample for a completed slice re-encodes that slice (and copies the
//! ring once), which a stream in time order rarely needs.

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
    // Count the new indices, grow once, then merge from the back so that
    // nothing is overwritten before it is read.
    let (mut i, mut new) = (0, 0);
    for &(idx, _) in src {
        while i < dst.len() && dst[i].0 < idx {
            i += 1;
        }
        if i >= dst.len() || dst[i].0 != idx {
            new += 1;
        }
    }
    let old_len = dst.len();
    dst.resize(old_len + new, (0, 0));
    let (mut a, mut b, mut w) = (old_len, src.len(), old_len + new);
    while b > 0 {
        let s = src[b - 1];
        w -= 1;
        if a > 0 && dst[a - 1].0 > s.0 {
            dst[w] = dst[a - 1];
            a -= 1;
        } else if a > 0 && dst[a - 1].0 == s.0 {
            dst[w] = (s.0, dst[a - 1].1 + s.1);
            a -= 1;
            b -= 1;
        } else {
            dst[w] = s;
            b -= 1;
        }
    }
}

/// What a group of samples adds to one slice of one series.
#[derive(Debug, Clone, Copy)]
pub(super) enum Delta<'a> {
    /// Sorted, deduplicated `(bucket index, count)` pairs.
    Buckets(&'a [(u32, u64)]),
    /// Counters.
    Counts { requests: u64, errors: u64 },
}

/// The newest slice of a series, updated in place.
#[derive(Debug, Clone)]
enum Open {
    Buckets(Vec<(u32, u64)>),
    Counts { requests: u64, errors: u64 },
}

impl Open {
    fn apply(&mut self, delta: Delta<'_>) {
        match (self, delta) {
            (Open::Buckets(b), Delta::Buckets(d)) => merge_buckets(b, d),
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

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Open::Buckets(b) => encode_buckets(b, out),
            Open::Counts { requests, errors } => {
                put_varint(out, *requests);
                put_varint(out, *errors);
            }
        }
    }

    fn to_slice_data(&self) -> SliceData {
        match self {
            Open::Buckets(b) => SliceData::Distribution(histogram(b)),
            Open::Counts { requests, errors } => SliceData::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }
}

/// A histogram of sorted pairs.
fn histogram(buckets: &[(u32, u64)]) -> SparseHistogram {
    SparseHistogram::from_index_counts(buckets.to_vec())
}

/// glibc's chunk for a request of `n` bytes: 8 bytes of header, rounded up
/// to 16, at least 32; nothing for no allocation.
pub(super) fn malloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

/// Buckets the open slice has room for when a series is created.
const OPEN_CAPACITY: usize = 16;

/// One series' window.
#[derive(Debug, Clone)]
pub(super) struct Series {
    done: VecDeque<u8>,
    n_done: u32,
    open_index: i64,
    open: Open,
    /// Logical time of the last update, for least-recently-updated eviction.
    pub(super) touched: u64,
    /// Bytes accounted for this series (see [`Series::account`]).
    pub(super) bytes: usize,
}

/// Bytes of a series outside its own allocations: its map entry (key and
/// value) with the hash table's spare slots (a table is between 44% and 87%
/// full, and doubles) and control byte. Calibrated against resident memory
/// by the store benchmark and a counting-allocator test.
pub(super) const ENTRY_BYTES: usize =
    (std::mem::size_of::<(crate::names::SeriesKey, Series)>() + 1) * 3 / 2;

impl Series {
    /// An empty series of the kind of `delta`, open at `slice`.
    pub(super) fn new(slice: i64, delta: Delta<'_>, touched: u64) -> Self {
        let open = match delta {
            // Room for a typical slice at once: growing by doubling would
            // leave three freed blocks behind per series.
            Delta::Buckets(_) => Open::Buckets(Vec::with_capacity(OPEN_CAPACITY)),
            Delta::Counts { .. } => Open::Counts {
                requests: 0,
                errors: 0,
            },
        };
        Series {
            done: VecDeque::new(),
            n_done: 0,
            open_index: slice,
            open,
            touched,
            bytes: 0,
        }
    }

    /// Whether `delta` is of this series' kind.
    pub(super) fn accepts(&self, delta: Delta<'_>) -> bool {
        matches!(
            (&self.open, delta),
            (Open::Buckets(_), Delta::Buckets(_)) | (Open::Counts { .. }, Delta::Counts { .. })
        )
    }

    /// Whether the series holds distributions (else counters).
    pub(super) fn is_distribution(&self) -> bool {
        matches!(self.open, Open::Buckets(_))
    }

    fn first_index(&self) -> i64 {
        self.open_index - i64::from(self.n_done)
    }

    /// Recomputes [`Series::bytes`]: the map entry, the ring's and the open
    /// slice's allocations as the allocator sizes them, plus an eighth of
    /// those for the blocks they left free as they grew (which the process
    /// holds too: the store benchmark measured resident memory 14% above
    /// the accounting without it, 4% with it). O(1).
    pub(super) fn account(&mut self) -> usize {
        let open = match &self.open {
            Open::Buckets(b) => malloc_size(b.capacity() * std::mem::size_of::<(u32, u64)>()),
            Open::Counts { .. } => 0,
        };
        let heap = malloc_size(self.done.capacity()) + open;
        self.bytes = ENTRY_BYTES + heap + heap / 8;
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
        } else {
            self.add_late(slice, delta, scratch);
        }
    }

    /// Makes `slice` (newer than the open slice) the open one.
    fn advance(&mut self, slice: i64, oldest: i64, window_slices: i64, scratch: &mut Scratch) {
        scratch.bytes.clear();
        if self.open_index < oldest {
            // Everything held is out of the window.
            self.done.clear();
            self.n_done = 0;
        } else {
            let payload_start = scratch.bytes.len();
            self.open.encode(&mut scratch.bytes);
            let payload = scratch.bytes.split_off(payload_start);
            put_varint(&mut scratch.bytes, payload.len() as u64);
            scratch.bytes.extend_from_slice(&payload);
            self.n_done += 1;
        }
        // Slices without data between the old open slice and the new one
        // (only those inside the window).
        let gap_from = (self.open_index + 1).max(oldest);
        let gap = (slice - gap_from).max(0);
        scratch.bytes.resize(scratch.bytes.len() + gap as usize, 0);
        self.n_done += gap as u32;
        self.push_back(&scratch.bytes, window_slices);
        self.open_index = slice;
        match &mut self.open {
            Open::Buckets(b) => b.clear(),
            Open::Counts { requests, errors } => {
                *requests = 0;
                *errors = 0;
            }
        }
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
        if self.done.is_empty() && self.done.capacity() > 0 && self.n_done == 0 {
            // An idle series' ring is given back.
            self.done = VecDeque::new();
        }
    }

    /// Byte ranges (header start, payload start, payload end) of the
    /// completed slices, oldest first.
    fn spans(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut at = 0usize;
        (0..self.n_done).map_while(move |_| {
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
    /// (inside the window), re-encoding it.
    fn add_late(&mut self, slice: i64, delta: Delta<'_>, scratch: &mut Scratch) {
        let first = self.first_index();
        scratch.bytes.clear();
        if slice < first {
            // Prepend the slice and empty slices up to the first held one.
            let mut data = match delta {
                Delta::Buckets(_) => Open::Buckets(Vec::new()),
                Delta::Counts { .. } => Open::Counts {
                    requests: 0,
                    errors: 0,
                },
            };
            data.apply(delta);
            let mut payload = Vec::new();
            data.encode(&mut payload);
            put_varint(&mut scratch.bytes, payload.len() as u64);
            scratch.bytes.extend_from_slice(&payload);
            let gap = (first - slice - 1) as usize;
            scratch.bytes.resize(scratch.bytes.len() + gap, 0);
            self.n_done += (first - slice) as u32;
            scratch.bytes.extend(self.done.iter());
        } else {
            let Some((start, payload, end)) = self.spans().nth((slice - first) as usize) else {
                return;
            };
            let mut data = if self.is_distribution() {
                scratch.buckets.clear();
                decode_buckets(self.done.range(payload..end).copied(), &mut scratch.buckets);
                Open::Buckets(std::mem::take(&mut scratch.buckets))
            } else if payload == end {
                Open::Counts {
                    requests: 0,
                    errors: 0,
                }
            } else {
                let mut it = self.done.range(payload..end).copied();
                Open::Counts {
                    requests: get_varint(&mut it).unwrap_or(0),
                    errors: get_varint(&mut it).unwrap_or(0),
                }
            };
            data.apply(delta);
            scratch.bytes.extend(self.done.range(..start));
            let mut encoded = Vec::new();
            data.encode(&mut encoded);
            put_varint(&mut scratch.bytes, encoded.len() as u64);
            scratch.bytes.extend_from_slice(&encoded);
            scratch.bytes.extend(self.done.range(end..));
            if let Open::Buckets(b) = data {
                scratch.buckets = b;
            }
        }
        // The new ring, sized exactly (plus the usual eighth when growing).
        let mut ring = VecDeque::with_capacity(
            scratch
                .bytes
                .len()
                .max(self.done.capacity().min(scratch.bytes.len() * 9 / 8)),
        );
        ring.extend(scratch.bytes.iter().copied());
        self.done = ring;
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
        if to >= first && from < self.open_index {
            for (k, (_, payload, end)) in self.spans().enumerate() {
                let index = first + k as i64;
                if index > to {
                    break;
                }
                if index < from || payload == end {
                    continue;
                }
                let bytes = self.done.range(payload..end).copied();
                let data = if self.is_distribution() {
                    // A bucket takes at least a byte: room for all at once
                    // (growing by doubling cost more than the slack).
                    let mut buckets = Vec::with_capacity(end - payload);
                    decode_buckets(bytes, &mut buckets);
                    SliceData::Distribution(SparseHistogram::from_index_counts(buckets))
                } else {
                    let mut it = bytes;
                    SliceData::Counts {
                        requests: get_varint(&mut it).unwrap_or(0),
                        errors: get_varint(&mut it).unwrap_or(0),
                    }
                };
                out.push(Slice { index, data });
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

    #[test]
    fn merge_keeps_order_and_sums() {
        let mut dst = vec![(2, 1), (5, 1), (9, 3)];
        merge_buckets(&mut dst, &[(1, 1), (5, 2), (7, 1), (12, 4)]);
        assert_eq!(dst, vec![(1, 1), (2, 1), (5, 3), (7, 1), (9, 3), (12, 4)]);
        merge_buckets(&mut dst, &[(6, 1)]);
        assert_eq!(dst[3], (6, 1));
    }
}
