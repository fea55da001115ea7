//! Memory of the store holding 100,000 live series over a full 30-minute
//! window: the store's own accounting and the process's resident memory,
//! per series. A plain program (no criterion): it measures bytes, not time.
//!
//! The goal (issue: "100,000 live series with a 30-minute window in under
//! 4 GiB") and the figures are in `docs/BENCHMARKS.md`.
//!
//! Data, seeded, for all 180 slices of the default 30-minute window (10 s
//! slices), in one of two layouts (`VIGIL_BENCH_LAYOUT`):
//! - `flat` (default): services x 2 versions x 25 distribution metrics, no
//!   labels; every series receives 5 to 20 samples per slice (uniform),
//!   lognormal milliseconds (medians 80, 12, 2, 40 ms) or a gauge (0.4).
//!   2,000 services make 100,000 series.
//! - `labelled`: services x 2 versions x 5 distribution metrics (`latency`,
//!   `db_latency`, `cache_latency`, `upstream_latency`, `cpu_seconds`), each
//!   on 4 endpoints. The store keeps an aggregate beside each labelled
//!   series, so a (service, version) again holds 5 x (4 + 1) = 25 series;
//!   every labelled series receives 5 to 20 samples per slice and each
//!   aggregate the sum of its 4 endpoints (20 to 80).
//!
//! Environment:
//! - `VIGIL_BENCH_SERIES`: live series to build (default 100,000; rounded
//!   down to a multiple of 50), for a quick run;
//! - `VIGIL_BENCH_SLICES`: slices to fill (default: the whole window);
//! - `VIGIL_BENCH_THREADS`: threads recording (default 1; the data are the
//!   same for any count; a second thread does not fill faster today, see
//!   `docs/BENCHMARKS.md`);
//! - `VIGIL_BENCH_BATCH=1`: record samples with `Store::record_batch`, 4096
//!   at a time (a few hundred series' samples of one slice), instead of
//!   `Store::record` per sample (same data, same store contents);
//! - `VIGIL_BENCH_BUDGET_BYTES`: the store's memory budget (default:
//!   unbounded, so that every series stays live and is measured; 2147483648
//!   is the default budget).
//!
//! Run: `cargo bench --bench store_memory`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};

const DEFAULT_SERIES: usize = 100_000;
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

fn env_usize(name: &str) -> Option<usize> {
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

fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1 << 20)
}

/// Samples per `record_batch` call with `VIGIL_BENCH_BATCH=1`.
const BATCH_SAMPLES: usize = 4096;

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

/// One series the generator feeds: its sample template and value law.
struct Feed {
    sample: Sample,
    values: LogNormal<f64>,
    /// Seeded per series, so the data do not depend on the thread count.
    rng: ChaCha8Rng,
}

fn main() {
    let flat = std::env::var("VIGIL_BENCH_LAYOUT").map_or(true, |v| v != "labelled");
    let per_sv = SERIES_PER_SERVICE_VERSION;
    let n_services =
        (env_usize("VIGIL_BENCH_SERIES").unwrap_or(DEFAULT_SERIES) / (2 * per_sv)).max(1);
    let config = StoreConfig {
        memory_budget_bytes: env_usize("VIGIL_BENCH_BUDGET_BYTES").unwrap_or(usize::MAX),
        ..StoreConfig::default()
    };
    let window_slices = config.window_secs.div_ceil(config.slice_secs) as usize;
    let n_slices = env_usize("VIGIL_BENCH_SLICES").unwrap_or(window_slices);

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
    let n_threads = env_usize("VIGIL_BENCH_THREADS").unwrap_or(1).max(1);
    let batched = env_usize("VIGIL_BENCH_BATCH") == Some(1);

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
                                if batched {
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
    let grown = rss_after.saturating_sub(rss_before) as f64;
    println!(
        "store_memory: layout {}",
        if flat {
            "flat (25 metrics, no labels)"
        } else {
            "labelled (5 metrics x 4 endpoints + aggregates)"
        }
    );
    println!(
        "  data:     {n_services} services x 2 versions x {per_sv} series, {n_slices} slices of {}s, \
         {MIN_SAMPLES}-{MAX_SAMPLES} samples per fed series and slice, {n_samples} samples",
        config.slice_secs
    );
    println!(
        "  store:    {} live series, {} evicted, budget {} bytes",
        stats.series, stats.evicted_series, config.memory_budget_bytes
    );
    println!(
        "  accounted (store.bytes()): {:.1} MiB, {:.0} bytes/series",
        mib(stats.bytes as f64),
        stats.bytes as f64 / series
    );
    println!(
        "  resident growth (VmRSS):   {:.1} MiB, {:.0} bytes/series (before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB)",
        mib(grown),
        grown / series,
        mib(rss_before as f64),
        mib(rss_after as f64),
        mib(hwm as f64)
    );
    println!(
        "  at 100,000 series: {:.2} GiB accounted, {:.2} GiB resident (goal: under 4 GiB)",
        stats.bytes as f64 / series * 1e5 / f64::from(1 << 30),
        grown / series * 1e5 / f64::from(1 << 30)
    );
    println!(
        "  fill time: {:.1} s on {n_threads} threads, {} ({:.0} ns/sample per thread, sample generation included)",
        elapsed.as_secs_f64(),
        if batched {
            "record_batch of 4096 samples"
        } else {
            "record per sample"
        },
        elapsed.as_secs_f64() * 1e9 * n_threads as f64 / n_samples.max(1) as f64
    );
    black_box(&store);
}
