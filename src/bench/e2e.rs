//! `vigil bench e2e`: wall-clock time from the first bad sample handed to
//! the Kafka producer to ROLLBACK readable on gRPC `GetVerdict`, through
//! the dev broker, beside the raw Kafka round trip in the same run.
//!
//! One process holds what `vigil demo` holds: a `DevBroker` (librdkafka's
//! mock cluster behind the dev broker's proxy), the server
//! (`vigil_server::Server` on loopback, with `vigil serve`'s slice length
//! and tick interval unless told otherwise) and its Kafka consumer
//! (`serve::start_kafka`, as `vigil serve --kafka-brokers` runs it). Each
//! run is a new deploy: a service of its own (`payment-0`, `payment-1`...)
//! with the scenario's traffic (`payment-incident` by default: 100 rps, a
//! 10% canary, errors 0.1% -> 15%) and an analysis with the scenario's
//! spec. Its traffic is healthy for `--warmup-secs`, then the canary turns
//! bad. Requests are drawn by `vigil-sim`'s generator and handed to the
//! producer in real time: every `--batch-ms`, the requests that completed
//! since the last batch (time stamps in the past, as a service emits them;
//! OTLP spans once they have ended, as they are stamped with their end),
//! encoded by `produce::encode`.
//!
//! Measured per run (wall clock, epoch seconds, one clock for everything):
//! - `first_bad`: when the first batch holding a canary request after the
//!   change is handed to the producer;
//! - `readable`: when a `GetVerdict` (polled every `--poll-ms`) first
//!   answers ROLLBACK; and when a `WatchVerdicts` stream, opened when the
//!   analysis starts, delivers it.
//!
//! The judge works on completed slices: a slice is complete once a sample
//! of the next slice is in the store (no allowed lateness), and the ticker
//! judges every `tick_interval` when the newest slice moved. So e2e splits
//! into the wait for the slice holding the bad data to end (stream time:
//! the report's `decided_at` minus `first_bad`, set by where in its slice
//! the change falls, plus whole slices when one is not yet enough
//! evidence) and what follows the slice end (Kafka delivery of the sample
//! that completes the slice, the wait for the next tick, the tick, the
//! publish and the read). Over the runs the change falls at evenly spread
//! points of its slice (`(i + 0.5) / runs` of the way in), and the runs
//! overlap, about half a slice apart (see [`schedule`]), so that five runs
//! take about a minute. The ticker's phase against the slice boundaries is
//! set when the server starts, so it is one draw per process: the tick
//! wait inside "after the slice end" is nearly the same in every run.
//!
//! Baseline: a plain rdkafka `StreamConsumer` in its own group on the same
//! topic receives every message of the run; each carries its send time in
//! a header, so the transport's own latency (producer -> broker ->
//! consumer) is measured over the same messages.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use vigil_core::store::StoreConfig;
use vigil_core::ServiceName;
use vigil_ingest::dev::DevBroker;
use vigil_ingest::IngestConfig;
use vigil_proto::v1::vigil_service_client::VigilServiceClient;
use vigil_proto::v1::{GetVerdictRequest, Verdict, WatchVerdictsRequest};
use vigil_server::{Config, Handle, Server};
use vigil_sim::generate::event_rng;
use vigil_sim::{Arm, Generator, Names, RequestEvent, Scenario, STREAM_START};

use super::ingest::AssignedAt;
use crate::produce::{self, wall_now, WireFormat};

/// The header carrying a message's send time (epoch seconds, text).
const SENT_HEADER: &str = "vigil-bench-sent";
/// Partitions of the dev broker's topics (`vigil dev-broker`'s default).
const PARTITIONS: i32 = 3;
/// How long the consumers may take to get their partitions.
const READY_LIMIT: Duration = Duration::from_secs(60);

fn default_tick_ms() -> u64 {
    Config::default().tick_interval.as_millis() as u64
}

fn default_grace_ms() -> u64 {
    Config::default().slice_grace.as_millis() as u64
}

