//! One judge tick over 10,000 running analyses of 4 metrics each, and the
//! cost of recording the slice of data that tick consumes, measured apart.
//!
//! The goal (issue: "a judge tick over 10,000 active analyses with 4 metrics
//! each under 100 ms on one core") and the figures are in
//! `docs/BENCHMARKS.md`.
//!
//! The fixture, seeded and single-threaded:
//! - 10,000 services (`VIGIL_BENCH_ANALYSES` overrides the count for a quick
//!   run), each with a baseline `v1` and a canary `v2`, both emitting four
//!   metrics: `latency` and `db_latency` (lognormal milliseconds),
//!   `error_rate` (one outcome per request, 0.1% errors) and `cpu_seconds`
//!   (a gauge scraped once per instance and slice);
//! - per 10 s slice, 20 canary and 80 baseline requests (each feeding
//!   latency, db_latency and error_rate) and 2 canary and 8 baseline
//!   cpu_seconds scrapes;
//! - one canary in a hundred is 30% slower, the rest are A/A;
//! - one analysis per service: sequential method, the spec's defaults, no
//!   dimensions, judging on after a terminal verdict so that every tick does
//!   a running analysis's full work (the question is the cost of analyses
//!   that are still active);
//! - pre-warmed with 5 minutes (30 slices) of data (`VIGIL_BENCH_WARM_SLICES`
//!   sets another age, up to the 180-slice window, to see how the tick's
//!   cost grows as analyses age).
//!
//! Each iteration: one new slice of data arrives, then every analysis ticks
//! once (feeding the new slice and re-evaluating its verdict). The
//! `judge_tick` bench times only the ticks, `store_record_slice` only the
//! recording; both advance the same fixture by one slice per iteration, so
//! the judge always sees a fresh slice. Flat sampling keeps the number of
//! slices the run adds (and the store's memory) bounded.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{
    AnalysisSpec, Labels, MetricName, Observation, Sample, ServiceName, SpecFormat, Verdict,
    Version,
};
use vigil_judge::Analysis;

const DEFAULT_ANALYSES: usize = 10_000;
const SLICE_SECS: f64 = 10.0;
/// Stream time of the first slice (a multiple of the slice length).
const START_TS: f64 = 1_763_900_000.0;
/// Slices recorded before measuring: 5 minutes.
const DEFAULT_WARM_SLICES: usize = 30;
const CANARY_REQUESTS: usize = 20;
const BASELINE_REQUESTS: usize = 80;
const CANARY_INSTANCES: usize = 2;
const BASELINE_INSTANCES: usize = 8;
const ERROR_RATE: f64 = 0.001;
/// Every `REGRESSED_EVERY`-th canary is slower by `SLOWDOWN`.
const REGRESSED_EVERY: usize = 100;
const SLOWDOWN: f64 = 1.3;

const SPEC: &str = r#"
service: placeholder
baseline_version: v1
canary_version: v2
metrics:
  - name: latency
    kind: latency
  - name: error_rate
    kind: error_rate
    tolerance_abs: 0.002
  - name: db_latency
    kind: latency
  - name: cpu_seconds
    kind: gauge
"#;

/// A bench name, valid by construction.
fn name<T>(r: Result<T, vigil_core::CoreError>) -> T {
    r.unwrap_or_else(|e| unreachable!("valid names: {e}"))
}

/// The series names, built once so samples cost reference-count bumps.
struct Names {
    services: Vec<ServiceName>,
    baseline: Version,
    canary: Version,
    latency: MetricName,
    error_rate: MetricName,
    db_latency: MetricName,
    cpu_seconds: MetricName,
}

impl Names {
    fn new(n_services: usize) -> Self {
        Self {
            services: (0..n_services)
                .map(|i| name(ServiceName::new(format!("svc-{i:05}"))))
                .collect(),
            baseline: name(Version::new("v1")),
            canary: name(Version::new("v2")),
            latency: name(MetricName::new("latency")),
            error_rate: name(MetricName::new("error_rate")),
            db_latency: name(MetricName::new("db_latency")),
            cpu_seconds: name(MetricName::new("cpu_seconds")),
        }
    }
}

