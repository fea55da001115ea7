//! `vigil bench api`: GetVerdict with 10,000 live analyses, beside a
//! hello-world tonic server (the gRPC health service) measured in the same
//! run, on the same machine, under the same two loads.
//!
//! Both loads use `CONNECTIONS` HTTP/2 connections to the server:
//!
//! - **saturated** (closed loop): `IN_FLIGHT` calls in flight on each
//!   connection, each sent as soon as the one before it returns. Its calls
//!   per second are the throughput and the ratio. Its latencies are mostly
//!   queueing: at saturation the mean is calls in flight / throughput
//!   (Little's law), whatever the server.
//! - **paced** (open loop): calls sent on a fixed schedule at the offered
//!   rate, round-robin over the connections, whether or not earlier calls
//!   have returned, each timed from its *scheduled* send time, so a late
//!   pacer or a stalled server counts against the latency (no coordinated
//!   omission). The offered rate is one read per live analysis per second
//!   (10,000 calls/s for 10,000 analyses: a controller polling every
//!   analysis each second, ten to sixty times what Argo Rollouts and
//!   Flagger do at their usual intervals), or half the saturated
//!   throughput of the slower of the two servers in the same run if that
//!   is lower, unless `--rate` sets it; the same for both servers. The
//!   latency goal is read here, as a latency SLO is: at a given load below
//!   saturation.
//!
//! Each server runs on its own two-thread runtime, the load generator on
//! another; the paced schedule is kept by the calling thread, which sleeps
//! to each send time and hands the call to the load generator's runtime
//! (tokio's timer has millisecond granularity, a thread sleep ~50 µs).
//! Verdict reads pick analyses at random; the analyses carry real reports
//! (two metrics, ticked over real data), so the response is the size a
//! controller gets.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use vigil_core::{Sample, ServiceName};
use vigil_proto::v1::GetVerdictRequest;
use vigil_server::{Config, Server};

use super::{cpu_between, median, threads_cpu, ThreadCpu};

/// What the load generator reads of GetVerdict's answer: the analysis it
/// is about and its verdict, checked, with the per-metric results left
/// as bytes. A rollout controller reads as little (Argo Rollouts' web
/// provider takes `$.verdict`). Decoding the whole report (a dozen strings
/// and their allocations per call) made the load generator, which shares
/// the two cores with the server under test, spend more per call on
/// vigil's answers than on hello world's; the tags are the
/// `VerdictReport`'s, so the server's bytes are unchanged.
#[derive(Clone, PartialEq, prost::Message)]
struct VerdictHead {
    #[prost(bytes = "bytes", tag = "1")]
    analysis_id: bytes::Bytes,
    #[prost(enumeration = "vigil_proto::v1::Verdict", tag = "2")]
    verdict: i32,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    metrics: Vec<bytes::Bytes>,
}

/// GetVerdict of `ids[at]` on `channel`, read as a [`VerdictHead`]:
/// whether it answered for that analysis with a verdict and its metrics.
async fn read_verdict(channel: Channel, ids: Arc<Vec<String>>, at: usize) -> bool {
    let id = &ids[at];
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return false;
    }
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/vigil.v1.VigilService/GetVerdict");
    let codec = tonic_prost::ProstCodec::<GetVerdictRequest, VerdictHead>::default();
    let request = tonic::Request::new(GetVerdictRequest {
        analysis_id: id.clone(),
    });
    grpc.unary(request, path, codec).await.is_ok_and(|r| {
        let head = r.get_ref();
        head.analysis_id == id.as_bytes()
            && head.verdict != vigil_proto::v1::Verdict::Unspecified as i32
            && !head.metrics.is_empty()
    })
}

/// Live analyses (default).
pub const ANALYSES: u32 = 10_000;
/// Services they are spread over.
const SERVICES: usize = 100;
/// HTTP/2 connections of the load generator.
pub const CONNECTIONS: usize = 32;
/// Calls in flight per connection in the saturated load.
pub const IN_FLIGHT: usize = 4;
/// The paced load's offered rate is at most this share of the saturated
/// throughput of the slower of the two servers.
pub const OFFERED_SHARE: f64 = 0.5;
/// Reads per live analysis per second in the paced load.
pub const READS_PER_ANALYSIS: f64 = 1.0;
/// How long the last paced calls may take to return.
const DRAIN: Duration = Duration::from_secs(30);
/// Latencies are recorded in microseconds up to one minute.
const MAX_US: u64 = 60_000_000;

/// Options of `vigil bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Live analyses.
    #[arg(long, default_value_t = ANALYSES, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    analyses: u32,
    /// Seconds of each load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Seconds measured of each load.
    #[arg(long, default_value_t = 5.0)]
    measure_secs: f64,
    /// Offered rate of the paced load, calls per second (default: one read
    /// per analysis per second, at most half the slower server's saturated
    /// throughput in this run).
    #[arg(long)]
    rate: Option<f64>,
    /// Rounds of the four loads (each server saturated, then each paced),
    /// the order of the two servers alternating from round to round; the
    /// figures reported are the medians over the rounds, beside each round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// How long a load runs.
