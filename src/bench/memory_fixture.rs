//! The store-memory fixture shared by `benches/store_memory.rs` and `vigil
//! bench memory`: fills a store with every series of a 30-minute window
//! and measures its bytes (the store's accounting and the process's
//! resident growth) per live series. Layouts and data: see
//! `benches/store_memory.rs`.

// Each includer uses part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};

pub const DEFAULT_SERIES: usize = 100_000;
const SERIES_PER_SERVICE_VERSION: usize = 25;
const ENDPOINTS: [&str; 4] = ["/charge", "/refund", "/status", "/list"];
const SLICE_SECS: f64 = 10.0;
const START_TS: f64 = 1_763_900_000.0;
const MIN_SAMPLES: usize = 5;
const MAX_SAMPLES: usize = 20;
const SEED: u64 = 20_251_124;

/// A bench name, valid by construction.
fn name<T>(r: Result<T, vigil_core::CoreError>) -> T {
    r.unwrap_or_else(|e| unreachable!("valid names: {e}"))
}

pub fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Resident and peak resident memory of this process, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1 << 20)
}

/// One series the generator feeds: its sample template and value law.
struct Feed {
    sample: Sample,
    values: LogNormal<f64>,
    /// Seeded per series, so the data do not depend on the thread count.
    rng: ChaCha8Rng,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Params {
    /// `flat` (25 unlabelled metrics) or `labelled` (5 metrics x 4 endpoints).
    pub flat: bool,
    /// Live series to build (rounded down to a multiple of 50).
    pub series: usize,
    /// Slices to fill (`None`: the whole window).
    pub slices: Option<usize>,
    /// Threads recording.
    pub threads: usize,
    /// The store's memory budget.
    pub budget_bytes: usize,
    /// Record with `Store::record_batch`, [`BATCH_SAMPLES`] at a time,
    /// instead of `Store::record` per sample (same data, same contents).
    pub batched: bool,
}

/// Samples per `record_batch` call when [`Params::batched`].
pub const BATCH_SAMPLES: usize = 4096;

/// Records and empties `batch` (nothing if it is empty).
fn record_batch(store: &Store, batch: &mut Vec<Sample>) {
    if batch.is_empty() {
        return;
    }
    let outcome = store.record_batch(black_box(batch));
    if let Some((_, e)) = outcome.rejected.first() {
        unreachable!("bench samples are valid: {e}");
    }
    batch.clear();
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub layout: &'static str,
    pub services: usize,
    pub series_per_service_version: usize,
    pub slices: usize,
    pub slice_secs: u32,
    pub samples: u64,
    pub live_series: u64,
    pub evicted_series: u64,
    pub budget_bytes: usize,
    pub accounted_bytes: u64,
    pub accounted_bytes_per_series: f64,
    pub resident_growth_bytes: u64,
    pub resident_bytes_per_series: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub rss_peak_bytes: u64,
    /// The baseline: the same samples kept raw, 8 bytes (an f64) each.
    pub raw_samples_bytes_per_series: f64,
    pub fill_secs: f64,
    pub threads: usize,
}

/// Builds the store and measures it.
pub fn measure(p: &Params) -> Report {
    let flat = p.flat;
    let per_sv = SERIES_PER_SERVICE_VERSION;
    let n_services = (p.series / (2 * per_sv)).max(1);
    let config = StoreConfig {
        memory_budget_bytes: p.budget_bytes,
        ..StoreConfig::default()
    };
    let window_slices = config.window_secs.div_ceil(config.slice_secs) as usize;
    let n_slices = p.slices.unwrap_or(window_slices);

    let lognormal = |median: f64, sigma: f64| {
        LogNormal::new(f64::ln(median), sigma).unwrap_or_else(|_| unreachable!("valid parameters"))
    };
    // (metric, value law): four latencies in ms and a gauge in seconds.
    let metrics: Vec<(MetricName, LogNormal<f64>)> = if flat {
        (0..per_sv)
            .map(|i| {
                let median = [80.0, 12.0, 2.0, 40.0, 0.4][i % 5];
                (
                    name(MetricName::new(format!("metric_{i:02}"))),
                    lognormal(median, 0.5),
                )
            })
            .collect()
    } else {
        vec![
            (name(MetricName::new("latency")), lognormal(80.0, 0.5)),
            (name(MetricName::new("db_latency")), lognormal(12.0, 0.7)),
            (name(MetricName::new("cache_latency")), lognormal(2.0, 0.6)),
            (
                name(MetricName::new("upstream_latency")),
                lognormal(40.0, 0.5),
            ),
            (name(MetricName::new("cpu_seconds")), lognormal(0.4, 0.2)),
        ]
    };
    let label_sets: Vec<Labels> = if flat {
        vec![Labels::empty()]
    } else {
        ENDPOINTS
            .iter()
            .map(|e| Labels::from_pairs([("endpoint", *e)]))
            .collect()
    };
    let versions = [name(Version::new("v1")), name(Version::new("v2"))];

    // Sample templates for every fed series, built before the first reading
    // of resident memory so that only the store's growth is measured.
    let mut feeds = Vec::with_capacity(n_services * 2 * metrics.len() * label_sets.len());
    for s in 0..n_services {
        let service = name(ServiceName::new(format!("svc-{s:05}")));
        for version in &versions {
            for (metric, values) in &metrics {
                for labels in &label_sets {
                    feeds.push(Feed {
                        sample: Sample {
                            ts: START_TS,
                            service: service.clone(),
                            version: version.clone(),
                            metric: metric.clone(),
                            labels: labels.clone(),
                            observation: Observation::Value(0.0),
                        },
                        values: *values,
                        rng: ChaCha8Rng::seed_from_u64(SEED + feeds.len() as u64),
                    });
                }
            }
        }
    }
    let n_threads = p.threads.max(1);

    let store = Store::new(config.clone());
    let (rss_before, _) = rss();
    let started = Instant::now();
    let first_slice = (START_TS / SLICE_SECS) as i64;
    // Each thread feeds its share of the series, slice by slice; a barrier
    // keeps the threads on the same slice, as a stream in time order would.
    let chunk = feeds.len().div_ceil(n_threads).max(1);
    let barrier = Barrier::new(feeds.len().div_ceil(chunk));
    let n_samples: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = feeds
            .chunks_mut(chunk)
            .map(|feeds| {
                let (store, barrier) = (&store, &barrier);
                scope.spawn(move || {
                    let mut n_samples = 0u64;
                    let mut batch = Vec::new();
                    for slice in 0..n_slices {
                        let start = (first_slice + slice as i64) as f64 * SLICE_SECS;
                        for feed in feeds.iter_mut() {
                            let n = feed.rng.random_range(MIN_SAMPLES..=MAX_SAMPLES);
                            for _ in 0..n {
                                feed.sample.ts = start + feed.rng.random::<f64>() * SLICE_SECS;
                                feed.sample.observation =
                                    Observation::Value(feed.values.sample(&mut feed.rng));
                                if p.batched {
                                    batch.push(feed.sample.clone());
                                } else if let Err(e) = store.record(black_box(&feed.sample)) {
                                    unreachable!("bench samples are valid: {e}");
                                }
                            }
                            n_samples += n as u64;
                            if batch.len() >= BATCH_SAMPLES {
                                record_batch(store, &mut batch);
                            }
                        }
                        record_batch(store, &mut batch);
                        barrier.wait();
                    }
                    n_samples
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum()
    });
    let elapsed = started.elapsed();
    let (rss_after, hwm) = rss();

    let stats = store.stats();
    let series = stats.series.max(1) as f64;
    let grown = rss_after.saturating_sub(rss_before);
    black_box(&store);
    Report {
        layout: if flat { "flat" } else { "labelled" },
        services: n_services,
        series_per_service_version: per_sv,
        slices: n_slices,
        slice_secs: config.slice_secs,
        samples: n_samples,
        live_series: stats.series,
        evicted_series: stats.evicted_series,
        budget_bytes: config.memory_budget_bytes,
        accounted_bytes: stats.bytes,
        accounted_bytes_per_series: stats.bytes as f64 / series,
        resident_growth_bytes: grown,
        resident_bytes_per_series: grown as f64 / series,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        rss_peak_bytes: hwm,
        raw_samples_bytes_per_series: n_samples as f64 * 8.0 / series,
        fill_secs: elapsed.as_secs_f64(),
        threads: n_threads,
    }
}

/// The report as `benches/store_memory.rs` has always printed it.
pub fn print(r: &Report) {
    println!(
        "store_memory: layout {}",
        if r.layout == "flat" {
            "flat (25 metrics, no labels)"
        } else {
            "labelled (5 metrics x 4 endpoints + aggregates)"
        }
    );
    println!(
        "  data:     {} services x 2 versions x {} series, {} slices of {}s, \
         {MIN_SAMPLES}-{MAX_SAMPLES} samples per fed series and slice, {} samples",
        r.services, r.series_per_service_version, r.slices, r.slice_secs, r.samples
    );
    println!(
        "  store:    {} live series, {} evicted, budget {} bytes",
        r.live_series, r.evicted_series, r.budget_bytes
    );
    println!(
        "  accounted (store.bytes()): {:.1} MiB, {:.0} bytes/series",
        mib(r.accounted_bytes as f64),
        r.accounted_bytes_per_series
    );
    println!(
        "  resident growth (VmRSS):   {:.1} MiB, {:.0} bytes/series (before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB)",
        mib(r.resident_growth_bytes as f64),
        r.resident_bytes_per_series,
        mib(r.rss_before_bytes as f64),
        mib(r.rss_after_bytes as f64),
        mib(r.rss_peak_bytes as f64)
    );
    println!(
        "  baseline: the same samples raw (8-byte f64): {:.0} bytes/series ({:.1}x the resident figure)",
        r.raw_samples_bytes_per_series,
        r.raw_samples_bytes_per_series / r.resident_bytes_per_series.max(1.0)
    );
    println!(
        "  at 100,000 series: {:.2} GiB accounted, {:.2} GiB resident (goal: under 4 GiB)",
        r.accounted_bytes_per_series * 1e5 / f64::from(1 << 30),
        r.resident_bytes_per_series * 1e5 / f64::from(1 << 30)
    );
    println!(
        "  fill time: {:.1} s on {} threads ({:.0} ns/sample per thread)",
        r.fill_secs,
        r.threads,
        r.fill_secs * 1e9 * r.threads as f64 / r.samples.max(1) as f64
    );
}
