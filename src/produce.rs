//! `vigil produce`: synthetic traffic of a scenario (a baseline and a canary
//! version of one service) written to Kafka in one of Vigil's wire formats,
//! paced in stream time, for trials and load. `vigil demo` drives the same
//! code against its embedded broker.
//!
//! The traffic is `vigil-sim`'s: the scenario's generator draws each slice
//! and expands it into individual requests, so what is produced is exactly
//! what `vigil simulate` judges for the same seed (run 0). Timestamps are
//! moved so that the stream starts now (wall clock) and advances `speed`
//! stream seconds per wall second.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use vigil_proto::v1::{OutcomePoint, SampleBatch};
use vigil_sim::generate::event_rng;
use vigil_sim::{Arm, Generator, Names, RequestEvent, Scenario, STREAM_START};

/// Events per `vigil.events` message (JSON lines).
const EVENTS_PER_MESSAGE: usize = 500;
/// How long a message may wait for delivery before producing fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The wire format of the produced messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireFormat {
    /// `vigil.v1.SampleBatch` protobuf to `vigil.samples`, key = service.
    Samples,
    /// JSON lines request events to `vigil.events`.
    Events,
    /// OTLP `ExportTraceServiceRequest` (server spans) to `otlp_spans`.
    Otlp,
}

impl WireFormat {
    /// The topic Vigil reads this format from by default.
    pub fn topic(self) -> &'static str {
        match self {
            WireFormat::Samples => "vigil.samples",
            WireFormat::Events => "vigil.events",
            WireFormat::Otlp => "otlp_spans",
        }
    }
}

/// `vigil produce` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["scenario", "scenario_file"])))]
pub struct ProduceArgs {
    /// Kafka bootstrap servers (`host:port[,host:port]`).
    #[arg(long)]
    brokers: String,
    /// A built-in scenario (`vigil simulate --list`).
    #[arg(long)]
    scenario: Option<String>,
    /// A scenario file (TOML, as `vigil simulate` reads).
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    /// Requests per second, both arms together (default: the scenario's).
    #[arg(long)]
    rate: Option<f64>,
    /// Wire format (and so topic).
    #[arg(long, value_enum, default_value = "samples")]
    format: WireFormat,
    /// Stream seconds per wall-clock second (10: a 30-minute scenario in 3).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs `vigil produce` until the scenario's stream ends or Ctrl-C.
pub fn run(args: &ProduceArgs) -> anyhow::Result<()> {
    let mut scenario = match (&args.scenario, &args.scenario_file) {
        (Some(name), _) => vigil_sim::builtin(name)
            .with_context(|| {
                format!("no built-in scenario `{name}` (see `vigil simulate --list`)")
            })?
            .scenario()
            .with_context(|| format!("built-in scenario `{name}`"))?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Scenario::parse(&text).with_context(|| format!("scenario {}", path.display()))?
        }
        (None, None) => bail!("give --scenario or --scenario-file"),
    };
    if let Some(rate) = args.rate {
        scenario.rps = rate;
        scenario
            .validate()
            .context("--rate does not fit the scenario")?;
    }
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a positive number, got {}", args.speed);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let producer = producer(&args.brokers)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            vigil_server::shutdown_signal().await;
            stop.cancel();
        });
        let stats = Arc::new(ProduceStats::default());
        let feed = Feed::new(&scenario, args.seed, wall_now(), args.speed)?;
        println!(
            "vigil produce: {} ({} {} -> {}) to {} at {} rps, {}x stream speed",
            scenario.name,
            feed.names.service,
            feed.names.baseline,
            feed.names.canary,
            args.format.topic(),
            scenario.rps,
            args.speed
        );
        feed.run(&producer, args.format, &cancel, &stats).await?;
        println!(
            "vigil produce: {} requests in {} messages",
            stats.requests.load(Ordering::Relaxed),
            stats.messages.load(Ordering::Relaxed)
        );
        anyhow::Ok(())
    })
}

/// A producer for `brokers` with low latency settings (the demo and trials
/// want data visible quickly, not maximal batching).
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("compression.type", "lz4")
        .create()
        .with_context(|| format!("creating a Kafka producer for {brokers}"))
}

/// Wall-clock now, epoch seconds.
pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a producer has sent so far.
#[derive(Debug, Default)]
pub struct ProduceStats {
    /// Requests (events) produced.
    pub requests: AtomicU64,
    /// Canary requests produced.
    pub canary_requests: AtomicU64,
    /// Kafka messages delivered.
    pub messages: AtomicU64,
}

