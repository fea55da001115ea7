//! `vigil bench simulate`: the speed goal of `vigil simulate` (1,000
//! replications of a 30-minute, 100 rps scenario in under 60 s), and where
//! the time of one replication goes: drawing the stream, recording it into
//! the store, and ticking the judge, each measured on the same streams.

use std::time::Instant;

use serde::Serialize;
use vigil_core::store::Store;
use vigil_core::Method;
use vigil_sim::run::store_config;
use vigil_sim::{builtin, replicate, simulate, Feed, Generator, Names, Plan};

/// Options of `vigil bench simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateBenchArgs {
    /// Built-in scenario.
    #[arg(long, default_value = "aa")]
    scenario: String,
    /// Replications in the parallel run (the goal is about 1,000).
    #[arg(long, default_value_t = 1000)]
    runs: u64,
    /// Replications timed one by one, single-threaded, for the breakdown.
    #[arg(long, default_value_t = 20)]
    breakdown_runs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// CPU seconds this process has used (user + system, all threads), from
/// `/proc/self/stat`; `None` where that is not readable. On a shared
/// machine wall time measures the neighbours too; CPU time much less so.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every common target.
    Some(ticks / 100.0)
}

/// Wall and CPU milliseconds of one measured phase, per replication.
#[derive(Debug, Serialize)]
struct Phase {
    wall_ms: f64,
    cpu_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct SimulateReport {
    scenario: String,
    runs: u64,
    threads: usize,
    /// Wall-clock seconds for `runs` replications, sequential method.
    wall_s: f64,
    /// CPU seconds (all threads) for the same.
    cpu_s: Option<f64>,
    /// Load average (1 min) when the run ended: other work on the machine.
    load_average: Option<f64>,
    goal_s: f64,
    /// Per replication, single-threaded, milliseconds: drawing the stream.
    draw_ms: Phase,
    /// ... drawing and recording it into a store (pre-aggregated feed).
    draw_record_ms: Phase,
    /// ... drawing and recording every request as its own samples (the
    /// baseline the pre-aggregated feed replaces).
    draw_record_events_ms: Phase,
    /// ... the whole replication: drawing, recording and judging.
    replication_ms: Phase,
    /// Judge ticks per replication (slices judged).
    ticks: f64,
    requests_per_replication: f64,
}

/// Runs the benchmark.
pub fn run(args: &SimulateBenchArgs) -> anyhow::Result<()> {
    let Some(b) = builtin(&args.scenario) else {
        anyhow::bail!("no built-in scenario {:?}", args.scenario);
    };
    let scenario = b.scenario()?;
    let names = Names::new(&scenario)?;
    let n = args.breakdown_runs.max(1);
    let per_run = |f: &mut dyn FnMut(u64) -> anyhow::Result<()>| -> anyhow::Result<Phase> {
        let cpu = cpu_secs();
        let start = Instant::now();
        for run in 0..n {
            f(run)?;
        }
        let wall_ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        let cpu_ms = cpu.zip(cpu_secs()).map(|(a, b)| (b - a) * 1e3 / n as f64);
        Ok(Phase { wall_ms, cpu_ms })
    };
    let mut requests = 0u64;
    let draw_ms = per_run(&mut |run| {
        let mut g = Generator::new(&scenario, 1, run, 10);
        while let Some(d) = g.next_slice() {
            requests += d.parts.iter().map(|p| p.requests).sum::<u64>();
            std::hint::black_box(&d);
        }
        Ok(())
    })?;
    let draw_record_ms = per_run(&mut |run| {
        let store = Store::new(store_config(&scenario.analysis));
        let mut g = Generator::new(&scenario, 1, run, 10);
        while let Some(d) = g.next_slice() {
            for s in g.aggregated_samples(&d, &names) {
                store.record(&s)?;
            }
        }
        Ok(())
    })?;
    let draw_record_events_ms = per_run(&mut |run| {
        let store = Store::new(store_config(&scenario.analysis));
        let mut g = Generator::new(&scenario, 1, run, 10);
        let mut rng = vigil_sim::generate::event_rng(1, run);
        while let Some(d) = g.next_slice() {
            for e in g.expand_events(&d, &mut rng) {
                for s in e.samples(&names) {
                    store.record(&s)?;
                }
            }
        }
        Ok(())
    })?;
    let mut ticks = 0u64;
    let replication_ms = per_run(&mut |run| {
        let r = replicate(&scenario, 1, run, &[Method::Sequential], Feed::Aggregated)?;
        let decided = r.methods[0].decided_at;
        ticks += decided.map_or(Generator::new(&scenario, 1, run, 10).n_slices(), |t| {
            ((t - vigil_sim::STREAM_START) / 10.0).round() as u64
        });
        Ok(())
    })?;
    let threads = rayon::current_num_threads();
    let cpu = cpu_secs();
    let start = Instant::now();
    simulate(
        &scenario,
        &Plan {
            runs: args.runs,
            seed: 1,
            methods: vec![Method::Sequential],
            threads: None,
        },
    )?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_s = cpu.zip(cpu_secs()).map(|(a, b)| b - a);
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let report = SimulateReport {
        scenario: scenario.name.clone(),
        runs: args.runs,
        threads,
        wall_s,
        cpu_s,
        load_average,
        goal_s: 60.0,
        draw_ms,
        draw_record_ms,
        draw_record_events_ms,
        replication_ms,
        ticks: ticks as f64 / n as f64,
        requests_per_replication: requests as f64 / n as f64,
    };
    if args.json {
        return super::print_json(&report);
    }
    let cpu = |p: &Phase| {
        p.cpu_ms
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"))
    };
    println!(
        "vigil simulate --scenario {} --runs {} (sequential): {:.1} s wall on {} threads, \
         {} s CPU (load average {}; goal {} s wall)",
        report.scenario,
        report.runs,
        report.wall_s,
        report.threads,
        report
            .cpu_s
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
        report
            .load_average
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.1}")),
        report.goal_s
    );
    println!(
        "one replication, single-threaded (mean of {n}; {:.0} requests, {:.0} judge ticks):",
        report.requests_per_replication, report.ticks
    );
    println!("{:<58} {:>10} {:>10}", "what", "wall ms", "CPU ms");
    for (what, p) in [
        ("draw the stream", &report.draw_ms),
        (
            "draw + record, every request a sample (baseline)",
            &report.draw_record_events_ms,
        ),
        (
            "draw + record, pre-aggregated per slice",
            &report.draw_record_ms,
        ),
        (
            "draw + record + judge (the whole replication)",
            &report.replication_ms,
        ),
    ] {
        println!("{what:<58} {:>10.1} {:>10}", p.wall_ms, cpu(p));
    }
    if let (Some(all), Some(rec)) = (report.replication_ms.cpu_ms, report.draw_record_ms.cpu_ms) {
        println!(
            "judging: {:.1} ms CPU per replication, {:.0} us per tick",
            all - rec,
            (all - rec) * 1e3 / report.ticks.max(1.0)
        );
    }
    Ok(())
}