/// Options of `vigil bench e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Deploys that go bad, each a service and analysis of its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// A built-in scenario (`vigil simulate --list`): traffic, the bad
    /// canary's behaviour and the analysis spec. Its `change_at_s` and
    /// `duration_s` are replaced by the bench's schedule.
    #[arg(long, default_value = "payment-incident")]
    scenario: String,
    /// A scenario file (TOML, as `vigil simulate` reads) instead.
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    /// Requests per second of each deploy, both arms together (default:
    /// the scenario's).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of healthy traffic of each deploy before its canary turns bad.
    #[arg(long, default_value_t = 10.0)]
    warmup_secs: f64,
    /// The store's slice length, seconds (`vigil serve`'s default).
    #[arg(long, default_value_t = StoreConfig::default().slice_secs)]
    slice_secs: u32,
    /// The judge's tick interval, ms (`vigil serve`'s default).
    #[arg(long, default_value_t = default_tick_ms())]
    tick_ms: u64,
    /// How long a slice the stream just left still waits for late samples
    /// before it is judged, ms (`vigil serve`'s `slice_grace`, default 2 s):
    /// most of what follows the deciding slice's end.
    #[arg(long, default_value_t = default_grace_ms())]
    slice_grace_ms: u64,
    /// The producer hands over the requests completed since its last batch
    /// every this many ms.
    #[arg(long, default_value_t = 100)]
    batch_ms: u64,
    /// `GetVerdict` polling interval, ms.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// librdkafka's `fetch.wait.max.ms` for both consumers (default:
    /// librdkafka's, 500, as `vigil serve` runs). The mock cluster answers
    /// a fetch that finds no data only after this wait, even when data
    /// arrives meanwhile (a real broker answers then), so it bounds the
    /// round trip here.
    #[arg(long)]
    fetch_wait_ms: Option<u32>,
    /// Wire format (and so topic) of the traffic.
    #[arg(long, value_enum, default_value = "samples")]
    format: WireFormat,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Give up on a run this many seconds after its change.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Median, 90th percentile (nearest rank) and maximum, ms.
#[derive(Debug, Clone, Copy, Serialize)]
struct Summary {
    median: f64,
    p90: f64,
    max: f64,
}

