//! The store: rolling, time-sliced windows per series.
//!
//! Every series (service, version, metric, kept labels) holds a ring of time
//! slices (`slice_secs` long, 10 s by default) covering `window_secs` of
//! stream time. The judge compares arms slice by slice (within the same
//! slice both arms saw the same load), and old slices expire as stream time
//! advances. Readers get distribution slices as [`SparseHistogram`]s (only
//! non-empty buckets); inside, a series keeps its completed slices
//! delta-encoded in one byte ring, about 2 bytes per non-empty bucket, and
//! only the newest slice as plain pairs (see `store/series.rs`). A series
//! of 180 slices of 5 to 20 samples takes about 6 KB.
//!
//! Concurrency: series live in a `DashMap` (sharded locks), each behind
//! its own lock, so ingest writers and judge readers contend only on the
//! series they touch; recording a sample is a hash lookup plus a bucket
//! increment in the newest slice. A reader that comes back to the same
//! series every tick (the judge) keeps a [`SeriesReader`], which reads it
//! without the look-up by key. [`Store::record_batch`] groups a batch by
//! series and slice first, so a group takes its series' lock once. No
//! lock is held across calls; a series' lock is only ever taken under its
//! shard's guard or alone, never the other way round.
//!
//! Bounds: labels outside the allow-list are dropped; past
//! `max_label_sets_per_service` distinct label sets a service's new label
//! values fold into `other`; past `memory_budget_bytes` the
//! least-recently-updated series are evicted. Each is counted in
//! [`StoreStats`].
//!
//! Every labelled sample is also recorded into the series' aggregate (no
//! labels), so the metric as a whole is read without merging its labels.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError, TryLockError};

use dashmap::try_result::TryResult;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};
use vigil_stats::sparse::bucket_index;
use vigil_stats::{BucketCounts, SparseHistogram};

use crate::event::{Observation, Sample, Timestamp};
use crate::metric::DISTRIBUTION_SCALE;
use crate::names::{Labels, MetricName, SeriesKey, ServiceName, Version};
use crate::CoreError;

mod series;

use series::{Cell, Delta, Scratch, Series};

/// Label value that samples over the cardinality limit fold into.
pub const OTHER: &str = "other";

/// How the store is shaped and bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Length of a time slice, the unit of within-time comparison.
    pub slice_secs: u32,
    /// Stream time kept per series.
    pub window_secs: u32,
    /// Labels kept on series (others are dropped at ingestion).
    pub label_allow_list: Vec<String>,
    /// Distinct label sets per service before new ones fold into `other`.
    pub max_label_sets_per_service: usize,
    /// Approximate bytes of series data before least-recently-updated
    /// series are evicted.
    pub memory_budget_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            slice_secs: 10,
            window_secs: 30 * 60,
            label_allow_list: vec!["endpoint".to_owned()],
            max_label_sets_per_service: 200,
            memory_budget_bytes: 2 << 30,
        }
    }
}

impl StoreConfig {
    fn window_slices(&self) -> i64 {
        i64::from(self.window_secs.div_ceil(self.slice_secs.max(1)))
    }
}

/// What one slice of one series holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SliceData {
    /// Distribution samples, in thousandths of the metric's unit.
    Distribution(SparseHistogram),
    /// Error-rate counters.
    Counts {
        /// Requests.
        requests: u64,
        /// Of which failed.
        errors: u64,
    },
}

impl SliceData {
    /// Samples (or requests) in the slice.
    pub fn count(&self) -> u64 {
        match self {
            SliceData::Distribution(h) => h.len(),
            SliceData::Counts { requests, .. } => *requests,
        }
    }

    /// Adds another slice of the same kind; a kind mismatch is ignored
    /// (series have one kind, enforced at recording).
    pub fn merge(&mut self, other: &SliceData) {
        match (self, other) {
            (SliceData::Distribution(a), SliceData::Distribution(b)) => a.merge(b),
            (
                SliceData::Counts { requests, errors },
                SliceData::Counts {
                    requests: r,
                    errors: e,
                },
            ) => {
                *requests += r;
                *errors += e;
            }
            _ => {}
        }
    }
}

/// One time slice: its index (slice start / slice_secs) and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Index of the slice: floor(ts / slice_secs).
    pub index: i64,
    /// What was recorded in it.
    pub data: SliceData,
}

/// Counters of what the store did with its input.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Samples recorded.
    pub recorded: AtomicU64,
    /// Samples whose labels folded into `other` (cardinality limit).
    pub folded_into_other: AtomicU64,
    /// Series evicted to stay within the memory budget.
    pub evicted_series: AtomicU64,
    /// Samples rejected as older than the window.
    pub too_old: AtomicU64,
    /// Samples rejected for their kind (value for counters or the reverse).
    pub kind_mismatch: AtomicU64,
    /// Samples rejected as invalid (NaN, negative, too large).
    pub invalid: AtomicU64,
    /// Samples recorded into a slice the judge had already read
    /// ([`Store::set_judged_before`]): in the store's views, but not in the
    /// verdicts that read that slice. Many of them mean samples arrive
    /// later than the judge waits (`slice_grace`).
    pub after_judged: AtomicU64,
}

/// A read-only copy of [`StoreStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Samples recorded.
    pub recorded: u64,
    /// Folded into `other`.
    pub folded_into_other: u64,
    /// Series evicted.
    pub evicted_series: u64,
    /// Too old.
    pub too_old: u64,
    /// Kind mismatch.
    pub kind_mismatch: u64,
    /// Invalid values.
    pub invalid: u64,
    /// Recorded into a slice already judged.
    pub after_judged: u64,
    /// Live series.
    pub series: u64,
    /// Approximate bytes of series data.
    pub bytes: u64,
}

type MetricIndexKey = (ServiceName, Version, MetricName);

/// The maps hash with foldhash: several times faster than SipHash on these
/// short keys, and still seeded per process so keys chosen by a sender
/// cannot be aimed at one shard.
type Map<K, V> = DashMap<K, V, RandomState>;

/// A series as the map holds it: shared with the [`SeriesReader`]s that
/// read it, emptied (`None`) when it is evicted.
type Shared = Arc<Cell>;

