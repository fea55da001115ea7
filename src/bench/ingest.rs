//! `vigil bench ingest`: Vigil's Kafka ingest path beside a raw rdkafka
//! consumer that only reads, over the same topic in the same run.
//!
//! An in-process dev broker (librdkafka's mock cluster behind the dev
//! broker's proxy) gets `--messages` messages of 100 samples each on a
//! topic of `--partitions` partitions (SampleBatch protobuf by default;
//! `--format events` or `otlp_spans` for 100 request events or server spans
//! per message, 200 samples each). Then, each in its own consumer group:
//! - raw: a `StreamConsumer` with Vigil's consumer's fetch settings that
//!   receives every message and touches its payload (the ceiling for any
//!   consumer in this process);
//! - vigil: `vigil_ingest::Consumer`, decoding and recording into a store.
//!
//! Both are timed the same way: from their first message received to
//! their last one handled, in samples per second. The group join, offset
//! look-ups and first fetch before it (about 0.1 s on the mock cluster,
//! the same for both) are reported apart as `*_startup_seconds`: they are
//! latency, not rate, and would otherwise dominate a pass this short.
//! (Until 2026-12 the raw pass was timed from its partition assignment and
//! Vigil's from its first message, which charged that startup to the raw
//! consumer alone and flattered the ratio; see docs/BENCHMARKS.md.)
//!
//! One pass of either reads the topic in a fraction of a second, so a
//! single pair of passes is at the mercy of whatever else the machine does
//! in that moment. The bench therefore runs `--rounds` rounds over the same
//! topic, each a raw pass and a Vigil pass in fresh consumer groups (the
//! order alternating from round to round, so neither always goes first),
//! and reports the median of the rounds' ratios beside every round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::ingest_fixture::{
    latency_ms, sample_batch, sample_ts, series_of, DEFAULT_SERVICES, PER_MESSAGE, STREAM_STEP,
};
use super::{cpu_between, median, minor_faults, threads_cpu, ThreadCpu};
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::dev::DevBroker;
use vigil_ingest::{Consumer, Format, IngestConfig, IngestMetrics, TopicConfig};

/// Notes when a raw consumer got its partitions.
#[derive(Debug, Default)]
pub(super) struct AssignedAt(pub(super) std::sync::Mutex<Option<Instant>>);

impl rdkafka::ClientContext for AssignedAt {}

