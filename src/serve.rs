//! `vigil serve`: the gRPC and HTTP APIs over one store and judge.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use vigil_server::{shutdown_signal, Config, Server};

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
    if !config.kafka_brokers.is_empty() {
        bail!("kafka_brokers is set, but Kafka ingest is not built into this vigil yet");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config)?;
        // One line each, flushed: scripts and tests read the bound ports.
        println!("vigil: gRPC on {}", server.grpc_addr());
        println!("vigil: HTTP on {}", server.http_addr());
        server.run(shutdown_signal()).await?;
        println!("vigil: stopped");
        anyhow::Ok(())
    })
}