/// Locks a series. A thread that panicked while holding the lock (a bug)
/// may have left it part-way through a change; its data is used as it is
/// rather than failing every later reader and writer of the series.
fn lock(cell: &Cell) -> MutexGuard<'_, Option<Series>> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `f` of the series in `cell`, under its lock; `None` once evicted.
fn read<R>(cell: &Cell, f: impl FnOnce(&Series) -> R) -> Option<R> {
    lock(cell).as_ref().map(f)
}

/// Locks a series if no other thread holds it.
fn try_lock(cell: &Cell) -> Option<MutexGuard<'_, Option<Series>>> {
    match cell.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// A reader's hold on one series, for [`Store::read_slices`]: after the
/// first read it goes straight to the series instead of looking its key
/// up, which at 10,000 analyses was a cache miss or two per series per
/// judge tick (the hash table's control bytes and entry). It holds only a
/// pointer: an evicted series gives its data back at once, and the reader
/// looks the key up again (a series recreated under the same key is a new
/// one). It reads the series of the store it last read; given another
/// store, it looks the key up in that one.
#[derive(Debug, Clone)]
pub struct SeriesReader {
    key: SeriesKey,
    /// The series found, and the id of the store that holds it.
    cell: Option<(u64, Shared)>,
}

impl SeriesReader {
    /// A reader of `key`'s series (looked up on the first read).
    pub fn new(key: SeriesKey) -> Self {
        Self { key, cell: None }
    }

    /// The series it reads.
    pub fn key(&self) -> &SeriesKey {
        &self.key
    }

    /// Reads the first word of the series it holds, and returns it (for
    /// `std::hint::black_box`): a caller about to read several series
    /// that are cold in memory loads them in one loop of independent
    /// reads, whose cache misses overlap.
    pub fn touch(&self) -> u64 {
        self.cell
            .as_ref()
            .map_or(0, |(_, cell)| Arc::strong_count(cell) as u64)
    }
}

