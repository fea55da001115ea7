//! `vigil demo`: Vigil's main job in one process with nothing installed.
//!
//! An embedded Kafka-protocol broker (librdkafka's mock cluster), two
//! producers writing `vigil-sim` traffic (`checkout` v1 -> v2, a healthy
//! canary; `payment` v7 -> v8, whose error rate jumps from 0.1% to 15% two
//! minutes in), the Kafka consumer, the store, the judge and the gRPC/HTTP
//! APIs, with a live view of both analyses. It ends by itself once both
//! have a terminal verdict, prints the reasons and exits 0.
//!
//! The scenarios are `examples/demo/*.toml`, compiled in so that the demo
//! needs no file; `vigil simulate --scenario-file examples/demo/payment.toml`
//! shows how the same traffic is judged over many seeded runs.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;
use vigil_core::{MetricResult, Verdict, VerdictReport};
use vigil_ingest::dev::DevBroker;
use vigil_server::registry::Entry;
use vigil_server::{Config, Server};
use vigil_sim::Scenario;

use crate::produce::{self, Feed, ProduceStats, WireFormat};

/// How often plain output repeats an unchanged view.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The demo's two services.
const SCENARIOS: [(&str, &str); 2] = [
    ("checkout", include_str!("../examples/demo/checkout.toml")),
    ("payment", include_str!("../examples/demo/payment.toml")),
];

/// `vigil demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stream seconds per wall-clock second.
    #[arg(long, default_value_t = 3.0)]
    speed: f64,
    /// Wire format the producers use (and so the topic).
    #[arg(long, value_enum, default_value = "samples")]
    format: WireFormat,
    /// Give up (exit 1) if both verdicts are not in after this many wall
    /// seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Plain progress lines instead of a redrawn view (the default when
    /// standard output is not a terminal).
    #[arg(long)]
    plain: bool,
}

/// One service of the demo: its traffic, analysis and counters.
struct Service {
    scenario: Scenario,
    entry: Arc<Entry>,
    stats: Arc<ProduceStats>,
}

