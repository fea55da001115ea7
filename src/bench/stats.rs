//! `vigil bench stats`: Mann-Whitney U on two HDR histograms (Vigil's way)
//! beside the textbook way on the raw samples, in Rust, in the same run:
//! concatenate, sort, average the ranks of ties, sum the canary's ranks.
//! Both must give the same U (integer milliseconds below 2048 have exact
//! buckets), so the ratio compares equal answers.

use std::hint::black_box;
use std::time::Instant;

use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, LogNormal};
use serde::Serialize;
use vigil_stats::mann_whitney::Alternative;
use vigil_stats::{mann_whitney, Histogram};

/// Options of `vigil bench stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Samples per arm.
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct StatsReport {
    samples_per_arm: usize,
    u_sorting: f64,
    u_histograms: f64,
    p_sorting: f64,
    p_histograms: f64,
    /// Baseline: sort the 2n raw samples and rank them, milliseconds.
    sorting_ms: f64,
    /// Vigil: Mann-Whitney on the two histograms, milliseconds.
    histograms_ms: f64,
    speedup: f64,
    /// Building both histograms from the raw samples (once; streaming
    /// does this as data arrive), milliseconds.
    build_histograms_ms: f64,
}

/// Integer-millisecond latencies, lognormal (median 150 ms, sigma 0.6),
/// clipped to [1, 2047].
fn samples(seed: u64, n: usize, multiplier: f64) -> anyhow::Result<Vec<u64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = LogNormal::new(150f64.ln(), 0.6)?;
    Ok((0..n)
        .map(|_| (d.sample(&mut rng) * multiplier).round().clamp(1.0, 2047.0) as u64)
        .collect())
}

/// U of the canary and its normal-approximation p (greater), by sorting.
fn mwu_by_sorting(canary: &[u64], baseline: &[u64]) -> (f64, f64) {
    let mut all: Vec<(u64, bool)> = canary
        .iter()
        .map(|&v| (v, true))
        .chain(baseline.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by_key(|&(v, _)| v);
    let (n1, n2) = (canary.len() as f64, baseline.len() as f64);
    let n = n1 + n2;
    let mut rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let in_canary = all[i..j].iter().filter(|x| x.1).count() as f64;
        rank_sum += avg * in_canary;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    // Continuity-corrected, as scipy's asymptotic method.
    let z = (u - mean - 0.5) / sd;
    (u, vigil_stats::normal::sf(z))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark.
pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.samples >= 2, "--samples must be at least 2");
    let repeat = args.repeat.max(1);
    let baseline = samples(1, args.samples, 1.0)?;
    let canary = samples(2, args.samples, 1.002)?;

    let mut builds = Vec::new();
    let mut hists = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let hb = Histogram::from_values(baseline.iter().copied())?;
        let hc = Histogram::from_values(canary.iter().copied())?;
        builds.push(start.elapsed().as_secs_f64() * 1e3);
        hists = Some((hc, hb));
    }
    let Some((hc, hb)) = hists else {
        anyhow::bail!("no histograms built")
    };
    let mut vigil_times = Vec::new();
    let mut vigil = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let r = black_box(mann_whitney(black_box(&hc), black_box(&hb))?);
        vigil_times.push(start.elapsed().as_secs_f64() * 1e3);
        vigil = Some(r);
    }
    let Some(vigil) = vigil else {
        anyhow::bail!("no result")
    };
    let mut sort_times = Vec::new();
    let mut sorted = (0.0, 0.0);
    for _ in 0..repeat {
        let start = Instant::now();
        sorted = black_box(mwu_by_sorting(black_box(&canary), black_box(&baseline)));
        sort_times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let report = StatsReport {
        samples_per_arm: args.samples,
        u_sorting: sorted.0,
        u_histograms: vigil.u,
        p_sorting: sorted.1,
        p_histograms: vigil.p.get(Alternative::Greater),
        sorting_ms: median(sort_times),
        histograms_ms: median(vigil_times),
        speedup: 0.0,
        build_histograms_ms: median(builds),
    };
    let report = StatsReport {
        speedup: report.sorting_ms / report.histograms_ms.max(1e-9),
        ..report
    };
    anyhow::ensure!(
        report.u_sorting == report.u_histograms,
        "U differs: sorting {} vs histograms {}",
        report.u_sorting,
        report.u_histograms
    );
    if args.json {
        return super::print_json(&report);
    }
    println!(
        "Mann-Whitney U, {} x {} integer-ms lognormal samples (median of {repeat} runs)",
        args.samples, args.samples
    );
    println!(
        "U: histograms {}  sorting {}  identical: {}",
        report.u_histograms,
        report.u_sorting,
        report.u_histograms == report.u_sorting
    );
    println!(
        "p (greater): histograms {:.6e}  sorting {:.6e}",
        report.p_histograms, report.p_sorting
    );
    println!("{:<52} {:>12} {:>10}", "what", "time", "vs sorting");
    println!(
        "{:<52} {:>9.2} ms {:>9}x",
        "baseline: sort + rank the raw samples (Rust)", report.sorting_ms, 1
    );
    println!(
        "{:<52} {:>9.3} ms {:>9.0}x",
        "Vigil: Mann-Whitney on the two histograms", report.histograms_ms, report.speedup
    );
    println!(
        "{:<52} {:>9.2} ms {:>9.1}x",
        "building both histograms (once, as data arrive)",
        report.build_histograms_ms,
        report.sorting_ms / report.build_histograms_ms.max(1e-9)
    );
    Ok(())
}