/// The store of rolling per-series windows.
#[derive(Debug)]
pub struct Store {
    /// Unique among this process's stores, for [`SeriesReader`]s.
    id: u64,
    config: StoreConfig,
    series: Map<SeriesKey, Shared>,
    /// Label sets present per (service, version, metric), for dimensions.
    index: Map<MetricIndexKey, BTreeSet<Labels>>,
    /// Distinct label sets per service, for the cardinality limit.
    label_sets: Map<ServiceName, HashSet<Labels>>,
    /// Newest slice index seen (stream time high-water mark).
    high_water: AtomicI64,
    /// The high-water mark and when (wall clock) it was raised to that.
    raised: std::sync::Mutex<Option<(i64, std::time::Instant)>>,
    /// Slices before this one have been read by the judge.
    judged_before: AtomicI64,
    clock: AtomicU64,
    bytes: AtomicUsize,
    stats: StoreStats,
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let mut config = config;
        config.slice_secs = config.slice_secs.max(1);
        /// The next store's id.
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            series: Map::default(),
            index: Map::default(),
            label_sets: Map::default(),
            high_water: AtomicI64::new(i64::MIN),
            raised: std::sync::Mutex::new(None),
            judged_before: AtomicI64::new(i64::MIN),
            clock: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            stats: StoreStats::default(),
        }
    }

    /// Raises the high-water mark to `slice` if it is below; the mark
    /// after. Notes when a raise happened (once per slice of stream time).
    fn raise_high_water(&self, slice: i64) -> i64 {
        let before = self.high_water.fetch_max(slice, Ordering::AcqRel);
        if before < slice {
            if let Ok(mut raised) = self.raised.lock() {
                if raised.is_none_or(|(h, _)| h < slice) {
                    *raised = Some((slice, std::time::Instant::now()));
                }
            }
        }
        before.max(slice)
    }

    /// The high-water mark and when this process's store raised it to that
    /// (wall clock), `None` before the first sample or after a restore
    /// until stream time moves. A live judge waits for late samples from
    /// that moment.
    pub fn high_water_since(&self) -> Option<(i64, std::time::Instant)> {
        let raised = (*self.raised.lock().ok()?)?;
        (self.high_water() == Some(raised.0)).then_some(raised)
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Index of the slice holding stream time `ts`.
    pub fn slice_of(&self, ts: Timestamp) -> i64 {
        floor_i64(ts / f64::from(self.config.slice_secs))
    }

    /// Stream time at which slice `index` starts.
    pub fn slice_start(&self, index: i64) -> Timestamp {
        index as f64 * f64::from(self.config.slice_secs)
    }

    /// Newest slice index seen, `None` before the first sample.
    pub fn high_water(&self) -> Option<i64> {
        let h = self.high_water.load(Ordering::Acquire);
        (h != i64::MIN).then_some(h)
    }

    /// Oldest slice index still inside the window.
    pub fn window_start(&self) -> Option<i64> {
        Some(self.high_water()? - self.config.window_slices() + 1)
    }

    /// Moves stream time forward without a sample (the judge's tick).
    pub fn advance(&self, now: Timestamp) {
        if now.is_finite() {
            self.raise_high_water(self.slice_of(now));
        }
    }

    /// Notes that the judge has read every slice before `slice`: samples
    /// recorded into those from now on are counted
    /// ([`StoreStats::after_judged`]).
    pub fn set_judged_before(&self, slice: i64) {
        self.judged_before.fetch_max(slice, Ordering::AcqRel);
    }

    /// Counts a sample recorded into `slice` if the judge has read it.
    fn note_judged(&self, slice: i64) {
        if slice < self.judged_before.load(Ordering::Relaxed) {
            self.stats.after_judged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records one sample into its series (and the series' aggregate).
    pub fn record(&self, sample: &Sample) -> Result<(), CoreError> {
        let result = self.record_inner(sample);
        match &result {
            Ok(()) => {
                self.stats.recorded.fetch_add(1, Ordering::Relaxed);
                if sample.ts.is_finite() {
                    self.note_judged(self.slice_of(sample.ts));
                }
            }
            Err(e) => self.count_rejection(e),
        }
        result
    }

    fn count_rejection(&self, error: &CoreError) {
        let counter = match error {
            CoreError::TooOld { .. } => &self.stats.too_old,
            CoreError::KindMismatch { .. } => &self.stats.kind_mismatch,
            _ => &self.stats.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Validates a sample: its contribution and slice, and the window's
    /// oldest slice given the high-water mark `high` (updated).
    fn place(
        &self,
        ts: Timestamp,
        observation: &Observation,
        high: &mut i64,
    ) -> Result<(Contribution, i64, i64), CoreError> {
        if !ts.is_finite() {
            return Err(CoreError::NotFinite {
                what: "timestamp",
                value: ts,
            });
        }
        let data = contribution(observation)?;
        let slice = self.slice_of(ts);
        *high = (*high).max(slice);
        let oldest = *high - self.config.window_slices() + 1;
        if slice < oldest {
            return Err(CoreError::TooOld {
                ts,
                window_start: self.slice_start(oldest),
            });
        }
        Ok((data, slice, oldest))
    }

    fn record_inner(&self, sample: &Sample) -> Result<(), CoreError> {
        let mut high = self.high_water.load(Ordering::Acquire);
        let (data, slice, _) = self.place(sample.ts, &sample.observation, &mut high)?;
        let high = self.raise_high_water(slice);
        let oldest = high - self.config.window_slices() + 1;
        let (labels, _) = self.kept_labels(&sample.service, &sample.labels);
        let mut key = SeriesKey {
            service: sample.service.clone(),
            version: sample.version.clone(),
            metric: sample.metric.clone(),
            labels: Labels::empty(),
        };
        let delta = data.delta();
        let delta = delta.as_delta();
        // Check the kind before writing anything, so a mismatch leaves no
        // half-recorded sample behind.
        self.check_kind(&key, delta)?;
        let mut scratch = Scratch::default();
        if !labels.is_empty() {
            let aggregate = std::mem::replace(&mut key.labels, labels);
            self.check_kind(&key, delta)?;
            // The index only changes when a labelled series is created.
            if self.add(&key, slice, oldest, delta, &mut scratch) {
                self.index_label_set(&key);
            }
            key.labels = aggregate;
        }
        self.add(&key, slice, oldest, delta, &mut scratch);
        if self.bytes.load(Ordering::Relaxed) > self.config.memory_budget_bytes {
            self.evict();
        }
        Ok(())
    }

    /// Records a batch of samples: the same result as recording them one by
    /// one with [`Store::record`] (with a single writer; concurrent writers
    /// interleave by batch), at a fraction of the cost. Samples are grouped
    /// by series and slice, and each group takes its series' lock once.
    ///
    /// Refused samples are returned with their index in `samples` and the
    /// error [`Store::record`] would have given, and counted in
    /// [`StoreStats`]; the others are recorded.
    pub fn record_batch(&self, samples: &[Sample]) -> BatchOutcome {
        self.record_points(
            samples
                .iter()
                .map(|s| (s, s.ts, std::borrow::Cow::Borrowed(&s.observation))),
        )
    }

    /// Records runs of values, each `(timestamp, value)` pairs of one
    /// series (a `SampleBatch`'s points) with the service, version, metric
    /// and labels of its head sample (whose own timestamp and observation
    /// are ignored): the same as [`Store::record_batch`] of the samples
    /// they make (the head with each pair as timestamp and
    /// [`Observation::Value`], run after run), without building them.
    /// Rejected indices count the points of all runs in order.
    pub fn record_values<'s>(
        &self,
        runs: impl IntoIterator<Item = (&'s Sample, &'s [(Timestamp, f64)])>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let mut batch = Batch::for_store(self);
        let mut high = self.high_water.load(Ordering::Acquire);
        let window = self.config.window_slices();
        let slice_secs = f64::from(self.config.slice_secs);
        let mut n = 0;
        for (head, points) in runs {
            let mut k = 0;
            while k < points.len() {
                // Fast path: the points from `k` on that go where the
                // previous point of this run went (a group of the same
                // slice) and are valid: the checks of `place`, in its
                // order, on the whole stretch first, then its bucket
                // indices in one loop (two tight loops, not a branchy one
                // per point with a push). Their slice is not newer than
                // `high`, which stays. The first point that does not fit
                // takes the slow path, which gives the error.
                if let Some(last) = &batch.last {
                    if std::ptr::eq(last.sample, head)
                        && last.is_distribution
                        && last.slice > high - window
                    {
                        let slice = last.slice;
                        let rest = &points[k..];
                        let fits = rest
                            .iter()
                            .take_while(|&&(ts, v)| {
                                ts.is_finite()
                                    && floor_i64(ts / slice_secs) == slice
                                    && value_in_range(v)
                            })
                            .count();
                        if fits > 0 {
                            if last.folded {
                                self.stats
                                    .folded_into_other
                                    .fetch_add(fits as u64, Ordering::Relaxed);
                            }
                            batch.groups[last.group].units.extend(
                                rest[..fits]
                                    .iter()
                                    .map(|&(_, v)| bucket_index(scaled_in_range(v))),
                            );
                            batch.note_judged_n(slice, fits as u64);
                            n += fits;
                            k += fits;
                            continue;
                        }
                    }
                }
                let (ts, v) = points[k];
                let i = n;
                n += 1;
                k += 1;
                let observation = Observation::Value(v);
                if let Err(error) = self.batch_one(head, ts, &observation, &mut high, &mut batch) {
                    self.count_rejection(&error);
                    outcome.rejected.push((i, error));
                }
            }
        }
        self.apply_batch(batch, outcome, high, n)
    }

    /// Records points, each the series of a sample with a timestamp and an
    /// observation; see [`Store::record_batch`].
    fn record_points<'s>(
        &self,
        points: impl Iterator<Item = (&'s Sample, Timestamp, std::borrow::Cow<'s, Observation>)>,
    ) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        let mut batch = Batch::for_store(self);
        let mut high = self.high_water.load(Ordering::Acquire);
        let mut n = 0;
        for (i, (sample, ts, observation)) in points.enumerate() {
            n += 1;
            if let Err(error) = self.batch_one(sample, ts, &observation, &mut high, &mut batch) {
                self.count_rejection(&error);
                outcome.rejected.push((i, error));
            }
        }
        self.apply_batch(batch, outcome, high, n)
    }

    /// Records a batch's groups, given its `n` points, the rejected ones
    /// already in `outcome`, and the high-water mark they reached.
    fn apply_batch(
        &self,
        mut batch: Batch<'_>,
        mut outcome: BatchOutcome,
        high: i64,
        n: usize,
    ) -> BatchOutcome {
        outcome.recorded = n - outcome.rejected.len();
        if batch.after_judged > 0 {
            self.stats
                .after_judged
                .fetch_add(batch.after_judged, Ordering::Relaxed);
        }
        // Stream time moves even if the samples that moved it were refused
        // later (for their kind), as one by one.
        let high = self.raise_high_water(high);
        if batch.groups.is_empty() {
            return outcome;
        }
        let window_oldest = high - self.config.window_slices() + 1;
        let mut scratch = Scratch::default();
        for group in &mut batch.groups {
            group.prepare();
        }
        // A group whose series another thread is writing waits for the
        // end of the batch rather than for that thread: workers that share
        // series (Kafka partitions that all carry every series) then take
        // turns instead of queueing on one lock. The order of additions
        // does not change a series' counts; later groups of the same
        // metric wait too, so that a series still gets its slices in the
        // batch's order (a slice added after a newer one takes the late
        // path).
        let mut later: Vec<usize> = Vec::new();
        // One deferred group per metric, to compare the others with.
        let mut held: Vec<usize> = Vec::new();
        for (g, group) in batch.groups.iter().enumerate() {
            let waiting = held.iter().any(|&w| batch.groups[w].same_metric(group));
            if waiting || !self.apply_group(group, &batch.kept, window_oldest, false, &mut scratch)
            {
                if !waiting {
                    held.push(g);
                }
                later.push(g);
            }
        }
        for g in later {
            self.apply_group(
                &batch.groups[g],
                &batch.kept,
                window_oldest,
                true,
                &mut scratch,
            );
        }
        self.stats
            .recorded
            .fetch_add(outcome.recorded as u64, Ordering::Relaxed);
        outcome
    }

    /// Adds a group's deltas to its series (and their aggregate): false,
    /// and nothing added, if `wait` is false and its first series is
    /// being written by another thread.
    fn apply_group(
        &self,
        group: &Group,
        kept: &[Labels],
        window_oldest: i64,
        mut wait: bool,
        scratch: &mut Scratch,
    ) -> bool {
        let labels = &kept[group.labels];
        let mut key = SeriesKey {
            service: group.service.clone(),
            version: group.version.clone(),
            metric: group.metric.clone(),
            labels: Labels::empty(),
        };
        let slice = group.slice;
        // A slice that fell out of the window during the batch is still
        // applied (and hidden from readers), as one by one.
        let oldest = window_oldest.min(slice);
        // Only the first series may be given up on: once something is
        // added, the rest of the group waits.
        for delta in group.deltas().into_iter().flatten() {
            if !labels.is_empty() {
                let aggregate = std::mem::replace(&mut key.labels, labels.clone());
                match self.add_if(&key, slice, oldest, delta, wait, scratch) {
                    None => return false,
                    Some(true) => self.index_label_set(&key),
                    Some(false) => {}
                }
                wait = true;
                key.labels = aggregate;
            }
            if self
                .add_if(&key, slice, oldest, delta, wait, scratch)
                .is_none()
            {
                return false;
            }
            wait = true;
        }
        if self.bytes.load(Ordering::Relaxed) > self.config.memory_budget_bytes {
            self.evict();
        }
        true
    }

    /// Validates one sample of a batch and adds it to its group.
    fn batch_one<'s>(
        &self,
        sample: &'s Sample,
        ts: Timestamp,
        observation: &Observation,
        high: &mut i64,
        batch: &mut Batch<'s>,
    ) -> Result<(), CoreError> {
        let (data, slice, _) = self.place(ts, observation, high)?;
        let delta = data.delta();
        let delta = delta.as_delta();
        let is_distribution = !matches!(delta, Delta::Counts { .. });
        // Fast path: the series, slice and kind of the previous sample (a
        // stream's samples come in runs). Its names, labels and kind were
        // checked then; only what it counted is counted again.
        if let Some(last) = &mut batch.last {
            let same = |a: &str, b: &str| std::ptr::eq(a, b);
            if last.slice == slice
                && last.is_distribution == is_distribution
                && same(last.sample.service.as_str(), sample.service.as_str())
                && same(last.sample.version.as_str(), sample.version.as_str())
                && same(last.sample.metric.as_str(), sample.metric.as_str())
                && last.sample.labels == sample.labels
            {
                if last.folded {
                    self.stats.folded_into_other.fetch_add(1, Ordering::Relaxed);
                }
                batch.groups[last.group].add(delta);
                // This sample's run goes on from here: `record_values`
                // recognises a run by its head.
                last.sample = sample;
                batch.note_judged(slice);
                return Ok(());
            }
        }
        let (labels, folded) = batch.kept_labels(self, &sample.service, &sample.labels);
        let names = batch.name_ids(sample);
        // Kinds as one by one: the aggregate's, then the labelled series'.
        let mut series = [(names, NO_LABELS), (names, labels)];
        let n_series = if batch.kept[labels].is_empty() { 1 } else { 2 };
        for &(names, labels) in &series[..n_series] {
            let kind = match batch.kinds.get(&(names, labels)) {
                Some(&kind) => kind,
                None => {
                    let key = SeriesKey {
                        service: sample.service.clone(),
                        version: sample.version.clone(),
                        metric: sample.metric.clone(),
                        labels: batch.kept[labels].clone(),
                    };
                    let kind = self.with_series(&key, Series::is_distribution);
                    batch.kinds.insert((names, labels), kind);
                    kind
                }
            };
            if let Some(kind) = kind {
                if kind != is_distribution {
                    return Err(kind_mismatch(&sample.metric, kind));
                }
            }
        }
        for (names, labels) in &mut series[..n_series] {
            batch.kinds.insert((*names, *labels), Some(is_distribution));
        }
        let group = match batch.group_of.get(&(names, labels, slice)) {
            Some(&g) => g,
            None => {
                batch.groups.push(Group {
                    service: sample.service.clone(),
                    version: sample.version.clone(),
                    metric: sample.metric.clone(),
                    labels,
                    slice,
                    units: Vec::new(),
                    buckets: Vec::new(),
                    requests: 0,
                    errors: 0,
                    is_distribution,
                });
                batch
                    .group_of
                    .insert((names, labels, slice), batch.groups.len() - 1);
                batch.groups.len() - 1
            }
        };
        batch.groups[group].add(delta);
        batch.last = Some(LastSample {
            sample,
            slice,
            is_distribution,
            group,
            folded,
        });
        batch.note_judged(slice);
        Ok(())
    }

    fn check_kind(&self, key: &SeriesKey, delta: Delta<'_>) -> Result<(), CoreError> {
        match self.with_series(key, |s| (s.accepts(delta), s.is_distribution())) {
            Some((false, is_distribution)) => Err(kind_mismatch(&key.metric, is_distribution)),
            _ => Ok(()),
        }
    }

    /// The labels of a sample the store keeps, and whether they folded
    /// into `other` (counted).
    fn kept_labels(&self, service: &ServiceName, labels: &Labels) -> (Labels, bool) {
        let allow = &self.config.label_allow_list;
        let kept = if labels.iter().all(|(k, _)| allow.iter().any(|a| a == k)) {
            // Usually every label is on the allow-list: no new label set.
            labels.clone()
        } else {
            let kept: Vec<(&str, &str)> = labels
                .iter()
                .filter(|(k, _)| allow.iter().any(|a| a == k))
                .collect();
            if kept.is_empty() {
                return (Labels::empty(), false);
            }
            Labels::from_pairs(kept)
        };
        if kept.is_empty() {
            return (kept, false);
        }
        // Fast path under a read lock: a label set seen before.
        if self
            .label_sets
            .get(service)
            .is_some_and(|sets| sets.contains(&kept))
        {
            return (kept, false);
        }
        let mut sets = self.label_sets.entry(service.clone()).or_default();
        if sets.contains(&kept) {
            return (kept, false);
        }
        if sets.len() < self.config.max_label_sets_per_service {
            sets.insert(kept.clone());
            return (kept, false);
        }
        self.stats.folded_into_other.fetch_add(1, Ordering::Relaxed);
        let other = Labels::from_pairs(kept.iter().map(|(k, _)| (k, OTHER)));
        sets.insert(other.clone());
        (other, true)
    }

    /// Notes a new labelled series in the per-metric index of label sets.
    fn index_label_set(&self, key: &SeriesKey) {
        self.index
            .entry((key.service.clone(), key.version.clone(), key.metric.clone()))
            .or_default()
            .insert(key.labels.clone());
    }

    /// Adds a slice contribution to a series; returns whether the series
    /// was created by it. One lookup with a borrowed key when the series
    /// exists; the key is cloned only to create it.
    fn add(
        &self,
        key: &SeriesKey,
        slice: i64,
        oldest: i64,
        delta: Delta<'_>,
        scratch: &mut Scratch,
    ) -> bool {
        self.add_if(key, slice, oldest, delta, true, scratch)
            .unwrap_or(false)
    }

    /// [`Store::add`], or `None` (nothing added) if `wait` is false and
    /// the series (or its shard) is locked by another thread.
    fn add_if(
        &self,
        key: &SeriesKey,
        slice: i64,
        oldest: i64,
        delta: Delta<'_>,
        wait: bool,
        scratch: &mut Scratch,
    ) -> Option<bool> {
        let touched = self.clock.fetch_add(1, Ordering::Relaxed);
        let found = if wait {
            self.series.get(key)
        } else {
            match self.series.try_get(key) {
                TryResult::Present(e) => Some(e),
                TryResult::Absent => None,
                TryResult::Locked => return None,
            }
        };
        let (entry, mut created) = match found {
            Some(entry) => (entry, false),
            None => {
                let mut created = false;
                let entry = self
                    .series
                    .entry(key.clone())
                    .or_insert_with(|| {
                        created = true;
                        Arc::new(Cell::new(Some(Series::new(slice, delta, touched))))
                    })
                    .downgrade();
                (entry, created)
            }
        };
        let mut guard = if wait || created {
            lock(entry.value())
        } else {
            try_lock(entry.value())?
        };
        // The shard's guard is held while the series is locked, and
        // eviction empties a series only after taking it out of the map,
        // so a series found here is never empty; were it, it starts anew.
        let series = guard.get_or_insert_with(|| {
            created = true;
            Series::new(slice, delta, touched)
        });
        // Account bytes incrementally: only this series changed, and
        // recording must stay O(1) in the number of slices.
        let before = series.bytes;
        series.add(slice, oldest, self.config.window_slices(), delta, scratch);
        series.touched = touched;
        let bytes = series.account();
        drop(guard);
        drop(entry);
        if bytes >= before {
            self.bytes.fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - bytes, Ordering::Relaxed);
        }
        Some(created)
    }

    /// Evicts the least-recently-updated series until 10% under budget.
    fn evict(&self) {
        let target = self.config.memory_budget_bytes / 10 * 9;
        let mut by_age: Vec<(u64, SeriesKey, usize)> = self
            .series
            .iter()
            .filter_map(|e| read(e.value(), |s| (s.touched, e.key().clone(), s.bytes)))
            .collect();
        by_age.sort_unstable_by_key(|(t, _, _)| *t);
        for (_, key, _) in by_age {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Some((_, cell)) = self.series.remove(&key) {
                // Readers holding the series see it emptied and look the
                // key up again; its memory goes now, not when they do.
                let bytes = lock(&cell).take().map_or(0, |s| s.bytes);
                self.bytes.fetch_sub(
                    bytes.min(self.bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                self.stats.evicted_series.fetch_add(1, Ordering::Relaxed);
                if !key.labels.is_empty() {
                    if let Some(mut set) =
                        self.index.get_mut(&(key.service, key.version, key.metric))
                    {
                        set.remove(&key.labels);
                    }
                }
            }
        }
    }

    /// The slices of `key` with index in `[from, to]` that are inside the
    /// window, oldest first (copies: no lock outlives the call).
    pub fn slices(&self, key: &SeriesKey, from: i64, to: i64) -> Vec<Slice> {
        let oldest = self.window_start().unwrap_or(i64::MIN);
        self.with_series(key, |s| s.slices(from.max(oldest), to))
            .unwrap_or_default()
    }

    /// `f` of `key`'s series, under its lock; `None` if there is none.
    fn with_series<R>(&self, key: &SeriesKey, f: impl FnOnce(&Series) -> R) -> Option<R> {
        self.series.get(key).and_then(|e| read(e.value(), f))
    }

    /// [`Store::slices`] of the reader's series: the same slices, read
    /// without a look-up by key once the reader has found the series (and
    /// until it is evicted).
    pub fn read_slices(&self, reader: &mut SeriesReader, from: i64, to: i64) -> Vec<Slice> {
        let oldest = self.window_start().unwrap_or(i64::MIN);
        let from = from.max(oldest);
        let held = reader.cell.as_ref().filter(|(id, _)| *id == self.id);
        if let Some(slices) = held.and_then(|(_, cell)| read(cell, |s| s.slices(from, to))) {
            return slices;
        }
        // First read, the series was evicted, or another store: find it by
        // key.
        reader.cell = self
            .series
            .get(&reader.key)
            .map(|e| (self.id, Arc::clone(e.value())));
        reader
            .cell
            .as_ref()
            .and_then(|(_, cell)| read(cell, |s| s.slices(from, to)))
            .unwrap_or_default()
    }

    /// All slices of `key` in `[from, to]` merged into one (the window view).
    pub fn merged(&self, key: &SeriesKey, from: i64, to: i64) -> Option<SliceData> {
        let mut slices = self.slices(key, from, to).into_iter();
        let mut acc = slices.next()?.data;
        for s in slices {
            acc.merge(&s.data);
        }
        Some(acc)
    }

    /// Label sets recorded for a metric of a version (empty labels excluded).
    pub fn label_sets(
        &self,
        service: &ServiceName,
        version: &Version,
        metric: &MetricName,
    ) -> Vec<Labels> {
        self.index
            .get(&(service.clone(), version.clone(), metric.clone()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Versions of a service with any series in the store, sorted.
    pub fn versions(&self, service: &ServiceName) -> Vec<Version> {
        let set: BTreeSet<Version> = self
            .series
            .iter()
            .filter(|e| &e.key().service == service)
            .map(|e| e.key().version.clone())
            .collect();
        set.into_iter().collect()
    }

    /// Number of live series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Approximate bytes held by series data.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counters.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            recorded: s.recorded.load(Ordering::Relaxed),
            folded_into_other: s.folded_into_other.load(Ordering::Relaxed),
            evicted_series: s.evicted_series.load(Ordering::Relaxed),
            too_old: s.too_old.load(Ordering::Relaxed),
            kind_mismatch: s.kind_mismatch.load(Ordering::Relaxed),
            invalid: s.invalid.load(Ordering::Relaxed),
            after_judged: s.after_judged.load(Ordering::Relaxed),
            series: self.series.len() as u64,
            bytes: self.bytes() as u64,
        }
    }
}

/// What one observation adds to a slice, validated: a value's bucket (its
/// value already in thousandths of its unit), a pre-aggregated histogram's
/// buckets, or counters.
#[derive(Debug, Clone)]
enum Contribution {
    Value(u64),
    Histogram(Vec<(u32, u64)>),
    Counts { requests: u64, errors: u64 },
}

/// A [`Contribution`] in the form series take it.
enum OwnedDelta<'a> {
    One([u32; 1]),
    Many(&'a [(u32, u64)]),
    Counts { requests: u64, errors: u64 },
}

impl OwnedDelta<'_> {
    fn as_delta(&self) -> Delta<'_> {
        match self {
            OwnedDelta::One(u) => Delta::Units(u),
            OwnedDelta::Many(b) => Delta::Buckets(b),
            OwnedDelta::Counts { requests, errors } => Delta::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }
}

impl Contribution {
    fn delta(&self) -> OwnedDelta<'_> {
        match self {
            Contribution::Value(v) => OwnedDelta::One([bucket_index(*v)]),
            Contribution::Histogram(b) => OwnedDelta::Many(b),
            Contribution::Counts { requests, errors } => OwnedDelta::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }
}

/// Sorts `(bucket, count)` pairs and sums the counts of equal buckets.
fn sort_buckets(buckets: &mut Vec<(u32, u64)>) {
    buckets.sort_unstable_by_key(|&(i, _)| i);
    buckets.dedup_by(|next, kept| {
        if next.0 == kept.0 {
            kept.1 += next.1;
            true
        } else {
            false
        }
    });
}

/// The slice contribution of one observation, validated.
fn contribution(observation: &Observation) -> Result<Contribution, CoreError> {
    match *observation {
        Observation::Value(v) => Ok(Contribution::Value(scaled_value(v)?)),
        Observation::Histogram(ref pairs) => {
            // All pairs are checked before any is kept: a histogram is
            // recorded whole or not at all.
            let mut buckets = Vec::with_capacity(pairs.len());
            for &(v, count) in pairs {
                let scaled = scaled_value(v)?;
                if count > 0 {
                    buckets.push((bucket_index(scaled), count));
                }
            }
            if buckets.is_empty() {
                return Err(CoreError::EmptyHistogram);
            }
            sort_buckets(&mut buckets);
            Ok(Contribution::Histogram(buckets))
        }
        Observation::Outcome { error } => Ok(Contribution::Counts {
            requests: 1,
            errors: u64::from(error),
        }),
        Observation::Counts { requests, errors } => {
            if errors > requests {
                return Err(CoreError::ErrorsExceedRequests { requests, errors });
            }
            Ok(Contribution::Counts { requests, errors })
        }
    }
}

fn kind_mismatch(metric: &MetricName, is_distribution: bool) -> CoreError {
    let (kind, observation) = if is_distribution {
        (crate::MetricKind::Latency, "counter")
    } else {
        (crate::MetricKind::ErrorRate, "value")
    };
    CoreError::KindMismatch {
        metric: metric.to_string(),
        kind,
        observation,
    }
}

/// What [`Store::record_batch`] did with a batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Samples recorded.
    pub recorded: usize,
    /// Samples refused, in order: their index in the batch and why (the
    /// error [`Store::record`] gives).
    pub rejected: Vec<(usize, CoreError)>,
}

/// Slot of the empty label set in [`Batch::kept`].
const NO_LABELS: usize = 0;

/// A sample's service, version and metric, numbered by value within a
/// batch.
type NameIds = (u32, u32, u32);

/// A batch being grouped by (series, slice).
struct Batch<'s> {
    /// Names by the addresses of their shared text (the samples of a
    /// stream share their names, so this is one cheap lookup per sample),
    /// and each name by value, on a miss.
    by_address: HashMap<(usize, usize, usize), NameIds, RandomState>,
    by_value: [HashMap<&'s str, u32, RandomState>; 3],
    /// Distinct kept label sets; `NO_LABELS` is the empty one.
    kept: Vec<Labels>,
    /// (service, sample labels) -> (slot in `kept`, folded into `other`).
    label_cache: Vec<(ServiceName, Labels, usize, bool)>,
    /// Kind of each series touched (true: distribution), `None` for a
    /// series that does not exist yet.
    kinds: HashMap<(NameIds, usize), Option<bool>, RandomState>,
    group_of: HashMap<(NameIds, usize, i64), usize, RandomState>,
    groups: Vec<Group>,
    /// The previous sample added to a group, for runs of one series.
    last: Option<LastSample<'s>>,
    /// The store's `judged_before` when the batch began, and the batch's
    /// samples into slices before it (added to the store's counter once,
    /// not read and counted per sample: that counter and the atomics
    /// beside it are written by every thread that records).
    judged_before: i64,
    after_judged: u64,
}

/// A sample added to a group, and where it went.
struct LastSample<'s> {
    sample: &'s Sample,
    slice: i64,
    is_distribution: bool,
    group: usize,
    folded: bool,
}

