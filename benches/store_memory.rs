//! Memory of the store holding 100,000 live series over a full 30-minute
//! window: the store's own accounting and the process's resident memory,
//! per series. A plain program (no criterion): it measures bytes, not time.
//!
//! The goal (issue: "100,000 live series with a 30-minute window in under
//! 4 GiB") and the figures are in `docs/BENCHMARKS.md`.
//!
//! Data, seeded, for all 180 slices of the default 30-minute window (10 s
//! slices), in one of two layouts (`VIGIL_BENCH_LAYOUT`):
//! - `flat` (default): services x 2 versions x 25 distribution metrics, no
//!   labels; every series receives 5 to 20 samples per slice (uniform),
//!   lognormal milliseconds (medians 80, 12, 2, 40 ms) or a gauge (0.4).
//!   2,000 services make 100,000 series.
//! - `labelled`: services x 2 versions x 5 distribution metrics (`latency`,
//!   `db_latency`, `cache_latency`, `upstream_latency`, `cpu_seconds`), each
//!   on 4 endpoints. The store keeps an aggregate beside each labelled
//!   series, so a (service, version) again holds 5 x (4 + 1) = 25 series;
//!   every labelled series receives 5 to 20 samples per slice and each
//!   aggregate the sum of its 4 endpoints (20 to 80).
//!
//! Environment:
//! - `VIGIL_BENCH_SERIES`: live series to build (default 100,000; rounded
//!   down to a multiple of 50), for a quick run;
//! - `VIGIL_BENCH_SLICES`: slices to fill (default: the whole window);
//! - `VIGIL_BENCH_THREADS`: threads recording (default 1; the data are the
//!   same for any count; a second thread does not fill faster today, see
//!   `docs/BENCHMARKS.md`);
//! - `VIGIL_BENCH_BATCH=1`: record samples with `Store::record_batch`, 4096
//!   at a time, instead of `Store::record` per sample (same data, same store
//!   contents);
//! - `VIGIL_BENCH_BUDGET_BYTES`: the store's memory budget (default:
//!   unbounded, so that every series stays live and is measured; 2147483648
//!   is the default budget).
//!
//! Run: `cargo bench --bench store_memory`.

/// The `vigil` binary's allocator (`src/main.rs`), so that this measures
/// what the binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../src/bench/memory_fixture.rs"]
mod memory_fixture;
use memory_fixture::{env_usize, measure, print, Params, DEFAULT_SERIES};

fn main() {
    let report = measure(&Params {
        flat: std::env::var("VIGIL_BENCH_LAYOUT").map_or(true, |v| v != "labelled"),
        series: env_usize("VIGIL_BENCH_SERIES").unwrap_or(DEFAULT_SERIES),
        slices: env_usize("VIGIL_BENCH_SLICES"),
        threads: env_usize("VIGIL_BENCH_THREADS").unwrap_or(1),
        budget_bytes: env_usize("VIGIL_BENCH_BUDGET_BYTES").unwrap_or(usize::MAX),
        batched: env_usize("VIGIL_BENCH_BATCH") == Some(1),
    });
    print(&report);
}
