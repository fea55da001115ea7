//! `vigil serve`: the gRPC and HTTP APIs over one store and judge.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use vigil_core::Sample;
use vigil_ingest::otlp_grpc::{self, OtlpReceiver};
use vigil_ingest::sink::SampleSink;
use vigil_ingest::{Consumer, DecodeOptions, IngestConfig, IngestError, IngestMetrics};
use vigil_server::{shutdown_signal, Config, Handle, Server, Vigil};

/// `vigil serve` arguments; every key is also settable in the config file
/// and as `VIGIL_*` environment variables.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address (default 127.0.0.1:50051; port 0 picks one).
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// HTTP listen address (default 127.0.0.1:8080; port 0 picks one).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Kafka brokers, comma-separated.
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// OTLP/gRPC receiver address (e.g. 127.0.0.1:4317; off by default).
    #[arg(long)]
    otlp_grpc_addr: Option<SocketAddr>,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    print_config: bool,
}

/// The configuration `args` select: defaults, file, env, flags.
pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut flags = serde_json::Map::new();
    if let Some(a) = args.grpc_addr {
        flags.insert("grpc_addr".into(), a.to_string().into());
    }
    if let Some(a) = args.http_addr {
        flags.insert("http_addr".into(), a.to_string().into());
    }
    if let Some(a) = args.otlp_grpc_addr {
        flags.insert("otlp_grpc_addr".into(), a.to_string().into());
    }
    if let Some(b) = &args.kafka_brokers {
        let list: Vec<serde_json::Value> = b
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_owned().into())
            .collect();
        flags.insert("kafka_brokers".into(), list.into());
    }
    Ok(Config::load(args.config.as_deref(), &flags)?)
}

/// Runs `vigil serve` until SIGINT/SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let brokers = config.kafka_brokers.join(",");
        let otlp_addr = config.otlp_grpc_addr;
        let server = Server::bind(config)?;
        // One line each, flushed: scripts and tests read the bound ports.
        println!("vigil: gRPC on {}", server.grpc_addr());
        println!("vigil: HTTP on {}", server.http_addr());
        let handle = server.handle();
        let ingest_metrics = if brokers.is_empty() && otlp_addr.is_none() {
            None
        } else {
            Some(ingest_metrics(&handle)?)
        };
        let mut plugins = Vec::new();
        if let (Some(addr), Some(metrics)) = (otlp_addr, &ingest_metrics) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the OTLP/gRPC receiver to {addr}"))?;
            println!("vigil: OTLP/gRPC on {}", listener.local_addr()?);
            let receiver = OtlpReceiver::new(
                server_sink(&handle, "otlp"),
                metrics.clone(),
                DecodeOptions::default(),
            );
            let stop = handle.vigil().shutdown.child_token();
            plugins.push(tokio::spawn(async move {
                otlp_grpc::serve(listener, receiver, stop)
                    .await
                    .map_err(|e| format!("OTLP/gRPC receiver: {e}"))
            }));
        }
        if let (false, Some(metrics)) = (brokers.is_empty(), ingest_metrics) {
            println!("vigil: consuming Kafka from {brokers}");
            let kafka = start_kafka(&handle, &brokers, metrics);
            plugins.push(tokio::spawn(async move {
                match kafka.await {
                    Ok(r) => r.map_err(|e| format!("Kafka consumer: {e}")),
                    Err(e) => Err(format!("Kafka consumer task: {e}")),
                }
            }));
        }
        server.run(shutdown_signal()).await?;
        for plugin in plugins {
            match plugin.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("vigil: {e}"),
                Err(e) => eprintln!("vigil: {e}"),
            }
        }
        println!("vigil: stopped");
        anyhow::Ok(())
    })
}

/// The server's ingest path as the sink of the Kafka consumer and the OTLP
/// receiver, so that their samples are counted by source and start auto
/// analyses like those from the APIs.
struct ServerSink {
    vigil: Arc<Vigil>,
    /// The `source` label of the samples (`kafka`, `otlp`).
    source: &'static str,
}

impl SampleSink for ServerSink {
    fn record_samples(&self, samples: &[Sample]) -> u64 {
        self.vigil.ingest.record(self.source, samples).accepted
    }

    fn record_values(&self, runs: &[vigil_proto::BatchValues]) -> u64 {
        self.vigil.ingest.record_values(self.source, runs).accepted
    }
}

/// The ingest plug-ins' metrics (`vigil_kafka_*`), registered once in the
/// server's registry and shared by the Kafka consumer and the OTLP receiver.
pub fn ingest_metrics(handle: &Handle) -> anyhow::Result<IngestMetrics> {
    handle
        .metrics()
        .with_registry(IngestMetrics::new)
        .context("the metrics registry is unusable")
}

/// The server's ingest path as a sink for a plug-in, counting its samples
/// under `source`.
fn server_sink(handle: &Handle, source: &'static str) -> Arc<dyn SampleSink> {
    Arc::new(ServerSink {
        vigil: handle.vigil().clone(),
        source,
    })
}

/// Starts the Kafka consumer (Vigil's default topics, group `vigil`) into
/// the server's ingest path, counting into `metrics` (see
/// [`ingest_metrics`]), with a `kafka` readiness gate that opens once
/// partitions are assigned. It stops, committing its offsets, when the
/// server shuts down.
pub fn start_kafka(
    handle: &Handle,
    brokers: &str,
    metrics: IngestMetrics,
) -> JoinHandle<Result<(), IngestError>> {
    start_kafka_with(handle, IngestConfig::new(brokers), metrics)
}

/// [`start_kafka`] with consumer settings of the caller's (`vigil bench
/// e2e` sets librdkafka properties).
pub fn start_kafka_with(
    handle: &Handle,
    config: IngestConfig,
    metrics: IngestMetrics,
) -> JoinHandle<Result<(), IngestError>> {
    let gate = handle.readiness_gate("kafka");
    let ready = metrics.ready_flag();
    let stop = handle.vigil().shutdown.child_token();
    let watch = stop.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                () = watch.cancelled() => return,
                _ = every.tick() => gate.store(ready.load(Ordering::Acquire), Ordering::Release),
            }
        }
    });
    let consumer = Consumer::new(config, server_sink(handle, "kafka"), metrics);
    tokio::spawn(consumer.run(stop))
}
