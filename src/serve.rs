//! `vigil serve`: the gRPC and HTTP APIs over one store and judge.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use vigil_core::Sample;
use vigil_ingest::sink::SampleSink;
use vigil_ingest::{Consumer, IngestConfig, IngestError, IngestMetrics};
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
        let server = Server::bind(config)?;
        // One line each, flushed: scripts and tests read the bound ports.
        println!("vigil: gRPC on {}", server.grpc_addr());
        println!("vigil: HTTP on {}", server.http_addr());
        let kafka = if brokers.is_empty() {
            None
        } else {
            println!("vigil: consuming Kafka from {brokers}");
            Some(start_kafka(&server.handle(), &brokers)?)
        };
        server.run(shutdown_signal()).await?;
        if let Some(kafka) = kafka {
            match kafka.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("vigil: Kafka consumer: {e}"),
                Err(e) => eprintln!("vigil: Kafka consumer task: {e}"),
            }
        }
        println!("vigil: stopped");
        anyhow::Ok(())
    })
}

/// The server's ingest path as the Kafka consumer's sink, so that samples
/// from Kafka are counted by source and start auto analyses like those from
/// the APIs.
struct ServerSink(Arc<Vigil>);

impl SampleSink for ServerSink {
    fn record_samples(&self, samples: &[Sample]) -> u64 {
        self.0.ingest.record("kafka", samples).accepted
    }
}

/// Starts the Kafka consumer (Vigil's default topics, group `vigil`) into
/// the server's ingest path, with its metrics in the server's registry and
/// a `kafka` readiness gate that opens once partitions are assigned. It
/// stops, committing its offsets, when the server shuts down.
pub fn start_kafka(
    handle: &Handle,
    brokers: &str,
) -> anyhow::Result<JoinHandle<Result<(), IngestError>>> {
    let metrics = handle
        .metrics()
        .with_registry(IngestMetrics::new)
        .context("the metrics registry is unusable")?;
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
    let sink: Arc<dyn SampleSink> = Arc::new(ServerSink(handle.vigil().clone()));
    let consumer = Consumer::new(IngestConfig::new(brokers), sink, metrics);
    Ok(tokio::spawn(consumer.run(stop)))
}