impl Default for Batch<'_> {
    fn default() -> Self {
        Batch {
            by_address: HashMap::default(),
            by_value: Default::default(),
            kept: vec![Labels::empty()],
            label_cache: Vec::new(),
            kinds: HashMap::default(),
            group_of: HashMap::default(),
            groups: Vec::new(),
            last: None,
            judged_before: i64::MIN,
            after_judged: 0,
        }
    }
}

/// Label sets cached per batch; past this many the rest are computed per
/// sample (still correct, only slower).
const LABEL_CACHE: usize = 64;

impl<'s> Batch<'s> {
    /// A batch for `store` (see [`Batch::judged_before`]).
    fn for_store(store: &Store) -> Self {
        Batch {
            judged_before: store.judged_before.load(Ordering::Relaxed),
            ..Batch::default()
        }
    }

    /// Counts a sample into `slice` if the judge had read it when the
    /// batch began.
    fn note_judged(&mut self, slice: i64) {
        self.note_judged_n(slice, 1);
    }

    /// [`Batch::note_judged`] for `n` samples into `slice`.
    fn note_judged_n(&mut self, slice: i64, n: u64) {
        if slice < self.judged_before {
            self.after_judged += n;
        }
    }

    fn name_ids(&mut self, sample: &'s Sample) -> NameIds {
        let names = [
            sample.service.as_str(),
            sample.version.as_str(),
            sample.metric.as_str(),
        ];
        let address = names.map(|n| n.as_ptr() as usize);
        let address = (address[0], address[1], address[2]);
        if let Some(&ids) = self.by_address.get(&address) {
            return ids;
        }
        let mut ids = [0u32; 3];
        for ((id, name), by_value) in ids.iter_mut().zip(names).zip(&mut self.by_value) {
            let next = by_value.len() as u32;
            *id = *by_value.entry(name).or_insert(next);
        }
        let ids = (ids[0], ids[1], ids[2]);
        self.by_address.insert(address, ids);
        ids
    }

