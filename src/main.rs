//! The `vigil` command.
//!
//! Thin by design: parse arguments, read inputs, call the library crates,
//! print. Errors are `anyhow` here, with context naming what was being done.

use vigil_judge::compare;
mod bench;
mod client;
mod demo;
mod dev_broker;
mod events;
mod input;
mod produce;
mod replay;
mod serve;
mod simulate;
#[cfg(test)]
mod test_support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use vigil_stats::mann_whitney::Alternative;
use vigil_stats::Histogram;

/// The allocator: mimalloc rather than glibc's malloc. A judge tick
/// allocates and frees each analysis's read slices and report text, and
/// glibc's bins made that 12% or more of the tick, more whenever the mix
/// of sizes changed; mimalloc took 13% off the tick at 10,000 analyses
/// (docs/BENCHMARKS.md). The benches that stand in for this binary's paths
/// (`judge`, `ingest_path`, `store_memory`, `get_verdict`) declare it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vigil, a streaming canary judge: roll back, keep watching, or promote.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare a canary's samples against a baseline's and give a verdict.
    Compare(CompareArgs),
    /// Run a recorded stream through the judge in stream time.
    Replay(replay::ReplayArgs),
    /// Seeded replications of a traffic scenario through the judge.
    Simulate(simulate::SimulateArgs),
    /// Performance figures, each beside its baseline in the same run.
    Bench(bench::BenchArgs),
    /// Run a local Kafka-protocol broker with Vigil's topics (for development).
    DevBroker(dev_broker::DevBrokerArgs),
    /// Vigil's main job in one process: embedded Kafka, traffic, judge, APIs.
    Demo(demo::DemoArgs),
    /// Write a scenario's synthetic traffic to Kafka, paced in stream time.
    Produce(produce::ProduceArgs),
    /// Serve the gRPC and HTTP APIs (analyses, verdicts, ingest).
    Serve(serve::ServeArgs),
    /// Show the current verdict of an analysis (a client of `vigil serve`).
    Verdict(client::VerdictArgs),
    /// Follow verdict changes live (a client of `vigil serve`).
    Watch(client::WatchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlternativeArg {
    /// A difference either way is bad.
    TwoSided,
    /// A larger canary is bad (latency, errors, CPU).
    Greater,
    /// A smaller canary is bad (throughput, hit rate).
    Less,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// Baseline samples: one number per line, CSV (--column), JSON lines
    /// (--field) or Arrow IPC (--column); `-` reads stdin; `.gz` is unpacked.
    #[arg(long)]
    baseline: PathBuf,
    /// Canary samples, in the same forms as --baseline.
    #[arg(long)]
    canary: PathBuf,
    /// Which difference is a regression.
    #[arg(long, value_enum, default_value = "greater")]
    alternative: AlternativeArg,
    /// Confidence of the shift's interval; the test's level is 1 - this.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Relative change accepted as harmless (0.05 = 5% of the baseline median).
    #[arg(long, default_value_t = 0.05)]
    tolerance: f64,
    /// Absolute change accepted as harmless, in input units.
    #[arg(long, default_value_t = 0.0)]
    tolerance_abs: f64,
    /// CSV or Arrow column holding the values (both inputs).
    #[arg(long)]
    column: Option<String>,
    /// JSON lines field holding the values (both inputs).
    #[arg(long)]
    field: Option<String>,
    /// Column for the baseline only, overriding --column/--field.
    #[arg(long, conflicts_with = "baseline_field")]
    baseline_column: Option<String>,
    /// Field for the baseline only, overriding --column/--field.
    #[arg(long)]
    baseline_field: Option<String>,
    /// Column for the canary only, overriding --column/--field.
    #[arg(long, conflicts_with = "canary_field")]
    canary_column: Option<String>,
    /// Field for the canary only, overriding --column/--field.
    #[arg(long)]
    canary_field: Option<String>,
    /// Multiply values by this before binning (default: 10^d, d the most
    /// decimals seen, so decimal inputs keep their exact order and ties).
    #[arg(long)]
    scale: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(args) => run_compare(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::DevBroker(args) => dev_broker::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Produce(args) => produce::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Verdict(args) => client::verdict(&args),
        Command::Watch(args) => client::watch(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run_compare(args: &CompareArgs) -> anyhow::Result<()> {
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        bail!(
            "--confidence must be between 0 and 1, got {}",
            args.confidence
        );
    }
    let harmless = |x: f64| x.is_finite() && x >= 0.0;
    if !harmless(args.tolerance) || !harmless(args.tolerance_abs) {
        bail!("--tolerance and --tolerance-abs must be finite and >= 0");
    }
    if args.baseline.as_os_str() == "-" && args.canary.as_os_str() == "-" {
        bail!("only one of --baseline and --canary can read stdin");
    }
    let mut stdin = std::io::stdin().lock();
    let read = |path: &PathBuf,
                column: &Option<String>,
                field: &Option<String>,
                stdin: &mut dyn std::io::Read|
     -> anyhow::Result<input::Samples> {
        // A per-arm flag replaces both shared ones for that arm.
        let (column, field) = if column.is_some() || field.is_some() {
            (column.as_deref(), field.as_deref())
        } else {
            (args.column.as_deref(), args.field.as_deref())
        };
        let format = input::format_for(path, column, field)?;
        let spec = input::InputSpec {
            path: path.clone(),
            format,
        };
        Ok(input::read_samples(&spec, stdin)?)
    };
    let baseline = read(
        &args.baseline,
        &args.baseline_column,
        &args.baseline_field,
        &mut stdin,
    )
    .context("reading the baseline")?;
    let canary = read(
        &args.canary,
        &args.canary_column,
        &args.canary_field,
        &mut stdin,
    )
    .context("reading the canary")?;

    let scale = match args.scale {
        Some(s) if s.is_finite() && s > 0.0 => s,
        Some(s) => bail!("--scale must be a positive number, got {s}"),
        None => 10f64.powi(baseline.max_decimals.max(canary.max_decimals) as i32),
    };
    let to_histogram = |samples: &input::Samples| -> anyhow::Result<Histogram> {
        let mut h = Histogram::new();
        for &v in &samples.values {
            let scaled = (v * scale).round();
            // HDR tracks values up to 2^62 or so; beyond that the scale is
            // too fine for the data.
            if scaled >= 2f64.powi(62) {
                bail!(
                    "value {v} in {} is too large at scale {scale}: pass a smaller --scale",
                    samples.source
                );
            }
            h.record(scaled as u64)
                .with_context(|| format!("recording {v} from {}", samples.source))?;
        }
        Ok(h)
    };
    let hb = to_histogram(&baseline)?;
    let hc = to_histogram(&canary)?;
    let policy = compare::Policy {
        alternative: match args.alternative {
            AlternativeArg::TwoSided => Alternative::TwoSided,
            AlternativeArg::Greater => Alternative::Greater,
            AlternativeArg::Less => Alternative::Less,
        },
        confidence: args.confidence,
        tolerance: args.tolerance,
        tolerance_abs: args.tolerance_abs,
    };
    let report =
        compare::compare(&hc, &hb, scale, &policy).context("comparing canary with baseline")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", compare::render_table(&report))?;
    }
    Ok(())
}
