//! `vigil bench api`: GetVerdict throughput and latency with 10,000 live
//! analyses, beside a hello-world tonic server (the gRPC health service)
//! measured in the same run, on the same machine, with the same load.
//!
//! Each server runs on its own two-thread runtime, the load generator on
//! another: `CONNECTIONS` HTTP/2 connections with `IN_FLIGHT` calls each,
//! for `MEASURE` after `WARMUP`. Verdict reads pick analyses at random; the
//! analyses carry real reports (two metrics, ticked over real data), so
//! the response is the size a controller gets.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tonic::transport::Channel;
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};
use vigil_proto::v1::vigil_service_client::VigilServiceClient;
use vigil_proto::v1::GetVerdictRequest;
use vigil_server::{Config, Server};

/// Live analyses.
pub const ANALYSES: usize = 10_000;
/// Services they are spread over.
const SERVICES: usize = 100;
/// HTTP/2 connections of the load generator.
pub const CONNECTIONS: usize = 32;
/// Calls in flight per connection.
pub const IN_FLIGHT: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

/// One measured load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    /// Completed calls per second.
    pub qps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed calls.
    pub errors: u64,
}

/// The report of `vigil bench api --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// GetVerdict calls per second.
    pub vigil_qps: f64,
    /// Health/Check calls per second of the hello-world server.
    pub baseline_qps: f64,
    /// vigil_qps / baseline_qps.
    pub ratio: f64,
    /// GetVerdict p50, ms.
    pub p50_ms: f64,
    /// GetVerdict p99, ms.
    pub p99_ms: f64,
    /// Hello-world p99, ms.
    pub baseline_p99_ms: f64,
    /// Live analyses.
    pub analyses: usize,
    /// Connections.
    pub connections: usize,
    /// Calls in flight per connection.
    pub in_flight: usize,
    /// Seconds measured per server.
    pub seconds: f64,
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting a runtime")
}

/// Drives `call` from `CONNECTIONS x IN_FLIGHT` tasks, each with its own
/// client on one of the connections.
async fn load<C, F, Fut>(clients: Vec<C>, call: F) -> anyhow::Result<Load>
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let mut tasks = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        for k in 0..IN_FLIGHT {
            let client = client.clone();
            let call = call.clone();
            tasks.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let mut errors = 0u64;
                let mut seed = (c * IN_FLIGHT + k) as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
                loop {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = call(client.clone(), seed).await;
                    if t0 >= measure_from {
                        if ok {
                            h.record(t0.elapsed().as_micros().max(1) as u64)?;
                        } else {
                            errors += 1;
                        }
                    }
                }
                anyhow::Ok((h, errors))
            }));
        }
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        all.add(h)?;
        errors += e;
    }
    Ok(Load {
        qps: all.len() as f64 / MEASURE.as_secs_f64(),
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    })
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
    let latency = MetricName::new("latency")?;
    let errors = MetricName::new("error_rate")?;
    for s in 0..SERVICES {
        let service = ServiceName::new(format!("svc-{s}"))?;
        for (version, slow) in [("v7", 0.0), ("v8", 3.0)] {
            let version = Version::new(version)?;
            for slice in 0..12 {
                let ts = t0 + 10.0 * f64::from(slice) + 1.0;
                let mk = |metric: &MetricName, observation| Sample {
                    ts,
                    service: service.clone(),
                    version: version.clone(),
                    metric: metric.clone(),
                    labels: Labels::empty(),
                    observation,
                };
                let buckets = (0..40).map(|i| (20.0 + f64::from(i) + slow, 5)).collect();
                out.push(mk(&latency, Observation::Histogram(buckets)));
                out.push(mk(
                    &errors,
                    Observation::Counts {
                        requests: 200,
                        errors: 1,
                    },
                ));
            }
        }
    }
    Ok(out)
}

/// Runs the benchmark and prints the report.
pub fn run(json: bool) -> anyhow::Result<()> {
    let client_rt = runtime("bench-client")?;

    // The hello-world server: tonic with only the health service.
    let baseline_rt = runtime("bench-baseline")?;
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
                Ok(l) => tokio_stream::wrappers::TcpListenerStream::new(l),
                Err(e) => return eprintln!("baseline listener: {e}"),
            };
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, async move { stop.notified().await })
                .await;
        });
    }
    let baseline = client_rt.block_on(async {
        let clients: Vec<_> = channels(baseline_addr)
            .await?
            .into_iter()
            .map(tonic_health::pb::health_client::HealthClient::new)
            .collect();
        load(clients, |mut c, _| async move {
            c.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
        })
        .await
    })?;
    stop_baseline.notify_waiters();
    drop(baseline_rt);

    // Vigil with 10,000 live analyses holding real reports.
    let server_rt = runtime("bench-vigil")?;
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        tick_interval: Duration::from_secs(3600),
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
    let mut ids = Vec::with_capacity(ANALYSES);
    for i in 0..ANALYSES {
        let e = vigil.create_from(None, spec_for(i % SERVICES, i)?, "bench", t0)?;
        ids.push(e.id.to_string());
    }
    let outcome = vigil.ingest.record("bench", &data(t0)?);
    anyhow::ensure!(
        outcome.rejected == 0,
        "bench data rejected: {:?}",
        outcome.errors
    );
    let tick_started = Instant::now();
    vigil.tick(&mut None);
    let tick_secs = tick_started.elapsed().as_secs_f64();
    server_rt.spawn(async move {
        if let Err(e) = server.run(std::future::pending()).await {
            eprintln!("vigil server: {e}");
        }
    });
    let ids = Arc::new(ids);
    let ours = client_rt.block_on(async {
        let clients: Vec<_> = channels(vigil_addr)
            .await?
            .into_iter()
            .map(VigilServiceClient::new)
            .collect();
        let ids = ids.clone();
        load(clients, move |mut c, seed| {
            let id = ids[(seed % ids.len() as u64) as usize].clone();
            async move {
                c.get_verdict(GetVerdictRequest { analysis_id: id })
                    .await
                    .is_ok_and(|r| !r.get_ref().metrics.is_empty())
            }
        })
        .await
    })?;
    handle.shutdown();
    drop(server_rt);
    anyhow::ensure!(
        ours.errors == 0 && baseline.errors == 0,
        "failed calls: vigil {}, baseline {}",
        ours.errors,
        baseline.errors
    );

    let report = Report {
        vigil_qps: ours.qps.round(),
        baseline_qps: baseline.qps.round(),
        ratio: (ours.qps / baseline.qps * 1000.0).round() / 1000.0,
        p50_ms: ours.p50_ms,
        p99_ms: ours.p99_ms,
        baseline_p99_ms: baseline.p99_ms,
        analyses: ANALYSES,
        connections: CONNECTIONS,
        in_flight: IN_FLIGHT,
        seconds: MEASURE.as_secs_f64(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "GetVerdict with {} live analyses, {} connections x {} in flight, {} s each",
            report.analyses, report.connections, report.in_flight, report.seconds
        );
        println!(
            "  vigil:       {:>9.0} calls/s  p50 {:.3} ms  p99 {:.3} ms",
            ours.qps, ours.p50_ms, ours.p99_ms
        );
        println!(
            "  hello world: {:>9.0} calls/s  p50 {:.3} ms  p99 {:.3} ms",
            baseline.qps, baseline.p50_ms, baseline.p99_ms
        );
        println!(
            "  ratio {:.3} (goal >= 0.8), p99 {:.3} ms (goal < 2 ms)",
            report.ratio, report.p99_ms
        );
        println!("  (one judge tick over the analyses took {tick_secs:.3} s)");
    }
    Ok(())
}
