//! `vigil replay`: a recorded stream through the same store and judge as
//! `vigil serve`, in stream time, as one would replay last night's incident
//! to see when the judge would have acted.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde::Serialize;
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{
    AnalysisSpec, CoreError, MetricResult, Sample, ServiceName, SpecFormat, Timestamp, Verdict,
};
use vigil_judge::{Analysis, TimelineEntry};

use crate::events;
use vigil_core::events::{EventError, LineOutcome, ReadError};

/// Lines decoded per message to the judging thread, and messages in flight.
const BATCH_LINES: usize = 1024;
const CHANNEL_BATCHES: usize = 16;

/// What the decoding thread sends.
enum Batch {
    /// The input opened under this display name.
    Opened(String),
    /// Decoded lines, in order.
    Lines(Decoded),
    /// The input could not be opened; nothing follows.
    Failed(ReadError),
}

/// Consecutive decoded lines, their samples of the replayed service in one
/// vector that the store records in slices of it. The judging thread sends
/// a spent batch back, so that its samples are freed (and its vectors
/// reused) on the decoding thread, which allocated them: the names they
/// share are reference-counted, and counting up and down on one core is
/// cheaper than on two.
#[derive(Default)]
struct Decoded {
    entries: Vec<Entry>,
    /// Samples of the replayed service, in order.
    samples: Vec<Sample>,
    /// The line of each sample.
    lines: Vec<u64>,
}

impl Decoded {
    fn clear(&mut self) {
        self.entries.clear();
        self.samples.clear();
        self.lines.clear();
    }
}

/// One line's worth of a [`Decoded`] batch.
enum Entry {
    /// A line's samples: `n` of the replayed service, from `start` in
    /// [`Decoded::samples`], and `other` of other services (dropped).
    Line {
        n_events: usize,
        start: usize,
        n: usize,
        other: u64,
    },
    /// A rejected line, or one rejected event of a line's array.
    Rejected { line: u64, error: EventError },
    /// Reading failed; nothing follows.
    Failed(ReadError),
}

/// Reads and decodes the input, sending batches until the input ends, an
/// IO error stops it, or the receiver hangs up. Keeps the samples of
/// `service` only; spent batches come back on `spent`.
fn decode(
    path: &std::path::Path,
    service: &ServiceName,
    tx: &std::sync::mpsc::SyncSender<Batch>,
    spent: &std::sync::mpsc::Receiver<Decoded>,
) {
    // A file is read and unpacked a few chunks ahead on a thread of its
    // own; standard input is read here (a pipe's producer, zcat or a
    // collector, already works in a process of its own).
    let input = if path == std::path::Path::new("-") {
        events::open_input(path, std::io::stdin())
    } else {
        events::open_input_prefetched(path, std::io::empty())
    };
    let input = match input {
        Ok(input) => input,
        Err(e) => {
            let _ = tx.send(Batch::Failed(e));
            return;
        }
    };
    if tx.send(Batch::Opened(input.name().to_owned())).is_err() {
        return;
    }
    let next_batch = || match spent.try_recv() {
        Ok(mut d) => {
            d.clear();
            d
        }
        Err(_) => Decoded::default(),
    };
    let mut batch = next_batch();
    let mut reader = input.events();
    loop {
        // Samples are decoded straight into the batch.
        let start = batch.samples.len();
        let Some(item) = reader.next_into(&mut batch.samples) else {
            break;
        };
        match item {
            Ok(LineOutcome::Samples { line, n_events, .. }) => {
                let n_decoded = batch.samples.len() - start;
                let mut kept = start;
                for i in start..batch.samples.len() {
                    if batch.samples[i].service == *service {
                        batch.samples.swap(kept, i);
                        kept += 1;
                    }
                }
                batch.samples.truncate(kept);
                batch.lines.resize(kept, line);
                batch.entries.push(Entry::Line {
                    n_events,
                    start,
                    n: kept - start,
                    other: (n_decoded - (kept - start)) as u64,
                });
            }
            Ok(LineOutcome::Rejected { line, error }) => {
                batch.entries.push(Entry::Rejected { line, error });
            }
            Err(e) => batch.entries.push(Entry::Failed(e)),
        }
        if batch.entries.len() >= BATCH_LINES {
            let full = std::mem::replace(&mut batch, next_batch());
            if tx.send(Batch::Lines(full)).is_err() {
                return;
            }
        }
    }
    if !batch.entries.is_empty() {
        let _ = tx.send(Batch::Lines(batch));
    }
}

