//! `vigil simulate`: seeded replications of a scenario through the same
//! store and judge as `vigil serve` and `vigil replay`, in stream time.

mod html;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use serde::Serialize;
use vigil_core::Method;
use vigil_sim::{builtin, simulate, summarize, Plan, Replication, Scenario, Summary, BUILTINS};

/// Which methods judge the replications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Anytime-valid tests within time slices.
    Sequential,
    /// Mann-Whitney / proportions on every tick.
    FixedHorizon,
    /// Kayenta's NetflixACAJudge.
    Kayenta,
    /// All three, side by side, on the same streams.
    All,
}

/// Options of `vigil simulate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").args(["scenario", "scenario_file", "list"]).required(true)))]
pub struct SimulateArgs {
    /// A built-in scenario (see --list).
    #[arg(long, conflicts_with = "scenario_file")]
    scenario: Option<String>,
    /// A scenario file (TOML).
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Print the scenario's TOML and exit.
    #[arg(long)]
    show: bool,
    /// Replications.
    #[arg(long, default_value_t = 1000)]
    runs: u64,
    /// Seed: the same seed gives the same results, whatever the thread count.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Method(s) judging each replication (default: the scenario's).
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object per method (an array for `all`).
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with plots.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Write replication --run's request events as JSON lines (what
    /// `vigil replay --input` reads), and print that replication.
    #[arg(long, requires = "export_spec")]
    export_events: Option<PathBuf>,
    /// With --export-events: write the analysis spec (JSON) of the first
    /// method, for `vigil replay --spec`.
    #[arg(long, requires = "export_events")]
    export_spec: Option<PathBuf>,
    /// With --export-events: which replication.
    #[arg(long, default_value_t = 0)]
    run: u64,
}

/// Runs `vigil simulate`.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.list {
        for b in BUILTINS {
            let s = b
                .scenario()
                .with_context(|| format!("built-in {}", b.name))?;
            writeln!(
                out,
                "{:<18} {:<8} {}",
                b.name,
                if b.healthy { "healthy" } else { "bad" },
                s.description
            )?;
        }
        return Ok(());
    }
    let (scenario, text) = load(args)?;
    if args.show {
        write!(out, "{text}")?;
        return Ok(());
    }
    let methods = match args.method {
        None => vec![scenario.analysis.policy.method],
        Some(MethodArg::Sequential) => vec![Method::Sequential],
        Some(MethodArg::FixedHorizon) => vec![Method::FixedHorizon],
        Some(MethodArg::Kayenta) => vec![Method::Kayenta],
        Some(MethodArg::All) => vec![Method::Sequential, Method::FixedHorizon, Method::Kayenta],
    };
    if let Some(events) = &args.export_events {
        return export(args, &scenario, &methods, events, &mut out);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let plan = Plan {
        runs: args.runs,
        seed: args.seed,
        methods: methods.clone(),
        threads: args.threads,
    };
    let started = Instant::now();
    let reps = simulate(&scenario, &plan).context("simulating")?;
    let elapsed = started.elapsed().as_secs_f64();
    let summaries: Vec<Summary> = (0..methods.len())
        .map(|i| summarize(&scenario, args.seed, &reps, i))
        .collect();
    if let Some(path) = &args.html {
        let page = html::report(&scenario, &text, &plan, &reps, &summaries)?;
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        if args.method == Some(MethodArg::All) {
            serde_json::to_writer_pretty(&mut out, &summaries)?;
        } else if let Some(s) = summaries.first() {
            serde_json::to_writer_pretty(&mut out, s)?;
        }
        writeln!(out)?;
    } else {
        write!(out, "{}", table(&scenario, &plan, &summaries, elapsed))?;
    }
    Ok(())
}

