//! The judge-tick fixture shared by `benches/judge.rs` (criterion) and
//! `vigil bench judge`: 10,000 services, each with a baseline `v1` and a
//! canary `v2` emitting four metrics, and one analysis per service.
//!
//! - `latency` and `db_latency` (lognormal milliseconds), `error_rate` (one
//!   outcome per request, 0.1% errors) and `cpu_seconds` (a gauge scraped
//!   once per instance and slice);
//! - per 10 s slice, 20 canary and 80 baseline requests (each feeding
//!   latency, db_latency and error_rate) and 2 canary and 8 baseline
//!   cpu_seconds scrapes;
//! - one canary in a hundred is 30% slower, the rest are A/A;
//! - one analysis per service: sequential method, the spec's defaults, no
//!   dimensions, judging on after a terminal verdict so that every tick does
//!   a running analysis's full work;
//! - pre-warmed with `warm_slices` slices of data (5 minutes by default).
//!
//! Seeded and single-threaded: the same data on every run.

// Each includer uses part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{
    AnalysisSpec, Labels, MetricName, Observation, Sample, ServiceName, SpecFormat, Verdict,
    VerdictReport, Version,
};
use vigil_judge::Analysis;

pub const DEFAULT_ANALYSES: usize = 10_000;
const SLICE_SECS: f64 = 10.0;
/// Stream time of the first slice (a multiple of the slice length).
const START_TS: f64 = 1_763_900_000.0;
/// Stream seconds past a slice's end when the judge reads it: the
/// server's default `slice_grace` (`VIGIL_BENCH_GRACE_SECS` sets another;
/// 0, the fixture before 2026-12-07, reads every slice while still open).
pub const DEFAULT_GRACE_SECS: f64 = 2.0;
/// Slices recorded before measuring: 5 minutes.
pub const DEFAULT_WARM_SLICES: usize = 30;
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

pub struct Fixture {
    names: Names,
    store: Store,
    analyses: Vec<Analysis>,
    rng: ChaCha8Rng,
    latency: LogNormal<f64>,
    db_latency: LogNormal<f64>,
    cpu_seconds: LogNormal<f64>,
    /// The next slice to record.
    next_slice: i64,
    /// Stream seconds the data runs past the slice the judge reads.
    grace: f64,
}

impl Fixture {
    /// `n_services` analyses, warmed with `warm_slices` slices of data,
    /// read by the judge `grace` stream seconds after each slice ends
    /// ([`DEFAULT_GRACE_SECS`]; 0 reads every slice while still open).
    pub fn new(n_services: usize, warm_slices: usize, grace: f64) -> Self {
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
            grace: grace.clamp(0.0, SLICE_SECS),
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

    /// Records one slice's worth of every service's traffic and moves on:
    /// stream time from `grace` seconds into the slice to `grace` seconds
    /// into the next one, each series' samples in time order. So when the
    /// judge then reads the slice (`tick_all`), the stream has been
    /// `grace` seconds past it, as the server's judge reads a slice only
    /// `slice_grace` after the store took the next slice's first sample:
    /// most series have left it by then, so it is complete in the store.
    /// (With no grace every read finds its slice still open, which a live
    /// series' slice rarely is.)
    pub fn record_slice(&mut self) {
        let start = self.next_slice as f64 * SLICE_SECS + self.grace;
        let mut times = Vec::new();
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
                self.times(start, requests, &mut times);
                for &ts in &times {
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
                self.times(start, instances, &mut times);
                for &ts in &times {
                    let mut s = self.sample(ts, service, &version, &self.names.cpu_seconds);
                    s.observation = Observation::Value(self.cpu_seconds.sample(&mut self.rng));
                    self.record(&s);
                }
            }
        }
        self.next_slice += 1;
    }

    /// `n` uniform times over one slice's length from `start`, in order.
    fn times(&mut self, start: f64, n: usize, out: &mut Vec<f64>) {
        out.clear();
        out.extend((0..n).map(|_| start + self.rng.random::<f64>() * SLICE_SECS));
        out.sort_by(f64::total_cmp);
    }

    fn record(&self, sample: &Sample) {
        if let Err(e) = self.store.record(black_box(sample)) {
            unreachable!("bench samples are valid: {e}");
        }
    }

    /// Every analysis ticks once, at the start of the slice that follows
    /// the last recorded one (so that slice is complete).
    pub fn tick_all(&mut self) -> [usize; 4] {
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

    pub fn describe(&mut self, verdicts: [usize; 4]) {
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

impl Fixture {
    /// Analyses ticking.
    pub fn analyses(&self) -> usize {
        self.analyses.len()
    }

    /// The store the analyses read.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Each analysis's id, service and latest report (none before its
    /// first tick).
    pub fn reports(&self) -> impl Iterator<Item = (&str, &str, Option<&Arc<VerdictReport>>)> + '_ {
        self.analyses
            .iter()
            .map(|a| (a.id(), a.spec().service.as_str(), a.latest_shared()))
    }
}

/// Seconds from the environment (0 or more), else `default`.
pub fn env_secs(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(default)
}

/// A positive count from the environment, else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