/// Malformed lines shown with their errors; the rest are only counted.
const SHOWN_ERRORS: usize = 5;

/// Records `d.samples[range]` as one batch and counts what the store
/// refused, noting the first few invalid values with their lines.
fn record(
    store: &Store,
    d: &Decoded,
    range: std::ops::Range<usize>,
    stats: &mut InputStats,
    first_errors: &mut Vec<Rejection>,
) {
    if range.is_empty() {
        return;
    }
    let base = range.start;
    let outcome = store.record_batch(&d.samples[range]);
    stats.samples_rejected += outcome.rejected.len() as u64;
    for (i, error) in outcome.rejected {
        // Older than the window or of the wrong kind is the stream's
        // doing, not the line's: counted only.
        if matches!(
            error,
            CoreError::TooOld { .. } | CoreError::KindMismatch { .. }
        ) || first_errors.len() >= SHOWN_ERRORS
        {
            continue;
        }
        first_errors.push(Rejection {
            line: d.lines[base + i],
            error: error.to_string(),
        });
    }
}

/// Options of `vigil replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Analysis spec (YAML, JSON or TOML, by extension).
    #[arg(long)]
    spec: PathBuf,
    /// Recorded events, JSON lines (`-` for stdin; gzip is unpacked).
    #[arg(long)]
    input: PathBuf,
    /// Print one JSON object instead of a timeline.
    #[arg(long)]
    json: bool,
    /// Keep replaying after the first ROLLBACK or PROMOTE.
    #[arg(long = "continue")]
    keep_going: bool,
    /// Stream seconds a slice waits, once the stream has left it, for
    /// events recorded out of order (as `vigil serve`'s `slice_grace`
    /// waits in wall time); later ones are counted
    /// (`samples_after_judged`).
    #[arg(long, default_value_t = 0.0)]
    slice_grace: f64,
}

/// A rejected line, for the report.
#[derive(Debug, Serialize)]
struct Rejection {
    line: u64,
    error: String,
}