fn load(args: &SimulateArgs) -> anyhow::Result<(Scenario, String)> {
    if let Some(name) = &args.scenario {
        let Some(b) = builtin(name) else {
            let names: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
            bail!(
                "no built-in scenario {name:?}; built-in: {}",
                names.join(", ")
            );
        };
        let text = b.toml();
        let s = b
            .scenario()
            .with_context(|| format!("built-in scenario {name}"))?;
        return Ok((s, text));
    }
    let Some(path) = &args.scenario_file else {
        bail!("give --scenario NAME or --scenario-file FILE");
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let s =
        Scenario::parse(&text).with_context(|| format!("invalid scenario {}", path.display()))?;
    Ok((s, text))
}

/// One replication, written as events and judged: what a replay of that
/// file must reproduce.
#[derive(Debug, Serialize)]
struct Export<'a> {
    scenario: &'a str,
    seed: u64,
    events: u64,
    replication: &'a Replication,
}

fn export(
    args: &SimulateArgs,
    scenario: &Scenario,
    methods: &[Method],
    events_path: &PathBuf,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let names = vigil_sim::Names::new(scenario)?;
    let store = vigil_core::store::Store::new(vigil_sim::run::store_config(&scenario.analysis));
    let mut generator =
        vigil_sim::Generator::new(scenario, args.seed, args.run, store.config().slice_secs);
    let mut rng = vigil_sim::generate::event_rng(args.seed, args.run);
    let file = std::fs::File::create(events_path)
        .with_context(|| format!("creating {}", events_path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut n = 0u64;
    while let Some(draw) = generator.next_slice() {
        for e in generator.expand_events(&draw, &mut rng) {
            writeln!(w, "{}", e.json_line(&names))?;
            n += 1;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", events_path.display()))?;
    if let Some(spec_path) = &args.export_spec {
        let first = methods.first().copied().unwrap_or_default();
        let spec = vigil_sim::run::spec_for(scenario, first);
        let text = serde_json::to_string_pretty(&spec)?;
        std::fs::write(spec_path, text)
            .with_context(|| format!("writing {}", spec_path.display()))?;
    }
    let replication = vigil_sim::replicate(
        scenario,
        args.seed,
        args.run,
        methods,
        vigil_sim::Feed::Aggregated,
    )?;
    serde_json::to_writer_pretty(
        &mut *out,
        &Export {
            scenario: &scenario.name,
            seed: args.seed,
            events: n,
            replication: &replication,
        },
    )?;
    writeln!(out)?;
    Ok(())
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Sequential => "sequential",
        Method::FixedHorizon => "fixed-horizon",
        Method::Kayenta => "kayenta",
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn secs(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"))
}

fn table(scenario: &Scenario, plan: &Plan, sums: &[Summary], elapsed: f64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {}", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "          {}", scenario.description);
    }
    let _ = writeln!(
        out,
        "{} runs, seed {}, alpha {}, {:.0} s of stream each\n",
        plan.runs, plan.seed, scenario.analysis.policy.alpha, scenario.duration_s
    );
    let _ = write!(out, "{:<28}", "");
    for s in sums {
        let _ = write!(out, "{:>15}", method_name(s.method));
    }
    let _ = writeln!(out);
    type Row = (&'static str, fn(&Summary) -> String);
    let rows: [Row; 9] = [
        ("ROLLBACK", |s| pct(s.rollback_rate)),
        ("PROMOTE", |s| pct(s.promote_rate)),
        ("INCONCLUSIVE", |s| pct(s.inconclusive_rate)),
        ("CONTINUE (no verdict)", |s| pct(s.continue_rate)),
        ("median decision", |s| secs(s.median_decision_s)),
        ("p90 decision", |s| secs(s.p90_decision_s)),
        ("median time to ROLLBACK", |s| secs(s.median_rollback_s)),
        (
            "ROLLBACK within 10 min",
            |s| pct(s.rollback_within_10m_rate),
        ),
        ("exposure before ROLLBACK", |s| {
            s.exposure_requests
                .map_or_else(|| "-".to_owned(), |e| format!("{e:.0} req"))
        }),
    ];
    for (label, f) in rows {
        let _ = write!(out, "{label:<28}");
        for s in sums {
            let _ = write!(out, "{:>15}", f(s));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\ndecision times are stream seconds after the change (t = {:.0} s); exposure: canary requests served under the change\n({elapsed:.1} s wall clock)",
        scenario.canary.change_at_s
    );
    out
}