struct Fixture {
    names: Names,
    store: Store,
    analyses: Vec<Analysis>,
    rng: ChaCha8Rng,
    latency: LogNormal<f64>,
    db_latency: LogNormal<f64>,
    cpu_seconds: LogNormal<f64>,
    /// The next slice to record.
    next_slice: i64,
}

impl Fixture {
    fn new(n_services: usize, warm_slices: usize) -> Self {
        let names = Names::new(n_services);
        // The default store, with a budget large enough that nothing is
        // evicted: the default 2 GiB holds only about 10 minutes of this
        // traffic (docs/BENCHMARKS.md), and evicting an analysis's series
        // would measure a different judge.
        let store = Store::new(StoreConfig {
            memory_budget_bytes: 64 << 30,
            ..StoreConfig::default()
        });
        let template = AnalysisSpec::parse(SPEC, SpecFormat::Yaml)
            .unwrap_or_else(|e| unreachable!("the bench spec is valid: {e}"));
        let analyses = names
            .services
            .iter()
            .map(|service| {
                let spec = AnalysisSpec {
                    service: service.clone(),
                    ..template.clone()
                };
                let mut a = Analysis::new(service.as_str(), spec, START_TS)
                    .unwrap_or_else(|e| unreachable!("the bench spec is valid: {e}"));
                a.keep_judging_after_decision();
                a
            })
            .collect();
        let lognormal = |median: f64, sigma: f64| {
            LogNormal::new(f64::ln(median), sigma)
                .unwrap_or_else(|_| unreachable!("valid parameters"))
        };
        let mut fixture = Self {
            names,
            store,
            analyses,
            rng: ChaCha8Rng::seed_from_u64(20_251_124),
            latency: lognormal(80.0, 0.5),
            db_latency: lognormal(12.0, 0.7),
            cpu_seconds: lognormal(0.4, 0.2),
            next_slice: (START_TS / SLICE_SECS) as i64,
        };
        for _ in 0..warm_slices {
            fixture.record_slice();
        }
        // One tick feeds all warm-up slices: the same evidence as a tick per
        // slice, without 30 ticks of set-up time.
        fixture.tick_all();
        fixture
    }

    fn sample(&self, ts: f64, service: usize, version: &Version, metric: &MetricName) -> Sample {
        Sample {
            ts,
            service: self.names.services[service].clone(),
            version: version.clone(),
            metric: metric.clone(),
            labels: Labels::empty(),
            observation: Observation::Value(0.0),
        }
    }

    /// Records one slice of every service's traffic and moves on.
    fn record_slice(&mut self) {
        let start = self.next_slice as f64 * SLICE_SECS;
        for service in 0..self.names.services.len() {
            let slow = service % REGRESSED_EVERY == 0;
            for (version, requests, instances, factor) in [
                (
                    self.names.baseline.clone(),
                    BASELINE_REQUESTS,
                    BASELINE_INSTANCES,
                    1.0,
                ),
                (
                    self.names.canary.clone(),
                    CANARY_REQUESTS,
                    CANARY_INSTANCES,
                    if slow { SLOWDOWN } else { 1.0 },
                ),
            ] {
                for _ in 0..requests {
                    let ts = start + self.rng.random::<f64>() * SLICE_SECS;
                    let mut s = self.sample(ts, service, &version, &self.names.latency);
                    s.observation = Observation::Value(self.latency.sample(&mut self.rng) * factor);
                    self.record(&s);
                    s.metric = self.names.db_latency.clone();
                    s.observation = Observation::Value(self.db_latency.sample(&mut self.rng));
                    self.record(&s);
                    s.metric = self.names.error_rate.clone();
                    s.observation = Observation::Outcome {
                        error: self.rng.random::<f64>() < ERROR_RATE,
                    };
                    self.record(&s);
                }
                for _ in 0..instances {
                    let ts = start + self.rng.random::<f64>() * SLICE_SECS;
                    let mut s = self.sample(ts, service, &version, &self.names.cpu_seconds);
                    s.observation = Observation::Value(self.cpu_seconds.sample(&mut self.rng));
                    self.record(&s);
                }
            }
        }
        self.next_slice += 1;
    }