/// What the input held.
#[derive(Debug, Default, Serialize)]
struct InputStats {
    lines_rejected: u64,
    events: u64,
    samples: u64,
    /// Samples of other services (not part of the analysis).
    other_services: u64,
    /// Samples the store refused (older than its window, wrong kind).
    samples_rejected: u64,
    /// Samples recorded into a slice the judge had already read: events
    /// out of order by more than `--slice-grace`.
    samples_after_judged: u64,
    first_errors: Vec<Rejection>,
    stream_start: Option<Timestamp>,
    stream_end: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
struct ReplayReport {
    verdict: Verdict,
    decided_at: Option<Timestamp>,
    reason: String,
    timeline: Vec<TimelineEntry>,
    metrics: Vec<MetricResult>,
    worst_dimension: Option<String>,
    input: InputStats,
}

/// Runs the replay.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.slice_grace.is_finite() && args.slice_grace >= 0.0,
        "--slice-grace must be 0 or more stream seconds, not {}",
        args.slice_grace
    );
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("reading {}", args.spec.display()))?;
    let format = SpecFormat::from_file_name(&args.spec.to_string_lossy());
    let spec = AnalysisSpec::parse(&text, format)
        .with_context(|| format!("invalid spec {}", args.spec.display()))?;

    let mut labels = vec!["endpoint".to_owned()];
    labels.extend(spec.dimensions.iter().cloned());
    labels.sort();
    labels.dedup();
    let defaults = StoreConfig::default();
    // The window must hold the whole analysis: a dimension discovered late
    // is judged from the start.
    let window_secs = defaults
        .window_secs
        .max(spec.policy.max_duration.as_secs() as u32 + 4 * defaults.slice_secs);
    let store = Store::new(StoreConfig {
        label_allow_list: labels,
        window_secs,
        ..defaults
    });
    let slice = f64::from(store.config().slice_secs);

    // Decoding runs on its own thread, a bounded channel ahead of recording
    // and judging: the two halves of a replay cost about the same, and the
    // channel's bound keeps memory flat however large the input.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(CHANNEL_BATCHES);
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Decoded>();
    let path = args.input.clone();
    let service = spec.service.clone();
    let decoder = std::thread::spawn(move || decode(&path, &service, &tx, &spent_rx));
    let input_name = match rx.recv() {
        Ok(Batch::Opened(name)) => name,
        Ok(Batch::Failed(e)) => return Err(anyhow::Error::new(e).context("opening the events")),
        Ok(Batch::Lines(_)) | Err(_) => bail!(
            "the event decoder stopped before opening {}",
            args.input.display()
        ),
    };
    let mut stats = InputStats::default();
    let mut analysis: Option<Analysis> = None;
    let mut next_tick = f64::NEG_INFINITY;
    let mut stopped = false;
    // The store's first refusals worth showing, noted by recorded batch.
    let mut store_errors = Vec::new();

    for batch in rx.iter() {
        let d = match batch {
            Batch::Lines(d) => d,
            Batch::Failed(e) => return Err(anyhow::Error::new(e).context("reading the events")),
            Batch::Opened(_) => continue,
        };
        // Samples from `unrecorded` on wait to be recorded as one batch,
        // before the next tick or at the end of this one: the store groups
        // a batch by series and slice, several times cheaper than sample
        // by sample, and the judge only reads complete slices.
        let mut unrecorded = 0;
        let mut read_failed = false;
        for entry in &d.entries {
            match entry {
                Entry::Failed(_) => {
                    read_failed = true;
                    break;
                }
                Entry::Rejected { line, error } => {
                    stats.lines_rejected += 1;
                    if stats.first_errors.len() < SHOWN_ERRORS {
                        stats.first_errors.push(Rejection {
                            line: *line,
                            error: error.to_string(),
                        });
                    }
                }
                Entry::Line {
                    n_events,
                    start,
                    n,
                    other,
                } => {
                    stats.events += *n_events as u64;
                    // Counted as met, as the stream is judged (an early
                    // stop leaves the rest of the line uncounted).
                    stats.samples += other;
                    stats.other_services += other;
                    for i in *start..start + n {
                        stats.samples += 1;
                        let ts = d.samples[i].ts;
                        stats.stream_start =
                            Some(stats.stream_start.map_or(ts, |s: f64| s.min(ts)));
                        stats.stream_end = Some(stats.stream_end.map_or(ts, |e: f64| e.max(ts)));
                        // Tick at each slice boundary the stream has
                        // passed by the grace, after recording the samples
                        // before and before recording the one that passed.
                        let a = match &mut analysis {
                            Some(a) => a,
                            None => {
                                let mut a = Analysis::new("replay", spec.clone(), ts)?;
                                if args.keep_going {
                                    a.keep_judging_after_decision();
                                }
                                next_tick = ((ts / slice).floor() + 1.0) * slice;
                                analysis.insert(a)
                            }
                        };
                        let grace = args.slice_grace;
                        if ts >= next_tick + grace {
                            record(&store, &d, unrecorded..i, &mut stats, &mut store_errors);
                            unrecorded = i;
                        }
                        while ts >= next_tick + grace {
                            let report = a.tick(&store, next_tick);
                            store.set_judged_before(store.slice_of(next_tick));
                            next_tick += slice;
                            if report.verdict.is_terminal() && !args.keep_going {
                                stopped = true;
                                break;
                            }
                        }
                        if stopped {
                            break;
                        }
                    }
                }
            }
            if stopped {
                break;
            }
        }
        if read_failed {
            if let Some(Entry::Failed(e)) = d
                .entries
                .into_iter()
                .find(|e| matches!(e, Entry::Failed(_)))
            {
                return Err(anyhow::Error::new(e).context("reading the events"));
            }
            bail!("reading the events failed");
        }
        if !stopped {
            let end = d.samples.len();
            record(&store, &d, unrecorded..end, &mut stats, &mut store_errors);
        }
        // Back to the decoder to be freed there; gone if it has finished.
        let _ = spent_tx.send(d);
        if stopped {
            break;
        }
    }
    stats.samples_after_judged = store.stats().after_judged;
    // Errors were noted from lines as read and from the store by batch:
    // keep the first few by line.
    stats.first_errors.append(&mut store_errors);
    stats.first_errors.sort_by_key(|r| r.line);
    stats.first_errors.truncate(SHOWN_ERRORS);

    // Dropping the receiver stops a decoder still reading (early stop).
    drop(rx);
    if decoder.join().is_err() {
        bail!("the event decoder panicked");
    }
    let Some(mut analysis) = analysis else {
        bail!(
            "no events of service {} in {input_name} ({} lines rejected)",
            spec.service,
            stats.lines_rejected
        );
    };
    // The input is over: every slice up to the last event is complete.
    let final_report = if stopped {
        analysis.latest().cloned()
    } else {
        let end = stats.stream_end.unwrap_or(0.0);
        Some(vigil_core::VerdictReport::clone(
            analysis.tick(&store, ((end / slice).floor() + 1.0) * slice),
        ))
    };
    let Some(last) = final_report else {
        bail!("the replay produced no verdict")
    };
    let decided = analysis.decided().cloned();
    let shown = decided
        .as_ref()
        .filter(|_| !args.keep_going)
        .unwrap_or(&last);
    let report = ReplayReport {
        verdict: shown.verdict,
        decided_at: decided.as_ref().and_then(|d| d.decided_at),
        reason: shown.reason.clone(),
        timeline: analysis.timeline().to_vec(),
        metrics: shown.metrics.clone(),
        worst_dimension: shown.worst_dimension.clone(),
        input: stats,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render(&report))?;
    }
    Ok(())
}