/// One scenario's stream, paced and re-timed.
#[derive(Debug)]
pub struct Feed {
    generator: Generator,
    /// The scenario's names (service, versions, endpoints).
    pub names: Names,
    events: ChaCha8Rng,
    ids: ChaCha8Rng,
    /// Stream time of the scenario's second 0.
    pub origin: f64,
    speed: f64,
}

impl Feed {
    /// The stream of `scenario` under `seed`, starting at stream time
    /// `origin` and played `speed` times faster than real time.
    pub fn new(scenario: &Scenario, seed: u64, origin: f64, speed: f64) -> anyhow::Result<Self> {
        let slice_secs = vigil_sim::run::store_config(&scenario.analysis).slice_secs;
        Ok(Self {
            generator: Generator::new(scenario, seed, 0, slice_secs),
            names: Names::new(scenario).context("scenario names")?,
            events: event_rng(seed, 0),
            ids: ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d1d5),
            origin,
            speed,
        })
    }

    /// Produces every slice at its time (a slice's requests are sent when
    /// the slice starts in stream time), until the stream ends or `cancel`.
    pub async fn run(
        mut self,
        producer: &FutureProducer,
        format: WireFormat,
        cancel: &CancellationToken,
        stats: &ProduceStats,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let slice_wall = self.generator.slice_secs() / self.speed;
        let mut index = 0u32;
        while let Some(draw) = self.generator.next_slice() {
            let due = started + Duration::from_secs_f64(slice_wall * f64::from(index));
            index += 1;
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(due.into()) => {}
            }
            let mut events = self.generator.expand_events(&draw, &mut self.events);
            let shift = self.origin - STREAM_START;
            for e in &mut events {
                e.ts += shift;
            }
            let messages = encode(format, &events, &self.names, &mut self.ids)?;
            let mut pending = Vec::with_capacity(messages.len());
            for (key, payload) in &messages {
                let record = FutureRecord::to(format.topic()).key(key).payload(payload);
                pending.push(producer.send(record, DELIVERY_TIMEOUT));
            }
            for delivery in pending {
                delivery
                    .await
                    .map_err(|(e, _)| e)
                    .with_context(|| format!("producing to {}", format.topic()))?;
                stats.messages.fetch_add(1, Ordering::Relaxed);
            }
            let canary = events.iter().filter(|e| e.arm == Arm::Canary).count();
            stats
                .requests
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            stats
                .canary_requests
                .fetch_add(canary as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// One slice's requests as Kafka messages `(key, payload)` in `format`;
/// the key is the service, so a service's messages stay in order.
///
/// # Errors
///
/// Never for valid names today; kept fallible for encoders that can fail.
pub fn encode(
    format: WireFormat,
    events: &[RequestEvent],
    names: &Names,
    ids: &mut ChaCha8Rng,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let key = names.service.to_string();
    Ok(match format {
        WireFormat::Samples => sample_batches(events, names)
            .into_iter()
            .map(|b| (key.clone(), b.encode_to_vec()))
            .collect(),
        WireFormat::Events => events
            .chunks(EVENTS_PER_MESSAGE)
            .map(|chunk| {
                let lines: Vec<String> = chunk.iter().map(|e| e.json_line(names)).collect();
                (key.clone(), lines.join("\n").into_bytes())
            })
            .collect(),
        WireFormat::Otlp => vec![(key, otlp_spans(events, names, ids).encode_to_vec())],
    })
}

/// The requests as `SampleBatch`es: per version and endpoint, one batch of
/// latencies and one of outcomes.
pub fn sample_batches(events: &[RequestEvent], names: &Names) -> Vec<SampleBatch> {
    let mut batches: Vec<((Arm, Option<usize>), SampleBatch, SampleBatch)> = Vec::new();
    for e in events {
        let group = (e.arm, e.endpoint);
        let pos = match batches.iter().position(|(g, _, _)| *g == group) {
            Some(pos) => pos,
            None => {
                let labels: std::collections::HashMap<String, String> = names
                    .labels(e.endpoint)
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let batch = |metric: &str| SampleBatch {
                    service: names.service.to_string(),
                    version: names.version(e.arm).to_string(),
                    metric: metric.to_owned(),
                    labels: labels.clone(),
                    ..SampleBatch::default()
                };
                batches.push((
                    group,
                    batch(names.latency.as_str()),
                    batch(names.error_rate.as_str()),
                ));
                batches.len() - 1
            }
        };
        let (_, latency, errors) = &mut batches[pos];
        latency.timestamps.push(e.ts);
        latency.values.push(e.latency_ms);
        errors.outcomes.push(OutcomePoint {
            ts: e.ts,
            error: e.error,
        });
    }
    batches
        .into_iter()
        .flat_map(|(_, latency, errors)| [latency, errors])
        .collect()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The requests as OTLP server spans, one resource per version
/// (`service.name`, `service.version`), `http.route` for the endpoint and
/// status ERROR for failed requests.
pub fn otlp_spans(
    events: &[RequestEvent],
    names: &Names,
    ids: &mut ChaCha8Rng,
) -> ExportTraceServiceRequest {
    let resource_spans = [Arm::Baseline, Arm::Canary]
        .into_iter()
        .filter_map(|arm| {
            let spans: Vec<Span> = events
                .iter()
                .filter(|e| e.arm == arm)
                .map(|e| {
                    let start = (e.ts * 1e9) as u64;
                    let route = e
                        .endpoint
                        .and_then(|i| names.endpoint_names.get(i))
                        .map_or("/", String::as_str);
                    let mut trace_id = vec![0u8; 16];
                    ids.fill(&mut trace_id[..]);
                    let mut span_id = vec![0u8; 8];
                    ids.fill(&mut span_id[..]);
                    Span {
                        trace_id,
                        span_id,
                        name: format!("POST {route}"),
                        kind: SpanKind::Server as i32,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + (e.latency_ms * 1e6) as u64,
                        attributes: vec![string_attribute("http.route", route)],
                        status: Some(Status {
                            code: if e.error {
                                StatusCode::Error as i32
                            } else {
                                StatusCode::Ok as i32
                            },
                            ..Status::default()
                        }),
                        ..Span::default()
                    }
                })
                .collect();
            (!spans.is_empty()).then(|| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        string_attribute("service.name", names.service.as_str()),
                        string_attribute("service.version", names.version(arm).as_str()),
                    ],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::{Observation, Sample};
    use vigil_ingest::decode::{decode, DecodeOptions, Format};

    /// Samples of a message list, decoded as the consumer decodes them.
    fn decoded(format: WireFormat, messages: &[(String, Vec<u8>)]) -> Vec<Sample> {
        let ingest_format = match format {
            WireFormat::Samples => Format::Samples,
            WireFormat::Events => Format::Events,
            WireFormat::Otlp => Format::OtlpSpans,
        };
        let mut out = Vec::new();
        for (_, payload) in messages {
            let decoded = decode(ingest_format, payload, &DecodeOptions::default()).unwrap();
            assert!(decoded.rejected_lines.is_empty());
            out.extend(decoded.samples);
        }
        out
    }

    /// Sorted `(version, metric, endpoint, value)` of samples, values
    /// rounded to microseconds (OTLP carries nanosecond integers).
    fn canonical(samples: &[Sample]) -> Vec<(String, String, String, i64)> {
        let mut out: Vec<_> = samples
            .iter()
            .map(|s| {
                let value = match s.observation {
                    Observation::Value(v) => (v * 1000.0).round() as i64,
                    Observation::Outcome { error } => i64::from(error),
                    ref other => panic!("unexpected {other:?}"),
                };
                (
                    s.version.to_string(),
                    s.metric.to_string(),
                    s.labels.get("endpoint").unwrap_or("").to_owned(),
                    value,
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Every format, decoded by the consumer's decoder, gives the same
    /// samples as the simulator's requests.
    #[test]
    fn every_format_decodes_to_the_generated_requests() {
        let scenario = vigil_sim::builtin("payment-incident")
            .unwrap()
            .scenario()
            .unwrap();
        let mut feed = Feed::new(&scenario, 7, 1_800_000_000.0, 1.0).unwrap();
        // Slices past the change, so that errors and the canary are there.
        let draw = (0..35)
            .map(|_| feed.generator.next_slice().unwrap())
            .last()
            .unwrap();
        let events = feed.generator.expand_events(&draw, &mut feed.events);
        assert!(events.iter().any(|e| e.error) && events.iter().any(|e| e.arm == Arm::Canary));
        let expected: Vec<Sample> = events.iter().flat_map(|e| e.samples(&feed.names)).collect();
        for format in [WireFormat::Samples, WireFormat::Events, WireFormat::Otlp] {
            let messages = encode(format, &events, &feed.names, &mut feed.ids).unwrap();
            assert!(messages.iter().all(|(k, _)| k == "payment"));
            assert_eq!(
                canonical(&decoded(format, &messages)),
                canonical(&expected),
                "{format:?}"
            );
        }
    }
}