impl Summary {
    fn of(values: &[f64]) -> Summary {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1;
            v.get(i).copied().unwrap_or(f64::NAN)
        };
        Summary {
            median: rank(0.5),
            p90: rank(0.9),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// One deploy that went bad.
#[derive(Debug, Clone, Serialize)]
struct RunReport {
    run: u32,
    service: String,
    /// Where in its slice the change falls, as a fraction of the slice.
    change_phase: f64,
    /// First bad sample handed to the producer -> ROLLBACK read, ms.
    e2e_ms: f64,
    /// First bad sample -> end of the slice that decided (stream time), ms.
    slice_wait_ms: f64,
    /// End of the slice that decided -> ROLLBACK read, ms.
    after_slice_ms: f64,
    /// First bad sample -> ROLLBACK received on a `WatchVerdicts` stream
    /// opened when the analysis started, ms.
    watch_e2e_ms: f64,
    /// Slices holding bad data that were judged before ROLLBACK.
    slices: u32,
    /// Canary requests the producer handed over after the change, up to
    /// the ROLLBACK read.
    bad_canary_requests: u64,
}

/// What `vigil bench e2e` measured.
#[derive(Debug, Serialize)]
struct Report {
    scenario: String,
    format: String,
    runs: u32,
    rps: f64,
    canary_fraction: f64,
    slice_secs: u32,
    tick_ms: u64,
    slice_grace_ms: u64,
    batch_ms: u64,
    poll_ms: u64,
    /// `fetch.wait.max.ms` of both consumers (null: librdkafka's default).
    fetch_wait_ms: Option<u32>,
    warmup_secs: f64,
    e2e_ms: Summary,
    slice_wait_ms: Summary,
    after_slice_ms: Summary,
    watch_e2e_ms: Summary,
    /// Raw rdkafka consumer: send -> receive of every message of the run.
    kafka_round_trip_ms: Summary,
    kafka_messages: u64,
    /// Median after_slice_ms / median kafka_round_trip_ms.
    after_slice_over_kafka: f64,
    wall_seconds: f64,
    per_run: Vec<RunReport>,
}

/// Runs the benchmark.
pub fn run(args: &E2eArgs) -> anyhow::Result<()> {
    let scenario = scenario(args)?;
    anyhow::ensure!(
        args.warmup_secs.is_finite() && args.warmup_secs >= 0.0,
        "--warmup-secs must be a number >= 0"
    );
    anyhow::ensure!(
        args.slice_secs > 0 && args.tick_ms > 0 && args.batch_ms > 0 && args.poll_ms > 0,
        "--slice-secs, --tick-ms, --batch-ms and --poll-ms must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args, &scenario))?;
    if args.json {
        super::print_json(&report)
    } else {
        print_table(&report);
        Ok(())
    }
}

/// The scenario the options name, with `--rate` applied.
fn scenario(args: &E2eArgs) -> anyhow::Result<Scenario> {
    let mut scenario = match &args.scenario_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Scenario::parse(&text).with_context(|| format!("scenario {}", path.display()))?
        }
        None => vigil_sim::builtin(&args.scenario)
            .with_context(|| {
                format!(
                    "no built-in scenario `{}` (see `vigil simulate --list`)",
                    args.scenario
                )
            })?
            .scenario()
            .with_context(|| format!("built-in scenario `{}`", args.scenario))?,
    };
    if let Some(rate) = args.rate {
        scenario.rps = rate;
    }
    scenario
        .validate()
        .context("the scenario does not fit the bench's options")?;
    anyhow::ensure!(
        scenario.analysis.baseline_version.is_some(),
        "the scenario's analysis needs a baseline version"
    );
    Ok(scenario)
}

fn print_table(r: &Report) {
    println!(
        "e2e: first bad sample handed to Kafka -> ROLLBACK readable on gRPC GetVerdict ({} runs)",
        r.runs
    );
    println!(
        "  {} at {} rps ({:.0}% canary), {} format, dev broker (mock cluster); slice {} s, tick {} ms, \
         slice grace {} ms,",
        r.scenario,
        r.rps,
        r.canary_fraction * 100.0,
        r.format,
        r.slice_secs,
        r.tick_ms,
        r.slice_grace_ms
    );
    println!(
        "  producer batches every {} ms, GetVerdict polled every {} ms, {} s of healthy traffic first,",
        r.batch_ms, r.poll_ms, r.warmup_secs
    );
    println!(
        "  consumers' fetch.wait.max.ms {}",
        r.fetch_wait_ms.map_or_else(
            || "500 (librdkafka's default)".to_owned(),
            |w| w.to_string()
        )
    );
    println!("                                                  median       p90       max");
    let row = |name: &str, s: &Summary| {
        println!(
            "  {name:<44} {:>8.0} ms {:>6.0} ms {:>6.0} ms",
            s.median, s.p90, s.max
        );
    };
    row("e2e: first bad sample -> ROLLBACK read", &r.e2e_ms);
    row(
        "  waiting for the bad data's slice to end",
        &r.slice_wait_ms,
    );
    row(
        "  after the slice end (Kafka, tick, read)",
        &r.after_slice_ms,
    );
    row("e2e with WatchVerdicts instead of polling", &r.watch_e2e_ms);
    println!(
        "  {:<44} {:>8.1} ms {:>6.1} ms {:>6.1} ms  ({} messages)",
        "Kafka round trip (raw rdkafka consumer)",
        r.kafka_round_trip_ms.median,
        r.kafka_round_trip_ms.p90,
        r.kafka_round_trip_ms.max,
        r.kafka_messages
    );
    println!(
        "  after the slice end / Kafka round trip (medians): {:.1}",
        r.after_slice_over_kafka
    );
    println!("  run  change at  slices    e2e ms   wait ms  after ms  bad canary requests");
    for run in &r.per_run {
        println!(
            "  {:>3}  {:>8.0}%  {:>6}  {:>8.0}  {:>8.0}  {:>8.0}  {:>19}",
            run.run,
            run.change_phase * 100.0,
            run.slices,
            run.e2e_ms,
            run.slice_wait_ms,
            run.after_slice_ms,
            run.bad_canary_requests
        );
    }
    println!("  ({:.0} s wall clock in all)", r.wall_seconds);
}

/// Sleeps until wall-clock `at` (epoch seconds).
async fn sleep_until_wall(at: f64) {
    let wait = at - wall_now();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

/// One deploy's schedule: traffic from `origin`, bad from `change`.
struct Deploy {
    run: u32,
    scenario: Scenario,
    names: Names,
    origin: f64,
    change: f64,
    phase: f64,
}

/// What a deploy's producer shares with its watcher.
#[derive(Default)]
struct Progress {
    /// When the first bad sample was handed over.
    first_bad: OnceLock<f64>,
    /// Bad canary requests handed over so far.
    bad_canary: std::sync::atomic::AtomicU64,
}

async fn measure(args: &E2eArgs, base: &Scenario) -> anyhow::Result<Report> {
    let wall_start = Instant::now();
    let broker = DevBroker::start(0, PARTITIONS)
        .await
        .context("cannot start the mock cluster")?;
    let brokers = broker.bootstrap_servers();

    let mut config = Config {
        grpc_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        kafka_brokers: vec![brokers.clone()],
        tick_interval: Duration::from_millis(args.tick_ms),
        slice_grace: Duration::from_millis(args.slice_grace_ms),
        ..Config::default()
    };
    config.store.slice_secs = args.slice_secs;
    config.validate()?;
    let server = Server::bind(config).context("cannot bind the API ports")?;
    let grpc = server.grpc_addr();
    let handle = server.handle();
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    let server_task = tokio::spawn(server.run(async move { server_stop.cancelled().await }));
    let ingest_metrics = crate::serve::ingest_metrics(&handle)?;
    let vigil_ready = ingest_metrics.ready_flag();
    let mut ingest = IngestConfig::new(&brokers);
    let mut raw_config = ClientConfig::new();
    raw_config
        .set("bootstrap.servers", &brokers)
        .set("group.id", "vigil-bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    if let Some(wait) = args.fetch_wait_ms {
        let wait = wait.to_string();
        ingest
            .client_properties
            .push(("fetch.wait.max.ms".to_owned(), wait.clone()));
        raw_config.set("fetch.wait.max.ms", wait);
    }
    let consumer_task = crate::serve::start_kafka_with(&handle, ingest, ingest_metrics);
    let raw: Arc<StreamConsumer<AssignedAt>> = Arc::new(
        raw_config
            .create_with_context(AssignedAt::default())
            .context("cannot create the raw consumer")?,
    );
    raw.subscribe(&[args.format.topic()])?;
    let raw_task = tokio::spawn(round_trips(raw.clone(), stop.child_token()));

    let outcome = async {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let raw_assigned = raw.context().0.lock().map(|a| a.is_some()).unwrap_or(false);
            if raw_assigned && vigil_ready.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the consumers got no partitions within {} s",
                READY_LIMIT.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = VigilServiceClient::connect(format!("http://{grpc}"))
            .await
            .context("cannot connect to the gRPC API")?;
        let producer = produce::producer(&brokers)?;
        let deploys = schedule(args, base, wall_now())?;
        let tasks: Vec<_> = deploys
            .into_iter()
            .map(|d| {
                let (handle, client, producer) = (handle.clone(), client.clone(), producer.clone());
                let options = RunOptions::of(args);
                tokio::spawn(async move { run_deploy(d, options, handle, client, producer).await })
            })
            .collect();
        let mut runs = Vec::new();
        let mut tasks = tasks.into_iter();
        while let Some(task) = tasks.next() {
            match task.await.context("a run's task failed").and_then(|r| r) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    // Their traffic stops with them.
                    tasks.for_each(|t| t.abort());
                    return Err(e);
                }
            }
        }
        anyhow::Ok(runs)
    }
    .await;

