//! `vigil bench`: Vigil's performance figures, each measured beside its
//! baseline in the same run, as a table or as JSON (`--json`).
//!
//! Adding a benchmark `x` with `pub fn run(json: bool) -> anyhow::Result<()>`
//! in `src/bench/x.rs`: `mod x;` below, and one variant plus one dispatch
//! line in [`BenchCommand`] / [`run`].

pub mod api;
pub mod api_fixture;
mod e2e;
mod ingest;
pub mod ingest_fixture;
mod judge;
pub mod judge_fixture;
mod memory;
pub mod memory_fixture;
mod simulate;
mod stats;

/// Options of `vigil bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

/// Print one JSON object instead of a table.
#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which figure to measure.
#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// GetVerdict with 10,000 live analyses beside a hello-world tonic server.
    Api(api::ApiArgs),
    /// Mann-Whitney on histograms vs sorting the raw samples (same data).
    Stats(stats::StatsArgs),
    /// One judge tick over 10,000 analyses of 4 metrics, beside recording
    /// the slice it reads.
    Judge(judge::JudgeArgs),
    /// Bytes per live series in the store over a 30-minute window.
    Memory(memory::MemoryArgs),
    /// `vigil simulate`'s speed goal and where a replication's time goes.
    Simulate(simulate::SimulateBenchArgs),
    /// Kafka ingest (decode + store) beside a raw consumer, same topic.
    Ingest(ingest::IngestArgs),
    /// First bad sample produced to ROLLBACK readable on the API, through
    /// Kafka, beside the raw Kafka round trip.
    E2e(e2e::E2eArgs),
}

/// The median of some numbers (the mean of the middle two for an even
/// count); NaN for none. Benches that run several rounds report it.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// CPU readings of this process's threads: (thread id, name) -> ns on the
/// CPU so far.
type ThreadCpu = std::collections::BTreeMap<(u64, String), u64>;

/// The CPU time so far of each of this process's threads, from Linux's
/// per-thread schedstat; empty where that is not readable (a thread that
/// ends meanwhile is left out).
fn threads_cpu() -> ThreadCpu {
    let mut out = ThreadCpu::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
            out.insert((tid, comm.trim_end().to_owned()), ns);
        }
    }
    out
}

/// Minor page faults of the whole process so far (threads that ended
/// included), from Linux's `/proc/self/stat`; `None` where that is not
/// readable. Most are the kernel handing out a zeroed page, which a cold
/// heap pays on its first touch of each page (2 MB with transparent huge
/// pages).
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (in parentheses, which may hold
    // spaces): state is the 3rd field, minflt the 10th.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// CPU ns each thread ran between two readings, summed by thread name:
/// from zero for a thread that started meanwhile; one that ended
/// meanwhile is left out rather than counted negative.
fn cpu_between(before: &ThreadCpu, after: &ThreadCpu) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (key, &ns) in after {
        let spent = ns.saturating_sub(before.get(key).copied().unwrap_or(0));
        *out.entry(key.1.clone()).or_insert(0) += spent;
    }
    out
}

/// Runs `vigil bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.what {
        BenchCommand::Api(a) => api::run(a),
        BenchCommand::Stats(a) => stats::run(a),
        BenchCommand::Judge(a) => judge::run(a),
        BenchCommand::Memory(a) => memory::run(a),
        BenchCommand::Simulate(a) => simulate::run(a),
        BenchCommand::Ingest(a) => ingest::run(a),
        BenchCommand::E2e(a) => e2e::run(a),
    }
}

/// Prints a report as pretty JSON.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