    /// Slot of the kept labels of a sample, as [`Store::kept_labels`]
    /// (which counts folding into `other`) gives them, and whether they
    /// folded (counted).
    fn kept_labels(
        &mut self,
        store: &Store,
        service: &ServiceName,
        labels: &Labels,
    ) -> (usize, bool) {
        if labels.is_empty() {
            return (NO_LABELS, false);
        }
        if let Some(&(_, _, slot, folded)) = self
            .label_cache
            .iter()
            .find(|(s, l, _, _)| l == labels && s == service)
        {
            if folded {
                store
                    .stats
                    .folded_into_other
                    .fetch_add(1, Ordering::Relaxed);
            }
            return (slot, folded);
        }
        let (kept, folded) = store.kept_labels(service, labels);
        let slot = match self.kept.iter().position(|k| *k == kept) {
            Some(slot) => slot,
            None => {
                self.kept.push(kept);
                self.kept.len() - 1
            }
        };
        if self.label_cache.len() < LABEL_CACHE {
            self.label_cache
                .push((service.clone(), labels.clone(), slot, folded));
        }
        (slot, folded)
    }
}

/// The samples of a batch for one series (and its aggregate) and slice.
struct Group {
    service: ServiceName,
    version: Version,
    metric: MetricName,
    /// Slot in [`Batch::kept`].
    labels: usize,
    slice: i64,
    is_distribution: bool,
    /// Bucket indices of single values, as they came.
    units: Vec<u32>,
    /// Histograms' buckets, unsorted until [`Group::prepare`].
    buckets: Vec<(u32, u64)>,
    requests: u64,
    errors: u64,
}

