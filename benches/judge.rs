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
//!   cost grows as analyses age);
//! - each iteration's data runs 2 s (the server's default `slice_grace`)
//!   into the next slice, each series' samples in time order, so the judge
//!   reads a slice the stream has left, as the server's judge does
//!   (`VIGIL_BENCH_GRACE_SECS=0` reads every slice while still open, the
//!   fixture before 2026-12-07).
//!
//! Each iteration: one new slice of data arrives, then every analysis ticks
//! once (feeding the new slice and re-evaluating its verdict). The
//! `judge_tick` bench times only the ticks, `store_record_slice` only the
//! recording; both advance the same fixture by one slice per iteration, so
//! the judge always sees a fresh slice. Flat sampling keeps the number of
//! slices the run adds (and the store's memory) bounded.

/// The `vigil` binary's allocator (`src/main.rs`), so that this measures
/// what the binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};

#[path = "../src/bench/judge_fixture.rs"]
mod judge_fixture;
use judge_fixture::{
    env_count, env_secs, Fixture, DEFAULT_ANALYSES, DEFAULT_GRACE_SECS, DEFAULT_WARM_SLICES,
};

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

fn bench(c: &mut Criterion) {
    let n = env_count("VIGIL_BENCH_ANALYSES", DEFAULT_ANALYSES);
    let warm_slices = env_count("VIGIL_BENCH_WARM_SLICES", DEFAULT_WARM_SLICES);
    let grace = env_secs("VIGIL_BENCH_GRACE_SECS", DEFAULT_GRACE_SECS);
    let mut fixture = Fixture::new(n, warm_slices, grace);
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
