//! `vigil bench judge`: the fixture of `benches/judge.rs`, timed tick by
//! tick: every analysis ticks once after each new slice, beside the time
//! to record that slice (the same data the judge then reads).

use std::time::Instant;

use serde::Serialize;

use super::judge_fixture::{Fixture, DEFAULT_ANALYSES, DEFAULT_GRACE_SECS, DEFAULT_WARM_SLICES};

/// Options of `vigil bench judge`.
#[derive(Debug, clap::Args)]
pub struct JudgeArgs {
    /// Analyses (one per service, 4 metrics each).
    #[arg(long, default_value_t = DEFAULT_ANALYSES)]
    analyses: usize,
    /// Slices recorded before timing (30 = analyses 5 minutes old).
    #[arg(long, default_value_t = DEFAULT_WARM_SLICES)]
    warm_slices: usize,
    /// Stream seconds past a slice's end when the judge reads it (the
    /// server's default `slice_grace`; 0 reads each slice while open).
    #[arg(long, default_value_t = DEFAULT_GRACE_SECS)]
    grace_secs: f64,
    /// Ticks timed (each after one new slice).
    #[arg(long, default_value_t = 5)]
    ticks: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct JudgeReport {
    analyses: usize,
    metrics_per_analysis: usize,
    warm_slices: usize,
    grace_secs: f64,
    ticks: usize,
    /// Per tick of all analyses, milliseconds.
    tick_ms: Vec<f64>,
    tick_median_ms: f64,
    tick_per_analysis_us: f64,
    /// Recording the slice each tick reads, milliseconds (the baseline).
    record_slice_median_ms: f64,
    goal_ms: f64,
    series: usize,
    verdicts: Verdicts,
}

#[derive(Debug, Serialize)]
struct Verdicts {
    continue_: usize,
    promote: usize,
    rollback: usize,
    inconclusive: usize,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    vigil_sim::run::quantile(&s, 0.5).unwrap_or(f64::NAN)
}

/// Runs the benchmark.
pub fn run(args: &JudgeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.analyses > 0, "--analyses must be at least 1");
    anyhow::ensure!(args.ticks > 0, "--ticks must be at least 1");
    if !args.json {
        eprintln!(
            "building the fixture: {} analyses, {} warm slices...",
            args.analyses, args.warm_slices
        );
    }
    anyhow::ensure!(
        args.grace_secs.is_finite() && (0.0..=10.0).contains(&args.grace_secs),
        "--grace-secs must be within a slice (0 to 10)"
    );
    let mut fixture = Fixture::new(args.analyses, args.warm_slices, args.grace_secs);
    let mut ticks = Vec::with_capacity(args.ticks);
    let mut records = Vec::with_capacity(args.ticks);
    let mut last = [0; 4];
    for _ in 0..args.ticks {
        let start = Instant::now();
        fixture.record_slice();
        records.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        last = fixture.tick_all();
        ticks.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let tick_median_ms = median(&ticks);
    let report = JudgeReport {
        analyses: fixture.analyses(),
        metrics_per_analysis: 4,
        warm_slices: args.warm_slices,
        grace_secs: args.grace_secs,
        ticks: args.ticks,
        tick_per_analysis_us: tick_median_ms * 1e3 / fixture.analyses() as f64,
        tick_ms: ticks,
        tick_median_ms,
        record_slice_median_ms: median(&records),
        goal_ms: 100.0,
        series: fixture.store().series_count(),
        verdicts: Verdicts {
            continue_: last[0],
            promote: last[1],
            rollback: last[2],
            inconclusive: last[3],
        },
    };
    if args.json {
        return super::print_json(&report);
    }
    println!(
        "judge tick: {} analyses x 4 metrics, {} series, analyses {} slices old, {} ticks timed",
        report.analyses, report.series, report.warm_slices, report.ticks
    );
    println!("{:<44} {:>12}", "what", "median");
    println!(
        "{:<44} {:>9.1} ms",
        "record one slice (baseline: the data read)", report.record_slice_median_ms
    );
    println!(
        "{:<44} {:>9.1} ms   ({:.1} us per analysis; goal {} ms, {:.1}x the goal)",
        "tick every analysis once",
        report.tick_median_ms,
        report.tick_per_analysis_us,
        report.goal_ms,
        report.tick_median_ms / report.goal_ms
    );
    println!(
        "ticks (ms): {}",
        report
            .tick_ms
            .iter()
            .map(|t| format!("{t:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "verdicts at the last tick: {} CONTINUE, {} PROMOTE, {} ROLLBACK, {} INCONCLUSIVE",
        last[0], last[1], last[2], last[3]
    );
    Ok(())
}