impl Group {
    fn add(&mut self, delta: Delta<'_>) {
        match delta {
            Delta::Units(u) => self.units.extend_from_slice(u),
            Delta::Buckets(b) => self.buckets.extend_from_slice(b),
            Delta::Counts { requests, errors } => {
                self.requests += requests;
                self.errors += errors;
            }
        }
    }

    /// Readies [`Group::deltas`]: sorts the histograms' buckets.
    fn prepare(&mut self) {
        if self.is_distribution {
            sort_buckets(&mut self.buckets);
        }
    }

    /// Whether both groups go to series of one metric of one version of
    /// one service (labelled or their aggregate).
    fn same_metric(&self, other: &Group) -> bool {
        self.service == other.service
            && self.version == other.version
            && self.metric == other.metric
    }

    /// What the group adds to its slice: a distribution's single values
    /// and histograms' buckets (either may be empty, not both), or
    /// counters.
    fn deltas(&self) -> [Option<Delta<'_>>; 2] {
        if self.is_distribution {
            [
                (!self.units.is_empty()).then_some(Delta::Units(&self.units)),
                (!self.buckets.is_empty()).then_some(Delta::Buckets(&self.buckets)),
            ]
        } else {
            [
                Some(Delta::Counts {
                    requests: self.requests,
                    errors: self.errors,
                }),
                None,
            ]
        }
    }
}