/// Runs `vigil demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number, got {}", args.speed);
    }
    let scenarios = SCENARIOS
        .iter()
        .map(|(name, text)| Scenario::parse(text).with_context(|| format!("demo scenario {name}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args, scenarios))
}

async fn demo(args: &DemoArgs, scenarios: Vec<Scenario>) -> anyhow::Result<()> {
    let broker = DevBroker::start(0, 3)
        .await
        .context("starting the embedded Kafka broker")?;
    let brokers = broker.bootstrap_servers();

    let config = Config {
        grpc_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        kafka_brokers: vec![brokers.clone()],
        ..Config::default()
    };
    let server = Server::bind(config).context("binding the API ports")?;
    let (grpc, http) = (server.grpc_addr(), server.http_addr());
    let handle = server.handle();
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server_task = tokio::spawn(server.run(async move { server_stop.cancelled().await }));

    let consumer_task =
        crate::serve::start_kafka(&handle, &brokers, crate::serve::ingest_metrics(&handle)?);

    let origin = produce::wall_now();
    let producer = produce::producer(&brokers)?;
    let mut services = Vec::new();
    let mut producers = Vec::new();
    for scenario in scenarios {
        let spec = scenario.analysis.clone();
        let id = format!("{}-{}", spec.service, spec.canary_version);
        let entry = handle
            .vigil()
            .create_from(Some(id), spec, "demo", origin)
            .context("starting an analysis")?;
        let stats = Arc::new(ProduceStats::default());
        let feed = Feed::new(&scenario, args.seed, origin, args.speed)?;
        let (producer, stats_, cancel, format) = (
            producer.clone(),
            stats.clone(),
            stop.child_token(),
            args.format,
        );
        producers.push(tokio::spawn(async move {
            feed.run(&producer, format, &cancel, &stats_).await
        }));
        services.push(Service {
            scenario,
            entry,
            stats,
        });
    }

    println!(
        "Vigil demo: Kafka (embedded mock cluster) on {brokers}, gRPC on {grpc}, HTTP on {http}"
    );
    println!(
        "  traffic: {} (healthy canary) and {} (errors 0.1% -> 15% at 2 min), {}x real time",
        services[0].scenario.analysis.service, services[1].scenario.analysis.service, args.speed
    );
    println!(
        "  e: evidence that the canary is worse (an e-value; near 2/alpha = {:.0} rolls back)",
        2.0 / services[1].scenario.analysis.policy.alpha
    );
    println!("  try, while it runs:");
    for s in &services {
        println!(
            "    curl -s http://{http}/v1/analyses/{}/verdict",
            s.entry.id
        );
    }
    println!(
        "    grpcurl -plaintext -d '{{\"analysis_id\": \"{}\"}}' {grpc} vigil.v1.VigilService/GetVerdict",
        services[1].entry.id
    );
    println!();

    let live = !args.plain && std::io::stdout().is_terminal();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_verdicts: Vec<(Verdict, String)> = Vec::new();
    let mut last_print = started;
    let mut drawn = 0usize;
    let outcome = loop {
        let reports: Vec<Arc<VerdictReport>> = services
            .iter()
            .map(|s| s.entry.published().report.clone())
            .collect();
        let lines: Vec<String> = services
            .iter()
            .zip(&reports)
            .flat_map(|(s, r)| view(s, r, handle.vigil().stream_now(), origin))
            .collect();
        let verdicts: Vec<(Verdict, String)> = reports
            .iter()
            .map(|r| (r.verdict, r.reason.clone()))
            .collect();
        if live {
            let mut out = std::io::stdout().lock();
            if drawn > 0 {
                // Back to the top of the previous view, then redraw it.
                write!(out, "\x1b[{drawn}A")?;
            }
            for line in &lines {
                writeln!(out, "\x1b[2K{line}")?;
            }
            out.flush()?;
            drawn = lines.len();
        } else if verdicts != last_verdicts || last_print.elapsed() >= PLAIN_EVERY {
            // Plain output: the view when a verdict or reason changes, and
            // every few seconds as a heartbeat.
            for line in &lines {
                println!("{line}");
            }
            last_print = Instant::now();
        }
        last_verdicts = verdicts;
        if reports.iter().all(|r| r.verdict.is_terminal()) {
            break Ok(reports);
        }
        if producers.iter().any(tokio::task::JoinHandle::is_finished) {
            // The streams outlast the verdicts, so a producer that ended
            // failed: say so (its error follows) rather than wait.
            break Err(anyhow::anyhow!("a producer stopped before the verdicts"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "no terminal verdict for every analysis within {} s",
                args.timeout_secs
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    stop.cancel();
    handle.shutdown();
    for p in producers {
        match p.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("vigil demo: producer: {e:#}"),
            Err(e) => eprintln!("vigil demo: producer task: {e}"),
        }
    }
    match consumer_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("vigil demo: consumer: {e}"),
        Err(e) => eprintln!("vigil demo: consumer task: {e}"),
    }
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("vigil demo: server: {e}"),
        Err(e) => eprintln!("vigil demo: server task: {e}"),
    }
    broker.shutdown().await;

    let reports = outcome?;
    println!();
    println!(
        "Both verdicts are in after {:.0} s ({} s of stream):",
        started.elapsed().as_secs_f64(),
        ((reports
            .iter()
            .filter_map(|r| r.decided_at)
            .fold(origin, f64::max))
            - origin)
            .round()
    );
    for (s, r) in services.iter().zip(&reports) {
        let spec = &s.scenario.analysis;
        println!(
            "  {} {} -> {}: {} at {} ({} canary requests sent): {}",
            spec.service,
            spec.baseline_version
                .as_ref()
                .map_or("(SLO)", |v| v.as_str()),
            spec.canary_version,
            r.verdict.as_str(),
            r.decided_at
                .map_or_else(|| "-".to_owned(), |t| stream_clock(t - origin)),
            s.stats
                .canary_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            r.reason
        );
    }
    Ok(())
}

/// An e-value for people: three significant digits, large ones as powers
/// of ten.
fn e_text(e: Option<f64>) -> String {
    match e {
        None => "-".to_owned(),
        Some(e) if e >= 1e4 => format!("{e:.1e}"),
        Some(e) if e >= 100.0 => format!("{e:.0}"),
        Some(e) => format!("{e:.2}"),
    }
}

/// `+m:ss` of stream time since the demo began.
fn stream_clock(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    format!("+{}:{:02}", secs / 60, secs % 60)
}

/// The aggregate (not per-dimension) results of a report.
fn aggregates(report: &VerdictReport) -> impl Iterator<Item = &MetricResult> {
    report.metrics.iter().filter(|m| m.dimension.is_none())
}

/// Two lines for one analysis: its state and evidence, and its reason.
fn view(s: &Service, r: &VerdictReport, stream_now: f64, origin: f64) -> [String; 2] {
    let spec = &s.scenario.analysis;
    let evidence: Vec<String> = aggregates(r)
        .map(|m| format!("{} e={}", m.name, e_text(m.e_value)))
        .collect();
    let (canary, baseline) = aggregates(r)
        .map(|m| (m.n_canary, m.n_baseline))
        .max()
        .unwrap_or_default();
    let verdict = match r.verdict {
        Verdict::Rollback => "ROLLBACK    ",
        Verdict::Promote => "PROMOTE     ",
        Verdict::Inconclusive => "INCONCLUSIVE",
        Verdict::Continue => "CONTINUE    ",
    };
    let first = format!(
        "{:<9} {} -> {}  stream {}  {verdict}  {}  [{canary} canary / {baseline} baseline samples]",
        spec.service.as_str(),
        spec.baseline_version
            .as_ref()
            .map_or("(SLO)", |v| v.as_str()),
        spec.canary_version,
        stream_clock(stream_now - origin),
        if evidence.is_empty() {
            "waiting for data".to_owned()
        } else {
            evidence.join(", ")
        }
    );
    let reason = if r.reason.is_empty() {
        "          -".to_owned()
    } else {
        format!("          {}", r.reason)
    };
    [first, reason]
}
