//! `vigil dev-broker`: a local Kafka-protocol broker (librdkafka's mock
//! cluster, see `vigil_ingest::dev`) with Vigil's topics, until Ctrl-C.

use std::io::Write as _;

use anyhow::Context as _;
use vigil_ingest::dev::{DevBroker, VIGIL_TOPICS};

/// Arguments of `vigil dev-broker`.
#[derive(Debug, clap::Args)]
pub struct DevBrokerArgs {
    /// Port to serve on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Partitions of each of Vigil's topics.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
}

/// Runs the broker until Ctrl-C (SIGINT) or SIGTERM.
pub fn run(args: &DevBrokerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let broker = DevBroker::start(args.port, args.partitions)
            .await
            .context("cannot start the dev broker")?;
        // The broker keeps serving if nobody reads its output any more (a
        // closed pipe), so write errors are ignored rather than fatal.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "vigil dev-broker: bootstrap {}",
            broker.bootstrap_servers()
        );
        let _ = writeln!(
            out,
            "topics ({} partitions each): {}",
            args.partitions,
            VIGIL_TOPICS.join(", ")
        );
        let _ = writeln!(out, "press Ctrl-C to stop");
        let _ = out.flush();
        drop(out);
        wait_for_signal().await?;
        broker.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
