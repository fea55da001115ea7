//! The store: rolling, time-sliced windows per series.
//!
//! Every series (service, version, metric, kept labels) holds a ring of time
//! slices (`slice_secs` long, 10 s by default) covering `window_secs` of
//! stream time. The judge compares arms slice by slice (within the same
//! slice both arms saw the same load), and old slices expire as stream time
//! advances. Distribution slices are [`SparseHistogram`]s: only non-empty
//! buckets, a few hundred bytes for a typical 10-second slice.
//!
//! Concurrency: series live in a `DashMap` (sharded locks), so ingest
//! writers and judge readers contend only on the shard of the series they
//! touch; recording a sample is a hash lookup plus a bucket increment in
//! the newest slice. No lock is held across calls.
//!
//! Bounds: labels outside the allow-list are dropped; past
//! `max_label_sets_per_service` distinct label sets a service's new label
//! values fold into `other`; past `memory_budget_bytes` the
//! least-recently-updated series are evicted. Each is counted in
//! [`StoreStats`].
//!
//! Every labelled sample is also recorded into the series' aggregate (no
//! labels), so the metric as a whole is read without merging its labels.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};
use vigil_stats::{BucketCounts, SparseHistogram};

use crate::event::{Observation, Sample, Timestamp};
use crate::metric::DISTRIBUTION_SCALE;
use crate::names::{Labels, MetricName, SeriesKey, ServiceName, Version};
use crate::CoreError;

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
    fn heap_bytes(&self) -> usize {
        match self {
            SliceData::Distribution(h) => h.heap_bytes(),
            SliceData::Counts { .. } => 0,
        }
    }

    fn shrink_to_fit(&mut self) {
        if let SliceData::Distribution(h) = self {
            h.shrink_to_fit();
        }
    }

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Series {
    slices: VecDeque<Slice>,
    /// Logical time of the last update, for least-recently-updated eviction.
    touched: u64,
    /// Derived from the slices (recomputed on restore), so not serialised:
    /// snapshots of the same data are byte-identical.
    #[serde(skip)]
    bytes: usize,
}

/// Fixed overhead per series, in bytes, on top of its slices' heap (key,
/// map entry, ring): measured, see the store benchmark.
const SERIES_OVERHEAD: usize = 160;
const SLICE_OVERHEAD: usize = std::mem::size_of::<Slice>();

impl Series {
    fn recompute_bytes(&mut self) -> usize {
        self.bytes = SERIES_OVERHEAD
            + self.slices.capacity() * SLICE_OVERHEAD
            + self
                .slices
                .iter()
                .map(|s| s.data.heap_bytes())
                .sum::<usize>();
        self.bytes
    }
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

/// The store of rolling per-series windows.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    series: Map<SeriesKey, Series>,
    /// Label sets present per (service, version, metric), for dimensions.
    index: Map<MetricIndexKey, BTreeSet<Labels>>,
    /// Distinct label sets per service, for the cardinality limit.
    label_sets: Map<ServiceName, HashSet<Labels>>,
    /// Newest slice index seen (stream time high-water mark).
    high_water: AtomicI64,
    clock: AtomicU64,
    bytes: AtomicUsize,
    stats: StoreStats,
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let mut config = config;
        config.slice_secs = config.slice_secs.max(1);
        Self {
            config,
            series: Map::default(),
            index: Map::default(),
            label_sets: Map::default(),
            high_water: AtomicI64::new(i64::MIN),
            clock: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            stats: StoreStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Index of the slice holding stream time `ts`.
    pub fn slice_of(&self, ts: Timestamp) -> i64 {
        (ts / f64::from(self.config.slice_secs)).floor() as i64
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
            self.high_water
                .fetch_max(self.slice_of(now), Ordering::AcqRel);
        }
    }