/// Whether [`scaled_value`] takes `v` (inlined, only its checks remain).
#[inline]
fn value_in_range(v: f64) -> bool {
    scaled_value(v).is_ok()
}

/// [`scaled_value`] of a `v` it takes ([`value_in_range`]).
#[inline]
fn scaled_in_range(v: f64) -> u64 {
    round_u64(v * DISTRIBUTION_SCALE)
}

/// A distribution value in thousandths of its unit, validated.
#[inline]
fn scaled_value(v: f64) -> Result<u64, CoreError> {
    if !v.is_finite() {
        return Err(CoreError::NotFinite {
            what: "value",
            value: v,
        });
    }
    if v < 0.0 {
        return Err(CoreError::Negative {
            what: "value",
            value: v,
        });
    }
    let scaled = v * DISTRIBUTION_SCALE;
    // HDR's layout covers values up to 2^62 or so. (Floats this close to
    // 4e18 are integers: the bound holds before rounding as after.)
    if scaled >= 4e18 {
        return Err(CoreError::TooLarge {
            what: "value",
            value: v,
        });
    }
    Ok(scaled_in_range(v))
}

/// `x.floor() as i64` (saturating the same way), without a call into
/// libm: the target's baseline x86-64 has no rounding instruction, and
/// the out-of-line `floor` and `round` were a twentieth of recording a
/// sample (`cargo bench --bench ingest_path`).
fn floor_i64(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x {
        t.saturating_sub(1)
    } else {
        t
    }
}

