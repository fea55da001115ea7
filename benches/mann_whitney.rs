//! Mann-Whitney U + Hodges-Lehmann on histograms of 1M and 1M samples, and
//! the cost of building those histograms, reported separately.
//!
//! `docs/BENCHMARKS.md` sets these beside scipy's `mannwhitneyu` on the same
//! sizes (`scripts/bench_scipy.py`), measured in the same run.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use std::hint::black_box;
use vigil_stats::{hodges_lehmann, mann_whitney, Histogram};

const N: usize = 1_000_000;

/// Latency samples: lognormal, median `median`, sigma 0.6, clipped to
/// [1, max] and rounded to integers (in the unit the caller implies).
fn samples(seed: u64, median: f64, multiplier: f64, max: f64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dist =
        LogNormal::new(median.ln(), 0.6).unwrap_or_else(|_| unreachable!("valid parameters"));
    (0..N)
        .map(|_| (dist.sample(&mut rng) * multiplier).round().clamp(1.0, max) as u64)
        .collect()
}

fn build(values: &[u64]) -> Histogram {
    let mut h = Histogram::new();
    for &v in values {
        h.record(v)
            .unwrap_or_else(|_| unreachable!("values are in range"));
    }
    h
}

fn bench(c: &mut Criterion) {
    // Integer milliseconds below 2048: every value has its own bucket, the
    // case in which U and p equal scipy's on the raw samples.
    let base_ms = samples(1, 150.0, 1.0, 2047.0);
    let canary_ms = samples(2, 150.0, 1.05, 2047.0);
    // Microseconds: wide buckets (3 significant digits), many more of them.
    let base_us = samples(3, 150_000.0, 1.0, 1e9);
    let canary_us = samples(4, 150_000.0, 1.05, 1e9);

    for (name, base, canary) in [("ms", &base_ms, &canary_ms), ("us", &base_us, &canary_us)] {
        let hb = build(base);
        let hc = build(canary);
        c.bench_function(&format!("mwu_1m_x_1m_{name}"), |b| {
            b.iter(|| mann_whitney(black_box(&hc), black_box(&hb)))
        });
        c.bench_function(&format!("mwu_hl_1m_x_1m_{name}"), |b| {
            b.iter(|| {
                let mw = mann_whitney(black_box(&hc), black_box(&hb));
                let hl = hodges_lehmann(black_box(&hc), black_box(&hb), 0.95);
                (mw, hl)
            })
        });
        c.bench_function(&format!("build_histogram_1m_{name}"), |b| {
            b.iter_batched(
                || base.clone(),
                |v| build(black_box(&v)),
                BatchSize::LargeInput,
            )
        });
    }
}

/// The samples `scripts/bench_scipy.py` wrote (integers, one per line,
/// gzip), when `VIGIL_BENCH_DIR` names their directory: the same data scipy
/// was timed on.
fn scipy_files() -> Option<(Vec<u64>, Vec<u64>)> {
    use std::io::BufRead as _;
    let dir = std::env::var_os("VIGIL_BENCH_DIR")?;
    let read = |name: &str| -> Option<Vec<u64>> {
        let file = std::fs::File::open(std::path::Path::new(&dir).join(name)).ok()?;
        let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
        reader
            .lines()
            .map(|l| l.ok()?.trim().parse().ok())
            .collect()
    };
    Some((read("baseline.txt.gz")?, read("canary.txt.gz")?))
}

fn bench_scipy_files(c: &mut Criterion) {
    let Some((base, canary)) = scipy_files() else {
        return;
    };
    let hb = build(&base);
    let hc = build(&canary);
    c.bench_function("mwu_scipy_files", |b| {
        b.iter(|| mann_whitney(black_box(&hc), black_box(&hb)))
    });
    c.bench_function("mwu_hl_scipy_files", |b| {
        b.iter(|| {
            let mw = mann_whitney(black_box(&hc), black_box(&hb));
            let hl = hodges_lehmann(black_box(&hc), black_box(&hb), 0.95);
            (mw, hl)
        })
    });
    c.bench_function("build_histograms_scipy_files", |b| {
        b.iter(|| (build(black_box(&base)), build(black_box(&canary))))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench, bench_scipy_files
}
criterion_main!(benches);