    fn record(&self, sample: &Sample) {
        if let Err(e) = self.store.record(black_box(sample)) {
            unreachable!("bench samples are valid: {e}");
        }
    }

    /// Every analysis ticks once, at the start of the slice that follows
    /// the last recorded one (so that slice is complete).
    fn tick_all(&mut self) -> [usize; 4] {
        let now = self.next_slice as f64 * SLICE_SECS;
        let mut verdicts = [0; 4];
        for a in &mut self.analyses {
            let report = black_box(a.tick(&self.store, black_box(now)));
            verdicts[match report.verdict {
                Verdict::Continue => 0,
                Verdict::Promote => 1,
                Verdict::Rollback => 2,
                Verdict::Inconclusive => 3,
            }] += 1;
        }
        verdicts
    }

    fn describe(&mut self, verdicts: [usize; 4]) {
        let stats = self.store.stats();
        eprintln!(
            "judge fixture: {} analyses, {} series, {} slices recorded, {} samples, \
             store {:.0} MiB ({:.0} bytes/series); verdicts: {} CONTINUE, {} PROMOTE, \
             {} ROLLBACK, {} INCONCLUSIVE",
            self.analyses.len(),
            stats.series,
            self.next_slice - (START_TS / SLICE_SECS) as i64,
            stats.recorded,
            stats.bytes as f64 / f64::from(1 << 20),
            stats.bytes as f64 / stats.series.max(1) as f64,
            verdicts[0],
            verdicts[1],
            verdicts[2],
            verdicts[3],
        );
    }
}

/// CPU time this thread has run, in nanoseconds (Linux; `None` elsewhere).
/// On a shared machine a tick's wall time includes time spent waiting for
/// a core; its CPU time does not.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A positive count from the environment, else `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    let n = env_count("VIGIL_BENCH_ANALYSES", DEFAULT_ANALYSES);
    let warm_slices = env_count("VIGIL_BENCH_WARM_SLICES", DEFAULT_WARM_SLICES);
    let mut fixture = Fixture::new(n, warm_slices);
    let verdicts = fixture.tick_all();
    fixture.describe(verdicts);

    let mut group = c.benchmark_group(format!("judge_{n}_analyses_4_metrics"));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(2));
    let mut tick_cpu_ms = Vec::new();
    group.bench_function("judge_tick", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                fixture.record_slice();
                let cpu = thread_cpu_ns();
                let start = Instant::now();
                black_box(fixture.tick_all());
                timed += start.elapsed();
                if let (Some(before), Some(after)) = (cpu, thread_cpu_ns()) {
                    tick_cpu_ms.push(after.saturating_sub(before) as f64 / 1e6);
                }
            }
            timed
        })
    });
    group.bench_function("store_record_slice", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                fixture.record_slice();
                timed += start.elapsed();
                black_box(fixture.tick_all());
            }
            timed
        })
    });
    group.finish();
    if !tick_cpu_ms.is_empty() {
        tick_cpu_ms.sort_by(f64::total_cmp);
        eprintln!(
            "judge_tick CPU time per tick over {} ticks: median {:.1} ms (min {:.1}, max {:.1})",
            tick_cpu_ms.len(),
            tick_cpu_ms[tick_cpu_ms.len() / 2],
            tick_cpu_ms[0],
            tick_cpu_ms[tick_cpu_ms.len() - 1]
        );
    }
    let verdicts = fixture.tick_all();
    fixture.describe(verdicts);
}

criterion_group!(benches, bench);
criterion_main!(benches);