    /// Records one sample into its series (and the series' aggregate).
    pub fn record(&self, sample: &Sample) -> Result<(), CoreError> {
        let result = self.record_inner(sample);
        match &result {
            Ok(()) => {
                self.stats.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(CoreError::TooOld { .. }) => {
                self.stats.too_old.fetch_add(1, Ordering::Relaxed);
            }
            Err(CoreError::KindMismatch { .. }) => {
                self.stats.kind_mismatch.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn record_inner(&self, sample: &Sample) -> Result<(), CoreError> {
        if !sample.ts.is_finite() {
            return Err(CoreError::NotFinite {
                what: "timestamp",
                value: sample.ts,
            });
        }
        let data = contribution(&sample.observation)?;
        let slice = self.slice_of(sample.ts);
        let high = self
            .high_water
            .fetch_max(slice, Ordering::AcqRel)
            .max(slice);
        let oldest = high - self.config.window_slices() + 1;
        if slice < oldest {
            return Err(CoreError::TooOld {
                ts: sample.ts,
                window_start: self.slice_start(oldest),
            });
        }
        let labels = self.kept_labels(&sample.service, &sample.labels);
        let aggregate = SeriesKey {
            service: sample.service.clone(),
            version: sample.version.clone(),
            metric: sample.metric.clone(),
            labels: Labels::empty(),
        };
        // Check the kind before writing anything, so a mismatch leaves no
        // half-recorded sample behind.
        self.check_kind(&aggregate, &data)?;
        if !labels.is_empty() {
            let labelled = SeriesKey {
                labels: labels.clone(),
                ..aggregate.clone()
            };
            self.check_kind(&labelled, &data)?;
            // The index only changes when a labelled series is created.
            if self.add(labelled, slice, oldest, &data) {
                self.index
                    .entry((
                        sample.service.clone(),
                        sample.version.clone(),
                        sample.metric.clone(),
                    ))
                    .or_default()
                    .insert(labels);
            }
        }
        self.add(aggregate, slice, oldest, &data);
        if self.bytes.load(Ordering::Relaxed) > self.config.memory_budget_bytes {
            self.evict();
        }
        Ok(())
    }

    fn check_kind(&self, key: &SeriesKey, data: &Contribution) -> Result<(), CoreError> {
        let Some(series) = self.series.get(key) else {
            return Ok(());
        };
        let Some(existing) = series.slices.back() else {
            return Ok(());
        };
        let same = matches!(
            (&existing.data, data),
            (
                SliceData::Distribution(_),
                Contribution::Value(_) | Contribution::Histogram(_)
            ) | (SliceData::Counts { .. }, Contribution::Counts { .. })
        );
        if same {
            Ok(())
        } else {
            let (kind, observation) = match existing.data {
                SliceData::Distribution(_) => (crate::MetricKind::Latency, "counter"),
                SliceData::Counts { .. } => (crate::MetricKind::ErrorRate, "value"),
            };
            Err(CoreError::KindMismatch {
                metric: key.metric.to_string(),
                kind,
                observation,
            })
        }
    }

    fn kept_labels(&self, service: &ServiceName, labels: &Labels) -> Labels {
        let allow = &self.config.label_allow_list;
        let kept: Vec<(&str, &str)> = labels
            .iter()
            .filter(|(k, _)| allow.iter().any(|a| a == k))
            .collect();
        if kept.is_empty() {
            return Labels::empty();
        }
        let kept = Labels::from_pairs(kept);
        // Fast path under a read lock: a label set seen before.
        if self
            .label_sets
            .get(service)
            .is_some_and(|sets| sets.contains(&kept))
        {
            return kept;
        }
        let mut sets = self.label_sets.entry(service.clone()).or_default();
        if sets.contains(&kept) {
            return kept;
        }
        if sets.len() < self.config.max_label_sets_per_service {
            sets.insert(kept.clone());
            return kept;
        }
        self.stats.folded_into_other.fetch_add(1, Ordering::Relaxed);
        let other = Labels::from_pairs(kept.iter().map(|(k, _)| (k, OTHER)));
        sets.insert(other.clone());
        other
    }

    /// Adds a slice contribution to a series; returns whether the series
    /// was created by it.
    fn add(&self, key: SeriesKey, slice: i64, oldest: i64, data: &Contribution) -> bool {
        let touched = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut created = false;
        let mut series = self.series.entry(key).or_insert_with(|| {
            created = true;
            Series {
                slices: VecDeque::new(),
                touched,
                bytes: 0,
            }
        });
        // Account bytes incrementally: only the touched and expired slices
        // change, and recording must stay O(1) in the number of slices.
        let before = series.bytes;
        let mut bytes = if created { SERIES_OVERHEAD } else { before };
        while series.slices.front().is_some_and(|s| s.index < oldest) {
            if let Some(old) = series.slices.pop_front() {
                bytes = bytes.saturating_sub(SLICE_OVERHEAD + old.data.heap_bytes());
            }
        }
        match series.slices.binary_search_by_key(&slice, |s| s.index) {
            Ok(pos) => {
                let data_before = series.slices[pos].data.heap_bytes();
                data.apply(&mut series.slices[pos].data);
                bytes = bytes.saturating_sub(data_before) + series.slices[pos].data.heap_bytes();
            }
            Err(pos) => {
                // A new newest slice means the previous one is complete:
                // give back its vector's spare capacity (a third of it on
                // average), which is most of a long window's memory.
                if pos == series.slices.len() {
                    if let Some(prev) = series.slices.back_mut() {
                        let before_shrink = prev.data.heap_bytes();
                        prev.data.shrink_to_fit();
                        bytes = bytes.saturating_sub(before_shrink) + prev.data.heap_bytes();
                    }
                }
                let new = data.to_slice_data();
                bytes += SLICE_OVERHEAD + new.heap_bytes();
                series.slices.insert(
                    pos,
                    Slice {
                        index: slice,
                        data: new,
                    },
                );
            }
        }
        series.touched = touched;
        series.bytes = bytes;
        drop(series);
        if bytes >= before {
            self.bytes.fetch_add(bytes - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - bytes, Ordering::Relaxed);
        }
        created
    }

    /// Evicts the least-recently-updated series until 10% under budget.
    fn evict(&self) {
        let target = self.config.memory_budget_bytes / 10 * 9;
        let mut by_age: Vec<(u64, SeriesKey, usize)> = self
            .series
            .iter()
            .map(|e| (e.touched, e.key().clone(), e.bytes))
            .collect();
        by_age.sort_unstable_by_key(|(t, _, _)| *t);
        for (_, key, _) in by_age {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Some((_, series)) = self.series.remove(&key) {
                self.bytes.fetch_sub(
                    series.bytes.min(self.bytes.load(Ordering::Relaxed)),
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
        self.series
            .get(key)
            .map(|s| {
                s.slices
                    .iter()
                    .filter(|sl| sl.index >= from.max(oldest) && sl.index <= to)
                    .cloned()
                    .collect()
            })
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
            series: self.series.len() as u64,
            bytes: self.bytes() as u64,
        }
    }
}

/// What one observation adds to a slice, validated: a value (already in
/// thousandths of its unit), a pre-aggregated histogram, or counters.
/// Applied in place, so recording a sample into an existing slice allocates
/// nothing.
#[derive(Debug, Clone)]
enum Contribution {
    Value(u64),
    Histogram(SparseHistogram),
    Counts { requests: u64, errors: u64 },
}

impl Contribution {
    /// Adds to a slice of the same kind (kinds are checked before).
    fn apply(&self, data: &mut SliceData) {
        match (self, data) {
            (Contribution::Value(v), SliceData::Distribution(h)) => h.record(*v),
            (Contribution::Histogram(other), SliceData::Distribution(h)) => h.merge(other),
            (
                Contribution::Counts { requests, errors },
                SliceData::Counts {
                    requests: r,
                    errors: e,
                },
            ) => {
                *r += requests;
                *e += errors;
            }
            _ => {}
        }
    }

    /// A new slice holding just this.
    fn to_slice_data(&self) -> SliceData {
        match self {
            Contribution::Value(v) => {
                let mut h = SparseHistogram::new();
                h.record(*v);
                SliceData::Distribution(h)
            }
            Contribution::Histogram(h) => SliceData::Distribution(h.clone()),
            Contribution::Counts { requests, errors } => SliceData::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }
}

/// The slice contribution of one observation, validated.
fn contribution(observation: &Observation) -> Result<Contribution, CoreError> {
    match *observation {
        Observation::Value(v) => Ok(Contribution::Value(scaled_value(v)?)),
        Observation::Histogram(ref pairs) => {
            // All pairs are checked before any is kept: a histogram is
            // recorded whole or not at all.
            let mut h = SparseHistogram::new();
            for &(v, count) in pairs {
                let scaled = scaled_value(v)?;
                h.record_n(scaled, count);
            }
            if h.len() == 0 {
                return Err(CoreError::EmptyHistogram);
            }
            Ok(Contribution::Histogram(h))
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

/// A distribution value in thousandths of its unit, validated.
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
    let scaled = (v * DISTRIBUTION_SCALE).round();
    // HDR's layout covers values up to 2^62 or so.
    if scaled >= 4e18 {
        return Err(CoreError::TooLarge {
            what: "value",
            value: v,
        });
    }
    Ok(scaled as u64)
}

/// Snapshot format: magic, version, body length, postcard body, CRC-32 of
/// the body. A restore checks all four before trusting anything.
const SNAPSHOT_MAGIC: &[u8; 8] = b"VIGILSNP";
const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    config: StoreConfig,
    high_water: i64,
    series: Vec<(SeriesKey, Series)>,
    label_sets: Vec<(ServiceName, Vec<Labels>)>,
}

impl Store {
    /// Serialises the whole store (series, label sets, stream time).
    pub fn snapshot(&self) -> Result<Vec<u8>, CoreError> {
        let mut series: Vec<(SeriesKey, Series)> = self
            .series
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
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
        for (key, mut series) in body.series {
            total += series.recompute_bytes();
            if !key.labels.is_empty() {
                store
                    .index
                    .entry((key.service.clone(), key.version.clone(), key.metric.clone()))
                    .or_default()
                    .insert(key.labels.clone());
            }
            store.series.insert(key, series);
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
        self.series.iter().all(|e| {
            other
                .series
                .get(e.key())
                .is_some_and(|o| o.slices == e.slices)
        })
    }
}

#[cfg(test)]
mod tests;
