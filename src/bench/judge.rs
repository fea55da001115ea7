//! `vigil bench judge`: the fixture of `benches/judge.rs`, timed tick by
//! tick: every analysis ticks once after each new slice, beside the time
//! to record that slice (the same data the judge then reads).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use vigil_server::registry::{Published, State};

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
    /// After each tick, publishing every analysis's report as `vigil
    /// serve`'s tick does (a new `Published` sharing it, compared with the
    /// last one), milliseconds.
    publish_median_ms: f64,
    /// Then building every published report's wire forms (proto message,
    /// encoded GetVerdict body, JSON body), as the first reads of each
    /// after a tick do, milliseconds.
    wire_forms_median_ms: f64,
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

/// One analysis as `vigil serve`'s registry holds it: its id, service and
/// latest published report.
struct Slot {
    id: Arc<str>,
    service: Arc<str>,
    published: Option<Arc<Published>>,
}

/// Publishes every analysis's latest report into its slot as `vigil
/// serve`'s tick does (`Entry::publish`: a new `Published` sharing the
/// report, compared with the last one published); returns how many were
/// news.
fn publish(fixture: &Fixture, slots: &mut [Slot]) -> usize {
    let mut news = 0;
    for (slot, (_, _, report)) in slots.iter_mut().zip(fixture.reports()) {
        let Some(report) = report else { continue };
        let new = Arc::new(Published::new(
            slot.id.clone(),
            slot.service.clone(),
            State::judged(report.verdict),
            Arc::clone(report),
        ));
        news += usize::from(
            slot.published
                .as_ref()
                .is_none_or(|old| new.differs_from(old)),
        );
        slot.published = Some(new);
    }
    news
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
    let mut publishes = Vec::with_capacity(args.ticks);
    let mut wire_forms = Vec::with_capacity(args.ticks);
    let mut slots: Vec<Slot> = fixture
        .reports()
        .map(|(id, service, _)| Slot {
            id: Arc::from(id),
            service: Arc::from(service),
            published: None,
        })
        .collect();
    let mut last = [0; 4];
    for _ in 0..args.ticks {
        let start = Instant::now();
        fixture.record_slice();
        records.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        last = fixture.tick_all();
        ticks.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        std::hint::black_box(publish(&fixture, &mut slots));
        publishes.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let bytes: usize = slots
            .iter()
            .filter_map(|s| s.published.as_ref())
            .map(|p| p.encoded().len() + p.json().len())
            .sum();
        std::hint::black_box(bytes);
        wire_forms.push(start.elapsed().as_secs_f64() * 1e3);
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
        publish_median_ms: median(&publishes),
        wire_forms_median_ms: median(&wire_forms),
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
        "{:<44} {:>9.1} ms",
        "then publish every report (as vigil serve)", report.publish_median_ms
    );
    println!(
        "{:<44} {:>9.1} ms",
        "then build each one's proto and JSON bodies", report.wire_forms_median_ms
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