fn rfc3339(ts: Timestamp) -> String {
    if !(ts.is_finite() && ts >= 0.0) {
        return format!("{ts}");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs_f64(ts)).to_string()
}

fn offset(ts: Timestamp, start: Option<Timestamp>) -> String {
    let s = (ts - start.unwrap_or(ts)).max(0.0).round() as u64;
    format!("+{}m{:02}s", s / 60, s % 60)
}

fn render(r: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let start = r.input.stream_start;
    let _ = writeln!(out, "timeline (stream time)");
    for e in &r.timeline {
        let _ = writeln!(
            out,
            "  {}  {:>8}  {:<12} {}",
            rfc3339(e.ts),
            offset(e.ts, start),
            e.verdict.as_str(),
            e.reason
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12} {:<22} {:<8} {:>10} {:>10} {:>12} {:>10}",
        "metric", "dimension", "status", "canary", "baseline", "e-value", "p-value"
    );
    for m in &r.metrics {
        let (c, b) = m
            .effect
            .as_ref()
            .map_or((String::new(), String::new()), |e| {
                let fmt = |v: Option<f64>| {
                    v.map_or_else(String::new, |v| match m.kind {
                        vigil_core::MetricKind::ErrorRate => format!("{:.3}%", v * 100.0),
                        _ => format!("{v:.1}"),
                    })
                };
                (fmt(e.canary), fmt(e.baseline))
            });
        let status = format!("{:?}", m.status).to_lowercase();
        let e = m.e_value.map_or_else(String::new, |e| format!("{e:.3e}"));
        let p = m.p_value.map_or_else(String::new, |p| format!("{p:.2e}"));
        let _ = writeln!(
            out,
            "{:<12} {:<22} {:<8} {:>10} {:>10} {:>12} {:>10}",
            m.name,
            m.dimension.as_deref().unwrap_or("(all)"),
            status,
            c,
            b,
            e,
            p
        );
    }
    let _ = writeln!(out);
    let when = r.decided_at.map_or_else(
        || "no terminal verdict".to_owned(),
        |t| format!("at {} ({})", rfc3339(t), offset(t, start)),
    );
    let _ = writeln!(out, "verdict: {} {when}", r.verdict.as_str());
    let _ = writeln!(out, "reason:  {}", r.reason);
    let i = &r.input;
    let _ = writeln!(
        out,
        "input:   {} events, {} samples, {} malformed lines, {} samples of other services, {} refused by the store",
        i.events, i.samples, i.lines_rejected, i.other_services, i.samples_rejected
    );
    if i.samples_after_judged > 0 {
        let _ = writeln!(
            out,
            "         {} samples came after the judge had read their slice (out of order by more than \
             --slice-grace)",
            i.samples_after_judged
        );
    }
    for e in &i.first_errors {
        let _ = writeln!(out, "         line {}: {}", e.line, e.error);
    }
    out
}