    stop.cancel();
    handle.shutdown();
    let round_trips = raw_task.await.context("the raw consumer's task failed")?;
    drop(raw);
    match consumer_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("vigil bench e2e: consumer: {e}"),
        Err(e) => eprintln!("vigil bench e2e: consumer task: {e}"),
    }
    match server_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("vigil bench e2e: server: {e}"),
        Err(e) => eprintln!("vigil bench e2e: server task: {e}"),
    }
    broker.shutdown().await;
    let runs = outcome?;
    let round_trips = round_trips?;

    let column = |f: fn(&RunReport) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let ms = |us: u64| us as f64 / 1000.0;
    let kafka = Summary {
        median: ms(round_trips.value_at_quantile(0.5)),
        p90: ms(round_trips.value_at_quantile(0.9)),
        max: ms(round_trips.max()),
    };
    let after_slice = Summary::of(&column(|r| r.after_slice_ms));
    Ok(Report {
        scenario: base.name.clone(),
        format: args.format.topic().to_owned(),
        runs: args.runs,
        rps: base.rps,
        canary_fraction: base.canary_fraction,
        slice_secs: args.slice_secs,
        tick_ms: args.tick_ms,
        slice_grace_ms: args.slice_grace_ms,
        batch_ms: args.batch_ms,
        poll_ms: args.poll_ms,
        fetch_wait_ms: args.fetch_wait_ms,
        warmup_secs: args.warmup_secs,
        e2e_ms: Summary::of(&column(|r| r.e2e_ms)),
        slice_wait_ms: Summary::of(&column(|r| r.slice_wait_ms)),
        after_slice_ms: after_slice,
        watch_e2e_ms: Summary::of(&column(|r| r.watch_e2e_ms)),
        kafka_round_trip_ms: kafka,
        kafka_messages: round_trips.len(),
        after_slice_over_kafka: after_slice.median / kafka.median,
        wall_seconds: wall_start.elapsed().as_secs_f64(),
        per_run: runs,
    })
}

