//! `vigil bench ingest`: Vigil's Kafka ingest path beside a raw rdkafka
//! consumer that only reads, over the same topic in the same run.
//!
//! An in-process dev broker (librdkafka's mock cluster behind the dev
//! broker's proxy) gets `--messages` messages of 100 samples each on a
//! topic of `--partitions` partitions (SampleBatch protobuf by default;
//! `--format events` or `otlp_spans` for 100 request events or server spans
//! per message, 200 samples each). Then, each in its own consumer group:
//! - raw: a `StreamConsumer` that receives every message and touches its
//!   payload (the ceiling for any consumer in this process);
//! - vigil: `vigil_ingest::Consumer`, decoding and recording into a store.
//!
//! Both are timed from their partition assignment to their last message
//! (the group join before it is the mock coordinator's fixed delay, not
//! ingest work), so both include fetching from the broker, in samples per
//! second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
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
    /// Messages to produce and consume.
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
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Report {
    format: String,
    out_of_order: bool,
    messages: u64,
    samples: u64,
    partitions: i32,
    payload_bytes: u64,
    raw_consumer_seconds: f64,
    raw_consumer_samples_per_s: f64,
    vigil_seconds: f64,
    vigil_samples_per_s: f64,
    ratio: f64,
    /// Times Vigil's consumer paused because its decode queues were full.
    vigil_pauses: u64,
}

/// Gives up on a phase after this long.
const PHASE_LIMIT: Duration = Duration::from_secs(600);
const T0: f64 = 1_800_000_000.0;
/// Stream seconds between consecutive samples in stream order: 2,000
/// samples a second, so 20,000 messages span 1,000 s, inside the window.
const STREAM_STEP: f64 = 0.0005;

/// Stream time of sample `k` (the `k`-th sample produced overall).
fn sample_ts(k: u64, out_of_order: bool) -> f64 {
    if out_of_order {
        T0 + (k % 600) as f64
    } else {
        T0 + k as f64 * STREAM_STEP
    }
}

/// Runs the benchmark.
pub fn run(args: &IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.messages > 0, "--messages must be at least 1");
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
        println!(
            "  raw rdkafka consumer: {:.3} s, {:.0} samples/s",
            report.raw_consumer_seconds, report.raw_consumer_samples_per_s
        );
        println!(
            "  vigil decode + store: {:.3} s, {:.0} samples/s",
            report.vigil_seconds, report.vigil_samples_per_s
        );
        println!("  ratio vigil / raw:    {:.2}", report.ratio);
        println!("  consumption pauses:   {}", report.vigil_pauses);
        Ok(())
    }
}

/// One message's payload and the samples it holds.
fn message(format: Format, i: u64, out_of_order: bool) -> (Vec<u8>, u64) {
    let service = ["checkout", "payment"][(i % 2) as usize];
    let version = ["v1", "v2"][((i / 2) % 2) as usize];
    let latency = |j: u64| ((i * 100 + j) * 7919 % 50_000) as f64 / 100.0;
    let ts = |j: u64| sample_ts(i * 100 + j, out_of_order);
    match format {
        Format::Events => {
            let mut text = String::with_capacity(100 * 90);
            for j in 0..100 {
                text.push_str(&format!(
                    "{{\"ts\":{},\"service\":\"{service}\",\"version\":\"{version}\",\"latency_ms\":{},\"status\":{}}}\n",
                    ts(j),
                    latency(j),
                    if (i + j).is_multiple_of(97) { 503 } else { 200 }
                ));
            }
            (text.into_bytes(), 200)
        }
        Format::OtlpSpans => (otlp_spans(service, version, i, out_of_order), 200),
        _ => {
            use prost::Message as _;
            let batch = vigil_proto::v1::SampleBatch {
                service: service.to_owned(),
                version: version.to_owned(),
                metric: "latency".to_owned(),
                timestamps: (0..100).map(ts).collect(),
                values: (0..100).map(latency).collect(),
                ..Default::default()
            };
            (batch.encode_to_vec(), 100)
        }
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

    // Fill the topic.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut samples = 0;
    let mut payload_bytes = 0;
    for i in 0..args.messages {
        let (payload, n) = message(format, i, args.out_of_order);
        samples += n;
        payload_bytes += payload.len() as u64;
        let key = i.to_string();
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
    let producer =
        tokio::task::spawn_blocking(move || producer.flush(PHASE_LIMIT).map(|()| producer))
            .await??;
    drop(producer);

    // Raw consumer: receive and touch every payload.
    let raw: StreamConsumer<AssignedAt> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "bench-raw")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(AssignedAt::default())?;
    raw.subscribe(&[topic])?;
    let mut checksum = 0u64;
    for _ in 0..args.messages {
        let m = tokio::time::timeout(PHASE_LIMIT, raw.recv())
            .await
            .context("raw consumer timed out")??;
        checksum =
            checksum.wrapping_add(m.payload().map_or(0, |p| p.len() as u64 + u64::from(p[0])));
    }
    let raw_end = Instant::now();
    let raw_start = *raw
        .context()
        .0
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let raw_seconds = raw_start.map_or(0.0, |t| (raw_end - t).as_secs_f64());
    std::hint::black_box(checksum);
    drop(raw);

    // Vigil: decode and record.
    let store = Arc::new(Store::new(StoreConfig::default()));
    let metrics = IngestMetrics::default();
    let mut config = IngestConfig::new(brokers);
    config.group_id = "bench-vigil".to_owned();
    config.topics = vec![TopicConfig::new(topic, format)];
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
    while received() == 0 {
        anyhow::ensure!(Instant::now() < deadline, "vigil consumer received nothing");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    while store.stats().recorded < samples {
        anyhow::ensure!(
            Instant::now() < deadline,
            "vigil consumer recorded {} of {samples} samples",
            store.stats().recorded
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let vigil_seconds = start.elapsed().as_secs_f64();
    cancel.cancel();
    task.await??;
    broker.shutdown().await;

    let per_s = |secs: f64| {
        if secs > 0.0 {
            samples as f64 / secs
        } else {
            f64::INFINITY
        }
    };
    Ok(Report {
        format: format.to_string(),
        out_of_order: args.out_of_order,
        messages: args.messages,
        samples,
        partitions: args.partitions,
        payload_bytes,
        raw_consumer_seconds: raw_seconds,
        raw_consumer_samples_per_s: per_s(raw_seconds),
        vigil_seconds,
        vigil_samples_per_s: per_s(vigil_seconds),
        ratio: raw_seconds / vigil_seconds,
        vigil_pauses: metrics.paused.get(),
    })
}