impl rdkafka::consumer::ConsumerContext for AssignedAt {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Assign(_) = rebalance {
            if let Ok(mut at) = self.0.lock() {
                at.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Options of `vigil bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Messages to produce and consume. In stream order (2,000 samples a
    /// stream second), at most what the store's window holds: 35,800 for
    /// the default 30 minutes.
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Partitions of the topic. The mock cluster keeps about 5 MB per
    /// partition (older messages are deleted), so the topic needs enough
    /// of them to hold every message.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Message format: samples (SampleBatch, 100 values), events (100 JSON
    /// request events) or otlp_spans (100 server spans).
    #[arg(long, default_value = "samples", value_parser = ["samples", "events", "otlp_spans"])]
    format: String,
    /// Timestamps cycling over 10 minutes in every message (each message
    /// touches 10 slices, most of them already complete: the store's slow
    /// path for late data), instead of stream order (time advancing with
    /// the message number, as a live stream does).
    #[arg(long)]
    out_of_order: bool,
    /// Message keys: `message` (each message's number: every partition
    /// gets a share of every series, so every worker writes every series)
    /// or `service` (the `vigil.samples` contract: a service's messages
    /// all go to one partition, hence one worker).
    #[arg(long, default_value = "message", value_parser = ["message", "service"])]
    key: String,
    /// Services the messages cycle over, each with two versions. With
    /// `--key service` a topic needs many (and partitions for them: the
    /// mock cluster keeps about 5 MB per partition) for its messages to
    /// reach every partition, as a topic shared by many services does.
    #[arg(long, default_value_t = DEFAULT_SERVICES, value_parser = clap::value_parser!(u64).range(1..))]
    services: u64,
    /// Decode workers of Vigil's consumer (`[kafka] workers`).
    #[arg(long, default_value_t = vigil_ingest::IngestConfig::new(String::new()).workers)]
    workers: usize,
    /// Rounds of one raw and one Vigil pass over the topic; the ratio
    /// reported is the median of the rounds' ratios.
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What one run measured. The top-level rates and ratio are the medians
/// over the rounds (each taken on its own: the median ratio is not the
/// ratio of the median rates).
#[derive(Debug, Serialize)]
struct Report {
    format: String,
    /// What the messages are keyed by (`--key`).
    key: String,
    /// Services the messages cycle over (`--services`).
    services: u64,
    /// Vigil's decode workers (`--workers`).
    workers: usize,
    out_of_order: bool,
    messages: u64,
    samples: u64,
    partitions: i32,
    payload_bytes: u64,
    raw_consumer_samples_per_s: f64,
    vigil_samples_per_s: f64,
    ratio: f64,
    /// The lowest and highest round ratio.
    ratio_min: f64,
    ratio_max: f64,
    rounds: Vec<Round>,
}

/// One consumer's read of the topic.
struct Pass {
    /// From the partition assignment to the first message (the mock
    /// broker's offset look-ups and first fetch: the same for both
    /// consumers, and not part of the rate).
    startup_seconds: f64,
    /// From the first message to the last one handled.
    seconds: f64,
    /// CPU seconds the process's threads ran meanwhile, by thread name.
    cpu: std::collections::BTreeMap<String, f64>,
    /// Minor page faults of the process meanwhile (`None` where not
    /// readable).
    minor_faults: Option<u64>,
}

/// One raw pass and one Vigil pass over the topic.
#[derive(Debug, Clone, Serialize)]
struct Round {
    /// Whether the raw pass ran first in this round.
    raw_first: bool,
    raw_startup_seconds: f64,
    raw_consumer_seconds: f64,
    raw_consumer_samples_per_s: f64,
    vigil_startup_seconds: f64,
    vigil_seconds: f64,
    vigil_samples_per_s: f64,
    ratio: f64,
    /// CPU seconds the whole process ran during each pass (the mock
    /// cluster and its proxy are in this process, so they count too).
    raw_cpu_seconds: f64,
    vigil_cpu_seconds: f64,
    /// The same, by thread name.
    raw_cpu_by_thread: std::collections::BTreeMap<String, f64>,
    vigil_cpu_by_thread: std::collections::BTreeMap<String, f64>,
    /// Minor page faults of the process during each pass: a new
    /// consumer's threads fault in a fresh heap (each a zeroed page, 2 MB
    /// with transparent huge pages), a cost of its first seconds that a
    /// long-running consumer does not pay again.
    raw_minor_faults: Option<u64>,
    vigil_minor_faults: Option<u64>,
}

/// Gives up on a phase after this long.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// Runs the benchmark.
pub fn run(args: &IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.messages > 0, "--messages must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    // In stream order the messages' time advances with their number; past
    // the store's window (less a slice, for partitions read apart) the
    // oldest samples would be refused as too old and the Vigil pass would
    // wait for them until it timed out.
    if !args.out_of_order {
        let store = StoreConfig::default();
        let room = f64::from(store.window_secs.saturating_sub(store.slice_secs));
        let per_message = PER_MESSAGE as f64 * STREAM_STEP;
        let span = args.messages as f64 * per_message;
        anyhow::ensure!(
            span <= room,
            "--messages {} span {span:.0} s of stream time ({:.0} samples a second), more than the \
             store's {} s window allows: the oldest samples would be refused as too old; use at \
             most {} messages (or --out-of-order)",
            args.messages,
            1.0 / STREAM_STEP,
            store.window_secs,
            (room / per_message).floor()
        );
    }
    let format: Format = args.format.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args, format))?;
    if args.json {
        super::print_json(&report)
    } else {
        println!(
            "ingest of {} {} messages ({} samples, {} partitions, {:.1} MB)",
            report.messages,
            report.format,
            report.samples,
            report.partitions,
            report.payload_bytes as f64 / 1e6
        );
        println!("  round  first  raw samples/s  vigil samples/s  ratio");
        for (k, r) in report.rounds.iter().enumerate() {
            println!(
                "  {:>5}  {:>5}  {:>13.0}  {:>15.0}  {:>5.2}",
                k + 1,
                if r.raw_first { "raw" } else { "vigil" },
                r.raw_consumer_samples_per_s,
                r.vigil_samples_per_s,
                r.ratio
            );
        }
        println!(
            "  median {:>19.0}  {:>15.0}  {:>5.2}  (ratio range {:.2}-{:.2})",
            report.raw_consumer_samples_per_s,
            report.vigil_samples_per_s,
            report.ratio,
            report.ratio_min,
            report.ratio_max
        );
        let faults = |f: fn(&Round) -> Option<u64>| {
            let xs: Option<Vec<f64>> = report
                .rounds
                .iter()
                .map(|r| f(r).map(|n| n as f64))
                .collect();
            xs.map(median)
        };
        if let (Some(raw), Some(vigil)) = (
            faults(|r| r.raw_minor_faults),
            faults(|r| r.vigil_minor_faults),
        ) {
            println!("  minor page faults per pass (median): raw {raw:.0}, vigil {vigil:.0}");
        }
        Ok(())
    }
}

/// One message's payload and the samples it holds.
fn message(format: Format, i: u64, out_of_order: bool, services: u64) -> (Vec<u8>, u64) {
    let (service, version) = series_of(i, services);
    match format {
        Format::Events => {
            let mut text = String::with_capacity(100 * 90);
            for j in 0..PER_MESSAGE {
                text.push_str(&format!(
                    "{{\"ts\":{},\"service\":\"{service}\",\"version\":\"{version}\",\"latency_ms\":{},\"status\":{}}}\n",
                    sample_ts(i * PER_MESSAGE + j, out_of_order),
                    latency_ms(i, j),
                    if (i + j).is_multiple_of(97) { 503 } else { 200 }
                ));
            }
            (text.into_bytes(), 200)
        }
        Format::OtlpSpans => (otlp_spans(&service, version, i, out_of_order), 200),
        _ => (sample_batch(i, out_of_order, services), PER_MESSAGE),
    }
}

fn otlp_spans(service: &str, version: &str, i: u64, out_of_order: bool) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
    };
    let spans = (0..100)
        .map(|j| {
            let start = (sample_ts(i * 100 + j, out_of_order) * 1e9) as u64;
            Span {
                name: "GET /cart".to_owned(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (i * 100 + j) * 7919 % 500_000_000,
                attributes: vec![kv("http.route", "/cart")],
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("service.version", version)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

async fn measure(args: &IngestArgs, format: Format) -> anyhow::Result<Report> {
    let broker = DevBroker::start(0, args.partitions)
        .await
        .context("cannot start the mock cluster")?;
    let topic = "bench";
    broker.create_topic(topic, args.partitions)?;
    let brokers = broker.bootstrap_servers();
    let (samples, payload_bytes) = fill(&brokers, topic, args, format).await?;
    check_nothing_dropped(&brokers, topic, args.partitions).await?;

    let mut rounds = Vec::new();
    for k in 0..args.rounds {
        let raw_first = k % 2 == 0;
        let (raw, vigil) = if raw_first {
            let raw = raw_pass(&brokers, topic, k, args.messages).await?;
            (
                raw,
                vigil_pass(&brokers, topic, k, format, samples, args.workers).await?,
            )
        } else {
            let vigil = vigil_pass(&brokers, topic, k, format, samples, args.workers).await?;
            (raw_pass(&brokers, topic, k, args.messages).await?, vigil)
        };
        rounds.push(Round {
            raw_first,
            raw_startup_seconds: raw.startup_seconds,
            raw_consumer_seconds: raw.seconds,
            raw_consumer_samples_per_s: per_s(samples, raw.seconds),
            vigil_startup_seconds: vigil.startup_seconds,
            vigil_seconds: vigil.seconds,
            vigil_samples_per_s: per_s(samples, vigil.seconds),
            ratio: raw.seconds / vigil.seconds,
            raw_cpu_seconds: raw.cpu.values().sum(),
            vigil_cpu_seconds: vigil.cpu.values().sum(),
            raw_cpu_by_thread: raw.cpu,
            vigil_cpu_by_thread: vigil.cpu,
            raw_minor_faults: raw.minor_faults,
            vigil_minor_faults: vigil.minor_faults,
        });
    }
    broker.shutdown().await;

    let of = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<_>>();
    let ratios = of(|r| r.ratio);
    Ok(Report {
        format: format.to_string(),
        key: args.key.clone(),
        services: args.services,
        workers: args.workers,
        out_of_order: args.out_of_order,
        messages: args.messages,
        samples,
        partitions: args.partitions,
        payload_bytes,
        raw_consumer_samples_per_s: median(of(|r| r.raw_consumer_samples_per_s)),
        vigil_samples_per_s: median(of(|r| r.vigil_samples_per_s)),
        ratio: median(ratios.clone()),
        ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratio_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        rounds,
    })
}

/// Samples per second.
fn per_s(samples: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        samples as f64 / secs
    } else {
        f64::INFINITY
    }
}

/// Fills the topic; returns the samples and payload bytes produced.
async fn fill(
    brokers: &str,
    topic: &str,
    args: &IngestArgs,
    format: Format,
) -> anyhow::Result<(u64, u64)> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut samples = 0;
    let mut payload_bytes = 0;
    for i in 0..args.messages {
        let (payload, n) = message(format, i, args.out_of_order, args.services);
        samples += n;
        payload_bytes += payload.len() as u64;
        let key = if args.key == "service" {
            series_of(i, args.services).0
        } else {
            i.to_string()
        };
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, back)) => {
                    if error.rdkafka_error_code()
                        != Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    {
                        bail!("cannot produce: {error}");
                    }
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || producer.flush(PHASE_LIMIT)).await??;
    Ok((samples, payload_bytes))
}

/// Fails if the mock cluster already deleted some of the topic's first
/// messages (it keeps about 5 MB per partition): the consumers would then
/// wait for samples that no longer exist.
async fn check_nothing_dropped(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        for partition in 0..partitions {
            let (low, _) = client.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
            if low > 0 {
                bail!(
                    "the mock cluster dropped the first {low} messages of partition {partition} \
                     (it keeps about 5 MB per partition): use fewer --messages or more --partitions"
                );
            }
        }
        Ok(())
    })
    .await?
}

/// A raw consumer in a group of its own receives and touches every
/// payload; returns the seconds from its first message to its last.
async fn raw_pass(brokers: &str, topic: &str, round: u32, messages: u64) -> anyhow::Result<Pass> {
    let raw: StreamConsumer<AssignedAt> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-raw-{round}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Vigil's consumer's fetch settings (bounded prefetch, short
        // backoff when it is full): the raw pass is what the same client
        // reads when nothing is done with the messages.
        .set(
            "queued.max.messages.kbytes",
            IngestConfig::new(brokers).prefetch_kbytes.to_string(),
        )
        .set(
            "fetch.queue.backoff.ms",
            vigil_ingest::consumer::FETCH_QUEUE_BACKOFF_MS,
        )
        .create_with_context(AssignedAt::default())?;
    raw.subscribe(&[topic])?;
    let mut checksum = 0u64;
    let mut start = None;
    let mut cpu_before = None;
    let mut faults_before = None;
    for _ in 0..messages {
        let m = tokio::time::timeout(PHASE_LIMIT, raw.recv())
            .await
            .context("raw consumer timed out")??;
        if start.is_none() {
            cpu_before = Some(threads_cpu());
            faults_before = minor_faults();
            start = Some(Instant::now());
        }
        checksum =
            checksum.wrapping_add(m.payload().map_or(0, |p| p.len() as u64 + u64::from(p[0])));
    }
    let end = Instant::now();
    let cpu = cpu_seconds(&cpu_before.unwrap_or_default(), &threads_cpu());
    let faults = faults_between(faults_before, minor_faults());
    std::hint::black_box(checksum);
    let assigned = *raw
        .context()
        .0
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (Some(assigned), Some(start)) = (assigned, start) else {
        bail!("the raw consumer read the topic without an assignment");
    };
    Ok(Pass {
        startup_seconds: start.saturating_duration_since(assigned).as_secs_f64(),
        seconds: (end - start).as_secs_f64(),
        cpu,
        minor_faults: faults,
    })
}

/// Vigil's consumer in a group of its own decodes and records every
/// message into a fresh store, timed from its first message to the last
/// sample recorded.
async fn vigil_pass(
    brokers: &str,
    topic: &str,
    round: u32,
    format: Format,
    samples: u64,
    workers: usize,
) -> anyhow::Result<Pass> {
    let store = Arc::new(Store::new(StoreConfig::default()));
    let metrics = IngestMetrics::default();
    let mut config = IngestConfig::new(brokers.to_owned());
    config.group_id = format!("bench-vigil-{round}");
    config.topics = vec![TopicConfig::new(topic, format)];
    config.workers = workers;
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(Consumer::new(config, store.clone(), metrics.clone()).run(cancel.clone()));
    let deadline = Instant::now() + PHASE_LIMIT;
    let received = || {
        metrics
            .messages
            .get_or_create(&vec![("topic".to_owned(), topic.to_owned())])
            .get()
    };
    while metrics.assigned.get() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "vigil consumer not assigned");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let assigned_at = Instant::now();
    while received() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "vigil consumer received nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_before = threads_cpu();
    let faults_before = minor_faults();
    let start = Instant::now();
    while store.stats().recorded < samples {
        anyhow::ensure!(
            Instant::now() < deadline,
            "vigil consumer recorded {} of {samples} samples",
            store.stats().recorded
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&cpu_before, &threads_cpu());
    let faults = faults_between(faults_before, minor_faults());
    cancel.cancel();
    task.await??;
    Ok(Pass {
        startup_seconds: (start - assigned_at).as_secs_f64(),
        seconds,
        cpu,
        minor_faults: faults,
    })
}

/// Minor faults between two readings, when both were readable.
fn faults_between(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// CPU seconds by thread name between two readings, threads that ran
/// none left out.
fn cpu_seconds(before: &ThreadCpu, after: &ThreadCpu) -> std::collections::BTreeMap<String, f64> {
    cpu_between(before, after)
        .into_iter()
        .filter(|&(_, ns)| ns > 0)
        .map(|(name, ns)| (name, ns as f64 / 1e9))
        .collect()
}