#[derive(Debug, Clone, Copy)]
struct Timing {
    warmup: Duration,
    measure: Duration,
}

/// One measured load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    /// Calls per second completed in the measured window (paced: calls
    /// scheduled in it, per second of it).
    pub qps: f64,
    /// Calls measured.
    pub calls: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed calls.
    pub errors: u64,
    /// Calls sent in all, warm-up included (what the CPU time covers).
    pub sent: u64,
}

/// The report of `vigil bench api --json`. On a shared machine one load's
/// figures move with whatever else runs in those seconds, so the bench runs
/// `--rounds` rounds, alternating which server goes first; the top-level
/// figures (`Figures`, flattened) are the medians over the rounds, each
/// taken on its own (the median ratio is not the ratio of the median
/// rates), and every round is in `rounds`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Medians over the rounds.
    #[serde(flatten)]
    pub median: Figures,
    /// The lowest and highest round ratio.
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// GetVerdict p99 at the paced load (the latency goal), ms: the median
    /// `paced_vigil_p99_ms`.
    pub p99_ms: f64,
    /// The highest round's GetVerdict p99 at the paced load, ms.
    pub p99_ms_max: f64,
    /// Live analyses.
    pub analyses: usize,
    /// Offered rate of the paced load, calls per second, both servers,
    /// every round (chosen after the first round's saturated loads).
    pub offered_qps: f64,
    /// How the offered rate was chosen.
    pub offered_rule: String,
    /// GetVerdict calls measured at the paced load, per round.
    pub paced_vigil_calls: u64,
    /// Hello-world calls measured at the paced load, per round.
    pub paced_baseline_calls: u64,
    /// Bytes of one verdict on the wire.
    pub verdict_bytes: usize,
    /// Server-side work of one read besides gRPC and HTTP/2: look up,
    /// load the published verdict, copy its encoded bytes, µs (one
    /// thread, no load).
    pub read_us: f64,
    /// The same for the first read of each verdict after it was
    /// published, which also builds its encoded form, µs.
    pub first_read_us: f64,
    /// Connections of both loads.
    pub connections: usize,
    /// Calls in flight per connection, saturated.
    pub in_flight: usize,
    /// Seconds of each load before measuring.
    pub warmup_seconds: f64,
    /// Seconds measured per load.
    pub seconds: f64,
    /// Every round.
    pub rounds: Vec<Round>,
}

/// One round: both servers saturated, then both paced, in the same order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    /// Whether vigil's loads ran before hello world's in this round.
    pub vigil_first: bool,
    #[serde(flatten)]
    pub figures: Figures,
}

/// What a round measured (in the report: the medians over the rounds).
/// CPU figures are per call sent, µs, `null` where
/// /proc/self/task/*/schedstat is not readable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    /// GetVerdict calls per second, saturated.
    pub vigil_qps: f64,
    /// Health/Check calls per second of the hello-world server, saturated.
    pub baseline_qps: f64,
    /// vigil_qps / baseline_qps.
    pub ratio: f64,
    /// GetVerdict p50 and p99 at the paced load, ms.
    pub paced_vigil_p50_ms: f64,
    pub paced_vigil_p99_ms: f64,
    /// Hello-world p50 and p99 at the paced load, ms.
    pub paced_baseline_p50_ms: f64,
    pub paced_baseline_p99_ms: f64,
    /// p99 of how late the pacer sent a call (part of every paced
    /// latency above), ms, over both servers' loads.
    pub pacer_late_p99_ms: f64,
    /// CPU of vigil's server threads per paced call.
    pub paced_vigil_server_cpu_us: Option<f64>,
    /// The same for the hello-world server's threads.
    pub paced_baseline_server_cpu_us: Option<f64>,
    /// CPU of the load generator's threads per paced call to vigil: it
    /// shares the machine's cores with the servers, and a verdict costs it
    /// more to receive than a health check (it decodes only the id and the
    /// verdict: `VerdictHead`).
    pub paced_vigil_client_cpu_us: Option<f64>,
    /// The same for the calls to hello world.
    pub paced_baseline_client_cpu_us: Option<f64>,
    /// GetVerdict p50 and p99 saturated, ms.
    pub saturated_vigil_p50_ms: f64,
    pub saturated_vigil_p99_ms: f64,
    /// Hello-world p50 and p99 saturated, ms.
    pub saturated_baseline_p50_ms: f64,
    pub saturated_baseline_p99_ms: f64,
    /// CPU of the servers' and the load generator's threads per saturated
    /// call.
    pub saturated_vigil_server_cpu_us: Option<f64>,
    pub saturated_baseline_server_cpu_us: Option<f64>,
    pub saturated_vigil_client_cpu_us: Option<f64>,
    pub saturated_baseline_client_cpu_us: Option<f64>,
}