/// `x.round() as u64` for `0 <= x < 2^63`: half away from zero. The
/// fraction `x - trunc(x)` is exact (below 2^52 both are exact and
/// their difference too; from 2^52 on every float is an integer).
fn round_u64(x: f64) -> u64 {
    // Through i64, which x86-64 converts in one instruction each way (u64
    // takes a branch and a few more: a tenth of the store's time per
    // sample, `cargo bench --bench ingest_path`). Below 2^63 both agree.
    let t = x as i64;
    let r = if x - t as f64 >= 0.5 {
        t.saturating_add(1)
    } else {
        t
    };
    r.unsigned_abs()
}

/// Snapshot format: magic, version, body length, postcard body, CRC-32 of
/// the body. A restore checks all four before trusting anything.
const SNAPSHOT_MAGIC: &[u8; 8] = b"VIGILSNP";
const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    config: StoreConfig,
    high_water: i64,
    series: Vec<(SeriesKey, SnapshotSeries)>,
    label_sets: Vec<(ServiceName, Vec<Labels>)>,
}

/// A series in a snapshot: its slices that hold data, oldest first, and
/// when it was last updated. The same encoding as version 1 wrote (the
/// in-memory layout changed, the snapshot did not).
#[derive(Serialize, Deserialize)]
struct SnapshotSeries {
    slices: Vec<Slice>,
    touched: u64,
}

impl Store {
    /// Serialises the whole store (series, label sets, stream time).
    pub fn snapshot(&self) -> Result<Vec<u8>, CoreError> {
        let mut series: Vec<(SeriesKey, SnapshotSeries)> = self
            .series
            .iter()
            .filter_map(|e| {
                let snap = read(e.value(), |s| SnapshotSeries {
                    slices: s.slices(i64::MIN, i64::MAX),
                    touched: s.touched,
                })?;
                Some((e.key().clone(), snap))
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut label_sets: Vec<(ServiceName, Vec<Labels>)> = self
            .label_sets
            .iter()
            .map(|e| {
                let mut v: Vec<Labels> = e.value().iter().cloned().collect();
                v.sort();
                (e.key().clone(), v)
            })
            .collect();
        label_sets.sort_by(|a, b| a.0.cmp(&b.0));
        let body = SnapshotBody {
            config: self.config.clone(),
            high_water: self.high_water.load(Ordering::Acquire),
            series,
            label_sets,
        };
        let bytes = postcard::to_stdvec(&body).map_err(|e| CoreError::Snapshot(e.to_string()))?;
        let mut out = Vec::with_capacity(bytes.len() + 24);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
        out.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        Ok(out)
    }

    /// Rebuilds a store from [`Store::snapshot`] output.
    pub fn restore(bytes: &[u8]) -> Result<Store, CoreError> {
        let bad = |m: &str| CoreError::Snapshot(m.to_owned());
        if bytes.len() < 24 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(bad("not a vigil snapshot"));
        }
        let word = |at: usize, n: usize| -> &[u8] { &bytes[at..at + n] };
        let version =
            u32::from_le_bytes(word(8, 4).try_into().map_err(|_| bad("truncated header"))?);
        if version != SNAPSHOT_VERSION {
            return Err(CoreError::Snapshot(format!(
                "unsupported version {version} (this build reads {SNAPSHOT_VERSION})"
            )));
        }
        let len = u64::from_le_bytes(
            word(12, 8)
                .try_into()
                .map_err(|_| bad("truncated header"))?,
        );
        let len = usize::try_from(len).map_err(|_| bad("body length does not fit memory"))?;
        if bytes.len() != 20 + len + 4 {
            return Err(bad(
                "length does not match the header (truncated or trailing bytes)",
            ));
        }
        let body = &bytes[20..20 + len];
        let crc = u32::from_le_bytes(
            word(20 + len, 4)
                .try_into()
                .map_err(|_| bad("truncated checksum"))?,
        );
        if crc32fast::hash(body) != crc {
            return Err(bad("checksum mismatch"));
        }
        let body: SnapshotBody =
            postcard::from_bytes(body).map_err(|e| CoreError::Snapshot(e.to_string()))?;
        let store = Store::new(body.config);
        store.high_water.store(body.high_water, Ordering::Release);
        let mut total = 0;
        for (key, snap) in body.series {
            if snap.slices.windows(2).any(|w| w[0].index >= w[1].index) {
                return Err(bad("a series' slices are out of order"));
            }
            let Some(series) = Series::from_slices(&snap.slices, snap.touched) else {
                if snap.slices.is_empty() {
                    continue;
                }
                return Err(bad("a series mixes distribution and counter slices"));
            };
            total += series.bytes;
            if !key.labels.is_empty() {
                store
                    .index
                    .entry((key.service.clone(), key.version.clone(), key.metric.clone()))
                    .or_default()
                    .insert(key.labels.clone());
            }
            store.series.insert(key, Arc::new(Cell::new(Some(series))));
        }
        store.bytes.store(total, Ordering::Relaxed);
        for (service, sets) in body.label_sets {
            store.label_sets.insert(service, sets.into_iter().collect());
        }
        Ok(store)
    }

    /// Whether two stores hold the same data (series, slices, stream time).
    pub fn same_data(&self, other: &Store) -> bool {
        if self.high_water.load(Ordering::Acquire) != other.high_water.load(Ordering::Acquire)
            || self.series.len() != other.series.len()
        {
            return false;
        }
        let all = |cell: &Cell| read(cell, |s| s.slices(i64::MIN, i64::MAX));
        self.series.iter().all(|e| {
            other
                .series
                .get(e.key())
                .is_some_and(|o| all(o.value()) == all(e.value()))
        })
    }
}

#[cfg(test)]
mod tests;