/// Every deploy's schedule: run `r`'s change falls `(0.5 + r k) / runs`
/// slices after run 0's slice start, with `k` the smallest step of at least
/// half the runs that is coprime with them, so that the changes are about
/// half a slice apart and their phases in the slice cover `(i + 0.5) /
/// runs` for every `i`; run 0's slice is the first whose change comes after
/// `now + warmup`.
fn schedule(args: &E2eArgs, base: &Scenario, now: f64) -> anyhow::Result<Vec<Deploy>> {
    let slice = f64::from(args.slice_secs);
    let n = f64::from(args.runs);
    let k = (args.runs.div_ceil(2)..=args.runs)
        .find(|&k| gcd(k, args.runs) == 1)
        .unwrap_or(1);
    let offset = |r: u32| (0.5 + f64::from(r) * f64::from(k)) / n;
    let first_slice = ((now + args.warmup_secs) / slice - offset(0)).ceil();
    (0..args.runs)
        .map(|r| {
            let change = (first_slice + offset(r)) * slice;
            let mut scenario = base.clone();
            let service = format!("{}-{r}", base.analysis.service);
            scenario.analysis.service = ServiceName::new(&service)?;
            scenario.canary.change_at_s = args.warmup_secs;
            scenario.duration_s = args.warmup_secs + args.timeout_secs as f64 + 2.0 * slice;
            scenario
                .validate()
                .with_context(|| format!("scenario of run {r}"))?;
            let names = Names::new(&scenario)?;
            Ok(Deploy {
                run: r,
                scenario,
                names,
                origin: change - args.warmup_secs,
                change,
                phase: offset(r).fract(),
            })
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The options a run needs (copied out of the arguments for its task).
#[derive(Debug, Clone, Copy)]
struct RunOptions {
    seed: u64,
    format: WireFormat,
    batch: f64,
    poll: Duration,
    timeout: Duration,
    slice: f64,
}

impl RunOptions {
    fn of(args: &E2eArgs) -> Self {
        Self {
            seed: args.seed,
            format: args.format,
            batch: args.batch_ms as f64 / 1000.0,
            poll: Duration::from_millis(args.poll_ms),
            timeout: Duration::from_secs(args.timeout_secs),
            slice: f64::from(args.slice_secs),
        }
    }
}

/// One deploy: its analysis, its traffic, and the watch for ROLLBACK.
async fn run_deploy(
    deploy: Deploy,
    options: RunOptions,
    handle: Handle,
    mut client: VigilServiceClient<tonic::transport::Channel>,
    producer: FutureProducer,
) -> anyhow::Result<RunReport> {
    sleep_until_wall(deploy.origin).await;
    let id = format!("bench-e2e-{}", deploy.run);
    handle
        .vigil()
        .create_from(
            Some(id.clone()),
            deploy.scenario.analysis.clone(),
            "bench",
            wall_now(),
        )
        .with_context(|| format!("cannot start the analysis of run {}", deploy.run))?;
    let mut watch = client
        .watch_verdicts(WatchVerdictsRequest {
            analysis_id: id.clone(),
            service: String::new(),
        })
        .await
        .context("WatchVerdicts failed")?
        .into_inner();
    let watcher = tokio::spawn(async move {
        while let Some(report) = watch.message().await? {
            if report.verdict() == Verdict::Rollback {
                return Ok(Some(wall_now()));
            }
        }
        Ok::<_, tonic::Status>(None)
    });
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let traffic = tokio::spawn(produce_traffic(
        deploy.scenario.clone(),
        deploy.names.clone(),
        (deploy.run, deploy.origin, deploy.change),
        options,
        producer,
        progress.clone(),
        stop.clone(),
    ));
    let _stop_traffic = stop.clone().drop_guard();

    sleep_until_wall(deploy.change).await;
    let deadline = Instant::now() + options.timeout;
    let (report, readable) = loop {
        // The deadline first: a loop held up past it (a slow call, a busy
        // machine) may find the traffic ended on schedule, which is no
        // failure of the producer's.
        anyhow::ensure!(
            Instant::now() < deadline,
            "run {}: no ROLLBACK within {} s of the change",
            deploy.run,
            options.timeout.as_secs()
        );
        if traffic.is_finished() {
            // The traffic outlasts the timeout, so a producer that ended
            // before it failed: its error says why.
            traffic.await.context("the producer's task failed")??;
            bail!("run {}: the producer stopped", deploy.run);
        }
        let report = client
            .get_verdict(GetVerdictRequest {
                analysis_id: id.clone(),
            })
            .await
            .context("GetVerdict failed")?
            .into_inner();
        let readable = wall_now();
        match report.verdict() {
            Verdict::Rollback => break (report, readable),
            Verdict::Promote | Verdict::Inconclusive => bail!(
                "run {}: {} instead of ROLLBACK: {}",
                deploy.run,
                report.verdict().as_str_name(),
                report.reason
            ),
            _ => {}
        }
        tokio::time::sleep(options.poll).await;
    };
    stop.cancel();
    traffic.await.context("the producer's task failed")??;
    let watched = tokio::time::timeout(options.timeout, watcher)
        .await
        .with_context(|| format!("run {}: WatchVerdicts sent no ROLLBACK", deploy.run))?
        .context("the watcher's task failed")?
        .context("WatchVerdicts failed")?
        .with_context(|| format!("run {}: WatchVerdicts ended before ROLLBACK", deploy.run))?;
    let first_bad = *progress.first_bad.get().with_context(|| {
        format!(
            "run {}: ROLLBACK before any bad sample was produced: {}",
            deploy.run, report.reason
        )
    })?;
    let decided_at = report
        .decided_at
        .context("a ROLLBACK report without decided_at")?;
    anyhow::ensure!(
        decided_at > deploy.change,
        "run {}: rolled back at stream time {decided_at}, before the change at {}: {}",
        deploy.run,
        deploy.change,
        report.reason
    );
    let bad_slice_start = (first_bad / options.slice).floor() * options.slice;
    Ok(RunReport {
        run: deploy.run,
        service: deploy.scenario.analysis.service.to_string(),
        change_phase: deploy.phase,
        e2e_ms: (readable - first_bad) * 1000.0,
        slice_wait_ms: (decided_at - first_bad) * 1000.0,
        after_slice_ms: (readable - decided_at) * 1000.0,
        watch_e2e_ms: (watched - first_bad) * 1000.0,
        slices: ((decided_at - bad_slice_start) / options.slice).round() as u32,
        bad_canary_requests: progress
            .bad_canary
            .load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Hands one deploy's requests to the producer in real time, every
/// `options.batch` seconds those that completed since the previous batch,
/// until `stop` or the scenario's end.
async fn produce_traffic(
    scenario: Scenario,
    names: Names,
    (run, origin, change): (u32, f64, f64),
    options: RunOptions,
    producer: FutureProducer,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let topic = options.format.topic();
    let mut generator = Generator::new(&scenario, options.seed, u64::from(run), 1);
    let mut events_rng = event_rng(options.seed, u64::from(run));
    let mut ids = ChaCha8Rng::seed_from_u64(options.seed ^ u64::from(run) ^ 0xe2e);
    let shift = origin - STREAM_START;
    let mut drawn_until = origin;
    // Requests drawn and not yet handed over, by the time they are done.
    let mut queue: Vec<RequestEvent> = Vec::new();
    let done = |e: &RequestEvent| match options.format {
        // A span is exported once it has ended, and stamped with its end.
        WireFormat::Otlp => e.ts + e.latency_ms / 1000.0,
        WireFormat::Samples | WireFormat::Events => e.ts,
    };
    let mut batch_end = origin + options.batch;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = sleep_until_wall(batch_end) => {}
        }
        let mut drew = false;
        while drawn_until <= batch_end {
            let Some(draw) = generator.next_slice() else {
                break;
            };
            let events = generator.expand_events(&draw, &mut events_rng);
            queue.extend(events.into_iter().map(|mut e| {
                e.ts += shift;
                e
            }));
            drawn_until += generator.slice_secs();
            drew = true;
        }
        if queue.is_empty() && drawn_until <= batch_end {
            return Ok(());
        }
        if drew {
            queue.sort_by(|a, b| done(a).total_cmp(&done(b)));
        }
        let due = queue.partition_point(|e| done(e) <= batch_end);
        let batch: Vec<RequestEvent> = queue.drain(..due).collect();
        batch_end += options.batch;
        if batch.is_empty() {
            continue;
        }
        let bad = batch
            .iter()
            .filter(|e| e.arm == Arm::Canary && e.ts >= change)
            .count() as u64;
        let messages = produce::encode(options.format, &batch, &names, &mut ids)?;
        let sent = wall_now();
        if bad > 0 {
            progress.first_bad.get_or_init(|| sent);
            progress
                .bad_canary
                .fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
        }
        let sent_text = sent.to_string();
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, payload) in &messages {
            let headers = OwnedHeaders::new().insert(Header {
                key: SENT_HEADER,
                value: Some(&sent_text),
            });
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .with_context(|| format!("cannot produce to {topic}"))?,
            );
        }
        for delivery in deliveries {
            delivery
                .await
                .context("the producer went away")?
                .map_err(|(e, _)| e)
                .with_context(|| format!("producing to {topic}"))?;
        }
    }
}

/// The raw consumer: the send -> receive time of every message carrying
/// [`SENT_HEADER`], in microseconds, until `stop`.
async fn round_trips(
    consumer: Arc<StreamConsumer<AssignedAt>>,
    stop: CancellationToken,
) -> anyhow::Result<Histogram<u64>> {
    let mut times = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return Ok(times),
            m = consumer.recv() => m.context("the raw consumer failed")?,
        };
        let received = wall_now();
        let sent = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == SENT_HEADER)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<f64>().ok())
        });
        if let Some(sent) = sent {
            times.saturating_record(((received - sent) * 1e6).max(1.0) as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_ranks_are_nearest_rank() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((s.median, s.p90, s.max), (3.0, 5.0, 5.0));
        let s = Summary::of(&(1..=10).map(f64::from).collect::<Vec<_>>());
        assert_eq!((s.median, s.p90, s.max), (5.0, 9.0, 10.0));
    }
}