impl Figures {
    /// Each figure's median over `rounds` (rates rounded to a call).
    fn median_of(rounds: &[Round]) -> Self {
        let of = |f: fn(&Figures) -> f64| median(rounds.iter().map(|r| f(&r.figures)).collect());
        let known =
            |f: fn(&Figures) -> Option<f64>| median_known(rounds.iter().map(|r| f(&r.figures)));
        Self {
            vigil_qps: of(|f| f.vigil_qps).round(),
            baseline_qps: of(|f| f.baseline_qps).round(),
            ratio: of(|f| f.ratio),
            paced_vigil_p50_ms: of(|f| f.paced_vigil_p50_ms),
            paced_vigil_p99_ms: of(|f| f.paced_vigil_p99_ms),
            paced_baseline_p50_ms: of(|f| f.paced_baseline_p50_ms),
            paced_baseline_p99_ms: of(|f| f.paced_baseline_p99_ms),
            pacer_late_p99_ms: of(|f| f.pacer_late_p99_ms),
            paced_vigil_server_cpu_us: known(|f| f.paced_vigil_server_cpu_us),
            paced_baseline_server_cpu_us: known(|f| f.paced_baseline_server_cpu_us),
            paced_vigil_client_cpu_us: known(|f| f.paced_vigil_client_cpu_us),
            paced_baseline_client_cpu_us: known(|f| f.paced_baseline_client_cpu_us),
            saturated_vigil_p50_ms: of(|f| f.saturated_vigil_p50_ms),
            saturated_vigil_p99_ms: of(|f| f.saturated_vigil_p99_ms),
            saturated_baseline_p50_ms: of(|f| f.saturated_baseline_p50_ms),
            saturated_baseline_p99_ms: of(|f| f.saturated_baseline_p99_ms),
            saturated_vigil_server_cpu_us: known(|f| f.saturated_vigil_server_cpu_us),
            saturated_baseline_server_cpu_us: known(|f| f.saturated_baseline_server_cpu_us),
            saturated_vigil_client_cpu_us: known(|f| f.saturated_vigil_client_cpu_us),
            saturated_baseline_client_cpu_us: known(|f| f.saturated_baseline_client_cpu_us),
        }
    }
}

/// A load with the CPU its server's and the load generator's threads
/// spent per call sent.
struct Measured<T> {
    out: T,
    server_cpu_us: Option<f64>,
    client_cpu_us: Option<f64>,
}

/// Runs a load (`run`, returning it and how many calls it sent) and
/// measures the CPU per call of the threads named `server` and of the
/// load generator's.
fn with_cpu<T>(
    server: &str,
    run: impl FnOnce() -> anyhow::Result<(T, u64)>,
) -> anyhow::Result<Measured<T>> {
    let (s0, c0) = (named_threads_cpu(server), named_threads_cpu(CLIENT_THREADS));
    let (out, sent) = run()?;
    let (s1, c1) = (named_threads_cpu(server), named_threads_cpu(CLIENT_THREADS));
    Ok(Measured {
        out,
        server_cpu_us: cpu_per_call(s0.as_ref(), s1.as_ref(), sent),
        client_cpu_us: cpu_per_call(c0.as_ref(), c1.as_ref(), sent),
    })
}

/// Thread names of the load generator and of the two servers' runtimes.
const CLIENT_THREADS: &str = "bench-client";
const BASELINE_THREADS: &str = "bench-baseline";
const VIGIL_THREADS: &str = "bench-vigil";

/// The median of values that are each known or not: `None` unless all are.
fn median_known(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Option<Vec<f64>> = xs.collect();
    xs.filter(|v| !v.is_empty())
        .map(|v| (median(v) * 100.0).round() / 100.0)
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting a runtime")
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, MAX_US, 3)?)
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A well-mixed 64-bit value of `i` (splitmix64), to pick analyses.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Drives `call` from `clients.len() x IN_FLIGHT` tasks, each with its own
/// client on one of the connections, each sending its next call when the
/// last one returns.
async fn saturated<C, F, Fut>(clients: Vec<C>, call: F, timing: Timing) -> anyhow::Result<Load>
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.measure;
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        for k in 0..IN_FLIGHT {
            let client = client.clone();
            let call = call.clone();
            tasks.push(tokio::spawn(async move {
                let mut h = histogram()?;
                let mut errors = 0u64;
                let mut sent = 0u64;
                let mut n = (c * IN_FLIGHT + k) as u64 * 1_000_000_007;
                loop {
                    n += 1;
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    sent += 1;
                    let ok = call(client.clone(), mix(n)).await;
                    if t0 >= measure_from {
                        if ok {
                            h.record(micros(t0.elapsed()))?;
                        } else {
                            errors += 1;
                        }
                    }
                }
                anyhow::Ok((h, errors, sent))
            }));
        }
    }
    let mut all = histogram()?;
    let (mut errors, mut sent) = (0, 0);
    for t in tasks {
        let (h, e, n) = t.await??;
        all.add(h)?;
        errors += e;
        sent += n;
    }
    Ok(Load {
        qps: all.len() as f64 / timing.measure.as_secs_f64(),
        calls: all.len(),
        p50_ms: ms(&all, 0.5),
        p99_ms: ms(&all, 0.99),
        errors,
        sent,
    })
}

