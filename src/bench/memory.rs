//! `vigil bench memory`: bytes per live series, the fixture of
//! `benches/store_memory.rs`, beside the same samples kept raw.

use super::memory_fixture::{measure, print, Params, DEFAULT_SERIES};

/// Options of `vigil bench memory`.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Live series to build (rounded down to a multiple of 50).
    #[arg(long, default_value_t = DEFAULT_SERIES)]
    series: usize,
    /// Series layout: `flat` (25 metrics, no labels) or `labelled` (5
    /// metrics x 4 endpoints, plus the store's aggregates).
    #[arg(long, default_value = "flat", value_parser = ["flat", "labelled"])]
    layout: String,
    /// Slices to fill (default: the whole 30-minute window).
    #[arg(long)]
    slices: Option<usize>,
    /// Threads recording.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Record with `Store::record_batch` (4096 samples a call) instead of
    /// one `Store::record` per sample.
    #[arg(long)]
    batch: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub fn run(args: &MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.series >= 50, "--series must be at least 50");
    let report = measure(&Params {
        flat: args.layout != "labelled",
        series: args.series,
        slices: args.slices,
        threads: args.threads,
        budget_bytes: usize::MAX,
        batched: args.batch,
    });
    if args.json {
        super::print_json(&report)
    } else {
        print(&report);
        Ok(())
    }
}