/// The calls of a paced (open-loop) load: call `i` of `0..end` is sent at
/// `start + i / rate`, fixed before the load runs; calls `first..end` (the
/// ones scheduled in the measured window) are measured, the ones before
/// warm up.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Schedule {
    rate: f64,
    first: u64,
    end: u64,
}

impl Schedule {
    fn new(rate: f64, timing: Timing) -> anyhow::Result<Self> {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "the offered rate must be a positive number of calls per second, not {rate}"
        );
        let first = (timing.warmup.as_secs_f64() * rate).ceil() as u64;
        let end = ((timing.warmup + timing.measure).as_secs_f64() * rate).ceil() as u64;
        Ok(Self { rate, first, end })
    }

    /// When call `i` is due.
    fn at(&self, start: Instant, i: u64) -> Instant {
        start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Calls measured.
    fn measured(&self) -> u64 {
        self.end - self.first
    }
}

/// Sends `call`s on `schedule` from this thread into `rt`, round-robin
/// over `clients`, and times each from its scheduled send time to its
/// return. Returns the load and the pacer's own lateness (how late it
/// handed calls over, already part of the latencies).
fn paced<C, F, Fut>(
    rt: &tokio::runtime::Runtime,
    clients: &[C],
    call: F,
    schedule: Schedule,
    timing: Timing,
) -> anyhow::Result<(Load, Histogram<u64>)>
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    anyhow::ensure!(!clients.is_empty(), "no connections to load");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    let mut late = histogram()?;
    let start = Instant::now() + Duration::from_millis(10);
    for i in 0..schedule.end {
        let at = schedule.at(start, i);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let measured = i >= schedule.first;
        if measured {
            late.record(micros(at.elapsed()))?;
        }
        let client = clients[(i % clients.len() as u64) as usize].clone();
        let call = call.clone();
        let tx = tx.clone();
        rt.spawn(async move {
            let ok = call(client, mix(i)).await;
            if measured {
                // The receiver outlives every sender; a send cannot fail
                // before the drain below gives up, and then nothing reads.
                let _ = tx.send((micros(at.elapsed()), ok));
            }
        });
    }
    drop(tx);
    let (h, errors) = rt.block_on(async move {
        let mut h = histogram()?;
        let mut errors = 0u64;
        let deadline = tokio::time::sleep(DRAIN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = rx.recv() => match done {
                    Some((us, true)) => h.record(us)?,
                    Some((_, false)) => errors += 1,
                    None => break,
                },
                () = &mut deadline => anyhow::bail!(
                    "paced calls still outstanding {} s after the last was sent",
                    DRAIN.as_secs()
                ),
            }
        }
        anyhow::Ok((h, errors))
    })?;
    anyhow::ensure!(
        h.len() + errors == schedule.measured(),
        "{} paced calls measured of {} scheduled",
        h.len() + errors,
        schedule.measured()
    );
    let load = Load {
        qps: schedule.measured() as f64 / timing.measure.as_secs_f64(),
        calls: h.len(),
        p50_ms: ms(&h, 0.5),
        p99_ms: ms(&h, 0.99),
        errors,
        sent: schedule.end,
    };
    Ok((load, late))
}

async fn channels(addr: std::net::SocketAddr) -> anyhow::Result<Vec<Channel>> {
    let mut v = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        v.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(v)
}

/// Samples for `SERVICES` services, v7 and v8, 12 slices of latency and
/// error counts, starting at `t0`.
fn data(t0: f64) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for s in 0..SERVICES {
        let service = ServiceName::new(format!("svc-{s}"))?;
        out.extend(super::api_fixture::service_samples(&service, t0)?);
    }
    Ok(out)
}

/// The rate of the paced load: `--rate`, or `READS_PER_ANALYSIS` per
/// live analysis, capped at `OFFERED_SHARE` of the saturated throughput of
/// the slower server in this run (so that neither is paced above half of
/// what it just sustained; on a shared machine the two saturated figures
/// can differ by more than the servers do), with the rule that chose it.
fn offered(rate: Option<f64>, analyses: u32, baseline_qps: f64, vigil_qps: f64) -> (f64, String) {
    if let Some(r) = rate {
        return (r, "set by --rate".to_owned());
    }
    let workload = f64::from(analyses) * READS_PER_ANALYSIS;
    let cap = (baseline_qps.min(vigil_qps) * OFFERED_SHARE).round();
    if workload <= cap {
        (
            workload,
            format!("{READS_PER_ANALYSIS} read per live analysis per second"),
        )
    } else {
        (
            cap,
            format!(
                "{OFFERED_SHARE} x the saturated calls/s of the slower server (hello world or \
                 vigil) in this run, below {READS_PER_ANALYSIS} read per analysis per second"
            ),
        )
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: &ApiArgs) -> anyhow::Result<()> {
    for (name, v) in [
        ("--warmup-secs", args.warmup_secs),
        ("--measure-secs", args.measure_secs),
    ] {
        anyhow::ensure!(
            (0.0..=3600.0).contains(&v),
            "{name} must be 0 to 3600 seconds, not {v}"
        );
    }
    anyhow::ensure!(args.measure_secs > 0.0, "--measure-secs must be above 0");
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of calls per second, not {rate}"
        );
    }
    let timing = Timing {
        warmup: Duration::from_secs_f64(args.warmup_secs),
        measure: Duration::from_secs_f64(args.measure_secs),
    };
    let analyses = args.analyses as usize;
    let client_rt = runtime(CLIENT_THREADS)?;

    // The hello-world server: tonic with only the health service.
    let baseline_rt = runtime(BASELINE_THREADS)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let baseline_addr = listener.local_addr()?;
    let stop_baseline = Arc::new(tokio::sync::Notify::new());
    {
        let stop = stop_baseline.clone();
        baseline_rt.spawn(async move {
            let (reporter, health) = tonic_health::server::health_reporter();
            reporter
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            let incoming = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    vigil_server::server::nodelay(tokio_stream::wrappers::TcpListenerStream::new(l))
                }
                Err(e) => return eprintln!("baseline listener: {e}"),
            };
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async move { stop.notified().await })
                .await;
        });
    }
    let health_call = |mut c: tonic_health::pb::health_client::HealthClient<Channel>, _| async move {
        c.check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
    };
    let baseline_clients: Vec<_> = client_rt
        .block_on(channels(baseline_addr))?
        .into_iter()
        .map(tonic_health::pb::health_client::HealthClient::new)
        .collect();

    // Vigil with live analyses holding real reports.
    let server_rt = runtime(VIGIL_THREADS)?;
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        tick_interval: Duration::from_secs(3600),
        // The one tick (at start) judges every complete slice.
        slice_grace: Duration::ZERO,
        ..Config::default()
    };
    let server = Server::bind(config)?;
    let vigil_addr = server.grpc_addr();
    let handle = server.handle();
    let vigil = handle.vigil().clone();
    let t0 = (vigil.stream_now() / 10.0).floor() * 10.0;
    let spec_for = |s: usize, i: usize| -> anyhow::Result<vigil_core::AnalysisSpec> {
        let spec = serde_json::json!({
            "service": format!("svc-{s}"),
            "baseline_version": "v7",
            "canary_version": "v8",
            "metrics": [
                {"name": "latency", "kind": "latency", "quantiles": [0.5, 0.99]},
                {"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002},
            ],
            "policy": {"max_duration": format!("{}m", 30 + i % 7)},
        });
        Ok(serde_json::from_value(spec)?)
    };
    let mut ids = Vec::with_capacity(analyses);
    for i in 0..analyses {
        let e = vigil.create_from(None, spec_for(i % SERVICES, i)?, "bench", t0)?;
        ids.push(e.id.to_string());
    }
    let outcome = vigil.ingest.record("bench", &data(t0)?);
    anyhow::ensure!(
        outcome.rejected == 0,
        "bench data rejected: {:?}",
        outcome.errors
    );
    server_rt.spawn(async move {
        if let Err(e) = server.run(std::future::pending()).await {
            eprintln!("vigil server: {e}");
        }
    });
    // The server's own ticker judges every analysis once; the load starts
    // after that tick, so it measures reads in steady state.
    let waited = Instant::now();
    while vigil.ticks().0 == 0 {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(600),
            "the first judge tick did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tick_secs = vigil.ticks().1.as_secs_f64();
    // The first read of each verdict builds its encoding; later ones
    // copy it.
    let (verdict_bytes, first_read_us) = read_cost(&vigil, &ids)?;
    let (_, read_us) = read_cost(&vigil, &ids)?;
    eprintln!(
        "vigil bench api: {analyses} analyses judged once ({tick_secs:.3} s); a verdict is \
         {verdict_bytes} bytes, read (lookup + load + copy) {read_us:.2} µs, \
         {first_read_us:.2} µs the first time"
    );
    let ids = Arc::new(ids);
    let verdict_call = move |c: Channel, seed: u64| {
        let at = (seed % ids.len() as u64) as usize;
        read_verdict(c, Arc::clone(&ids), at)
    };
    let vigil_clients: Vec<Channel> = client_rt.block_on(channels(vigil_addr))?;
    let mut rounds = Vec::new();
    // The paced loads' schedule, set after the first round's saturated loads.
    let mut plan: Option<(Schedule, String)> = None;
    for k in 0..args.rounds {
        let vigil_first = k % 2 == 1;
        let tag = format!("vigil bench api: round {}/{}", k + 1, args.rounds);
        let sat_vigil = || {
            eprintln!("{tag}: vigil, saturated");
            with_cpu(VIGIL_THREADS, || {
                let l = client_rt.block_on(saturated(
                    vigil_clients.clone(),
                    verdict_call.clone(),
                    timing,
                ))?;
                let sent = l.sent;
                Ok((l, sent))
            })
        };
        let sat_hello = || {
            eprintln!("{tag}: hello world, saturated");
            with_cpu(BASELINE_THREADS, || {
                let l =
                    client_rt.block_on(saturated(baseline_clients.clone(), health_call, timing))?;
                let sent = l.sent;
                Ok((l, sent))
            })
        };
        let (ours_sat, baseline_sat) = if vigil_first {
            let v = sat_vigil()?;
            (v, sat_hello()?)
        } else {
            let b = sat_hello()?;
            (sat_vigil()?, b)
        };
        let schedule = match &plan {
            Some((schedule, _)) => *schedule,
            None => {
                let (rate, rule) = offered(
                    args.rate,
                    args.analyses,
                    baseline_sat.out.qps.round(),
                    ours_sat.out.qps.round(),
                );
                let schedule = Schedule::new(rate, timing)?;
                plan = Some((schedule, rule));
                schedule
            }
        };
        let paced_vigil = || {
            eprintln!("{tag}: vigil, paced at {} calls/s", schedule.rate);
            with_cpu(VIGIL_THREADS, || {
                let out = paced(
                    &client_rt,
                    &vigil_clients,
                    verdict_call.clone(),
                    schedule,
                    timing,
                )?;
                Ok((out, schedule.end))
            })
        };
        let paced_hello = || {
            eprintln!("{tag}: hello world, paced at {} calls/s", schedule.rate);
            with_cpu(BASELINE_THREADS, || {
                let out = paced(&client_rt, &baseline_clients, health_call, schedule, timing)?;
                Ok((out, schedule.end))
            })
        };
        let (ours, hello) = if vigil_first {
            let v = paced_vigil()?;
            (v, paced_hello()?)
        } else {
            let b = paced_hello()?;
            (paced_vigil()?, b)
        };
        let ((ours_paced, ours_late), (hello_paced, hello_late)) = (&ours.out, &hello.out);
        for (name, l) in [
            ("vigil saturated", &ours_sat.out),
            ("vigil paced", ours_paced),
            ("hello world saturated", &baseline_sat.out),
            ("hello world paced", hello_paced),
        ] {
            anyhow::ensure!(l.errors == 0, "{name}: {} failed calls", l.errors);
        }
        let mut late = hello_late.clone();
        late.add(ours_late)?;
        let (s_ours, s_hello) = (&ours_sat.out, &baseline_sat.out);
        rounds.push(Round {
            vigil_first,
            figures: Figures {
                vigil_qps: s_ours.qps.round(),
                baseline_qps: s_hello.qps.round(),
                ratio: (s_ours.qps / s_hello.qps * 1000.0).round() / 1000.0,
                paced_vigil_p50_ms: ours_paced.p50_ms,
                paced_vigil_p99_ms: ours_paced.p99_ms,
                paced_baseline_p50_ms: hello_paced.p50_ms,
                paced_baseline_p99_ms: hello_paced.p99_ms,
                pacer_late_p99_ms: ms(&late, 0.99),
                paced_vigil_server_cpu_us: ours.server_cpu_us,
                paced_baseline_server_cpu_us: hello.server_cpu_us,
                paced_vigil_client_cpu_us: ours.client_cpu_us,
                paced_baseline_client_cpu_us: hello.client_cpu_us,
                saturated_vigil_p50_ms: s_ours.p50_ms,
                saturated_vigil_p99_ms: s_ours.p99_ms,
                saturated_baseline_p50_ms: s_hello.p50_ms,
                saturated_baseline_p99_ms: s_hello.p99_ms,
                saturated_vigil_server_cpu_us: ours_sat.server_cpu_us,
                saturated_baseline_server_cpu_us: baseline_sat.server_cpu_us,
                saturated_vigil_client_cpu_us: ours_sat.client_cpu_us,
                saturated_baseline_client_cpu_us: baseline_sat.client_cpu_us,
            },
        });
    }
    drop(baseline_clients);
    drop(vigil_clients);
    stop_baseline.notify_waiters();
    drop(baseline_rt);
    handle.shutdown();
    drop(server_rt);
    let Some((schedule, offered_rule)) = plan else {
        anyhow::bail!("no round ran");
    };

    let median = Figures::median_of(&rounds);
    let ratios = rounds.iter().map(|r| r.figures.ratio);
    let report = Report {
        ratio_min: ratios.clone().fold(f64::INFINITY, f64::min),
        ratio_max: ratios.fold(f64::NEG_INFINITY, f64::max),
        p99_ms: median.paced_vigil_p99_ms,
        p99_ms_max: rounds
            .iter()
            .map(|r| r.figures.paced_vigil_p99_ms)
            .fold(f64::NEG_INFINITY, f64::max),
        median,
        analyses,
        offered_qps: schedule.rate,
        offered_rule,
        // Every round measured every call of the schedule, none failed.
        paced_vigil_calls: schedule.measured(),
        paced_baseline_calls: schedule.measured(),
        verdict_bytes,
        read_us: (read_us * 100.0).round() / 100.0,
        first_read_us: (first_read_us * 100.0).round() / 100.0,
        connections: CONNECTIONS,
        in_flight: IN_FLIGHT,
        warmup_seconds: timing.warmup.as_secs_f64(),
        seconds: timing.measure.as_secs_f64(),
        rounds,
    };
    if args.json {
        return super::print_json(&report);
    }
    println!(
        "GetVerdict with {} live analyses over {} connections, {} s warm-up + {} s measured per \
         load, {} rounds (the server that goes first alternates)",
        report.analyses,
        report.connections,
        report.warmup_seconds,
        report.seconds,
        report.rounds.len()
    );
    println!(
        "saturated: closed loop, {} calls in flight per connection; paced: open loop at {:.0} \
         calls/s ({}), timed from each call's scheduled send, the pacer's own lateness included",
        report.in_flight, report.offered_qps, report.offered_rule
    );
    let cpu = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    println!(
        "round  first        saturated calls/s (vigil / hello, ratio)  paced p99 ms (vigil / hello, \
         pacer)  server CPU µs/call (vigil / hello)"
    );
    for (k, round) in report.rounds.iter().enumerate() {
        let r = &round.figures;
        println!(
            "{:>5}  {:<11}  {:>8.0} / {:>8.0}  {:.3}               {:>7.3} / {:>7.3}  {:>6.3}        {} / {}",
            k + 1,
            if round.vigil_first { "vigil" } else { "hello world" },
            r.vigil_qps,
            r.baseline_qps,
            r.ratio,
            r.paced_vigil_p99_ms,
            r.paced_baseline_p99_ms,
            r.pacer_late_p99_ms,
            cpu(r.paced_vigil_server_cpu_us),
            cpu(r.paced_baseline_server_cpu_us),
        );
    }
    let m = &report.median;
    println!(
        "median: ratio {:.3} (goal >= 0.8; rounds {:.3} to {:.3}); vigil paced p50 {:.3} ms, p99 \
         {:.3} ms (goal < 2 ms; highest round {:.3} ms), hello world p99 {:.3} ms",
        m.ratio,
        report.ratio_min,
        report.ratio_max,
        m.paced_vigil_p50_ms,
        report.p99_ms,
        report.p99_ms_max,
        m.paced_baseline_p99_ms
    );
    println!(
        "load generator CPU per paced call: vigil {} µs, hello world {} µs",
        cpu(m.paced_vigil_client_cpu_us),
        cpu(m.paced_baseline_client_cpu_us)
    );
    println!(
        "CPU per saturated call, server / load generator: vigil {} / {} µs, hello world {} / {} µs",
        cpu(m.saturated_vigil_server_cpu_us),
        cpu(m.saturated_vigil_client_cpu_us),
        cpu(m.saturated_baseline_server_cpu_us),
        cpu(m.saturated_baseline_client_cpu_us),
    );
    println!(
        "a verdict is {} bytes; a read's own work (lookup, load, copy) takes {:.2} µs, \
         {:.2} µs for the first read after a new verdict (it builds the encoding)",
        report.verdict_bytes, report.read_us, report.first_read_us
    );
    println!("(one judge tick over the analyses took {tick_secs:.3} s)");
    Ok(())
}

/// CPU time so far of each of this process's threads named `name` (a
/// runtime gives all its threads its name), from [`threads_cpu`]; `None`
/// where that is not readable.
fn named_threads_cpu(name: &str) -> Option<ThreadCpu> {
    let mut out = threads_cpu();
    out.retain(|(_, comm), _| comm == name);
    (!out.is_empty()).then_some(out)
}

/// CPU µs per call of a load that sent `sent` calls (warm-up included,
/// as the CPU time covers them all), from readings of its threads before
/// and after ([`cpu_between`]: a thread that ended meanwhile, a
/// blocking-pool thread idle for 10 s, is left out).
fn cpu_per_call(before: Option<&ThreadCpu>, after: Option<&ThreadCpu>, sent: u64) -> Option<f64> {
    let ns: u64 = cpu_between(before?, after?).values().sum();
    let us = ns as f64 / 1e3 / sent.max(1) as f64;
    Some((us * 100.0).round() / 100.0)
}

/// Bytes of a verdict on the wire, and the mean server-side work of one
/// read besides gRPC and HTTP/2, over every analysis, µs: look the
/// analysis up, load its published verdict, copy its encoded bytes out
/// (what `vigil serve`'s GetVerdict route does).
fn read_cost(vigil: &vigil_server::core::Vigil, ids: &[String]) -> anyhow::Result<(usize, f64)> {
    let bytes = vigil
        .analyses
        .get(&ids[0])
        .map_or(0, |e| e.published().encoded().len());
    let mut buf = Vec::with_capacity(4096);
    let start = Instant::now();
    let mut total = 0usize;
    for id in ids {
        let entry = vigil
            .analyses
            .get(id)
            .with_context(|| format!("analysis {id} is gone"))?;
        let encoded = entry.published().encoded();
        buf.clear();
        buf.extend_from_slice(&encoded);
        total += std::hint::black_box(buf.len());
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / ids.len().max(1) as f64;
    anyhow::ensure!(total > 0, "no verdict read");
    Ok((bytes, us))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn timing(warmup_ms: u64, measure_ms: u64) -> Timing {
        Timing {
            warmup: Duration::from_millis(warmup_ms),
            measure: Duration::from_millis(measure_ms),
        }
    }

    #[test]
    fn the_schedule_is_evenly_spaced_and_measures_the_window() {
        let s = Schedule::new(1000.0, timing(200, 500)).unwrap();
        assert_eq!((s.first, s.end, s.measured()), (200, 700, 500));
        let start = Instant::now();
        assert_eq!(s.at(start, 0), start);
        assert_eq!(s.at(start, 250), start + Duration::from_millis(250));
        // A rate that does not divide the window: calls due in [w, w + m).
        let s = Schedule::new(3.0, timing(500, 1000)).unwrap();
        // Due at 0, 1/3, 2/3, 1, 4/3 s: 2/3 and 1 are in [0.5, 1.5), 4/3 too.
        assert_eq!((s.first, s.end), (2, 5));
        assert!(s.at(start, s.first) >= start + Duration::from_millis(500));
        assert!(s.at(start, s.end) >= start + Duration::from_millis(1500));
        assert!(s.at(start, s.end - 1) < start + Duration::from_millis(1500));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(bad, timing(0, 100)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_offered_rate_is_a_read_per_analysis_capped_at_half_the_slower_server() {
        let (rate, rule) = offered(None, 10_000, 53_465.0, 46_768.0);
        assert_eq!(rate, 10_000.0);
        assert!(rule.contains("per live analysis"), "{rule}");
        assert_eq!(offered(None, 30_000, 53_465.0, 60_000.0).0, 26_733.0);
        assert_eq!(offered(None, 30_000, 53_465.0, 46_768.0).0, 23_384.0);
        assert_eq!(offered(Some(1000.0), 10_000, 53_465.0, 46_768.0).0, 1000.0);
        assert!(offered(None, 10, 1.0, 1.0).1.contains("slower server"));
        assert!(offered(Some(1.0), 10, 1.0, 1.0).1.contains("--rate"));
    }

    /// Every call scheduled in the window is measured exactly once, from
    /// its scheduled time: failures are counted, not timed, and a server
    /// that holds every call for 20 ms shows at least 20 ms.
    #[test]
    fn a_paced_load_accounts_for_every_scheduled_call() {
        let rt = runtime("test-paced").unwrap();
        let t = timing(50, 200);
        let schedule = Schedule::new(2000.0, t).unwrap();
        let clients = vec![0u64, 1, 2];
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let call = {
            let seen = seen.clone();
            move |client: u64, seed: u64| {
                seen.lock().unwrap().push(client);
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    !seed.is_multiple_of(10)
                }
            }
        };
        let (load, late) = paced(&rt, &clients, call, schedule, t).unwrap();
        assert_eq!(load.calls + load.errors, schedule.measured());
        assert_eq!(schedule.measured(), 400);
        assert!(load.errors > 0 && load.calls > load.errors, "{load:?}");
        assert_eq!(late.len(), schedule.measured());
        assert!(
            load.p50_ms >= 20.0 && load.p99_ms >= load.p50_ms,
            "{load:?}"
        );
        assert_eq!(load.qps, 2000.0);
        // Round-robin over the connections, every call sent once.
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, schedule.end);
        for c in &clients {
            let n = seen.iter().filter(|&&x| x == *c).count() as u64;
            assert!(n.abs_diff(schedule.end / 3) <= 1, "client {c}: {n}");
        }
    }
}
