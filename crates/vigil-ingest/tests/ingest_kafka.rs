//! The consumer against an in-process mock cluster: every sample exactly
//! once across a restart, and every kind of bad input dead-lettered while
//! consumption goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use prost::Message as _;
use vigil_core::store::Store;
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};
use vigil_ingest::dlq::headers;
use vigil_proto::v1::{OutcomePoint, SampleBatch};

const T0: f64 = 1_700_000_000.0;

/// A deterministic batch: `n` latency values of one series, spread over a
/// few minutes, and as many outcomes (one in seven failed).
fn batch(service: &str, version: &str, seed: u64, n: usize) -> SampleBatch {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut b = SampleBatch {
        service: service.to_owned(),
        version: version.to_owned(),
        metric: "latency".to_owned(),
        ..SampleBatch::default()
    };
    for i in 0..n {
        b.timestamps
            .push(T0 + ((seed as usize * 7 + i) % 300) as f64);
        b.values.push((next() % 100_000) as f64 / 100.0);
    }
    b
}

fn outcomes(service: &str, version: &str, seed: u64, n: usize) -> SampleBatch {
    SampleBatch {
        service: service.to_owned(),
        version: version.to_owned(),
        metric: "error_rate".to_owned(),
        outcomes: (0..n)
            .map(|i| OutcomePoint {
                ts: T0 + (i % 300) as f64,
                error: (seed as usize + i).is_multiple_of(7),
            })
            .collect(),
        ..SampleBatch::default()
    }
}

/// The samples a batch stands for, recorded straight into a store.
fn record_directly(store: &Store, b: &SampleBatch) {
    let decoded = vigil_proto::samples_from_batch(b);
    assert!(decoded.rejected.is_empty());
    for s in &decoded.samples {
        store.record(s).unwrap();
    }
}

/// The points (samples) the batches stand for.
fn points(batches: &[(String, SampleBatch)]) -> u64 {
    batches
        .iter()
        .map(|(_, b)| vigil_proto::ingest::point_count(b))
        .sum()
}

fn batches(range: std::ops::Range<u64>) -> Vec<(String, SampleBatch)> {
    range
        .map(|i| {
            let service = ["checkout", "payment"][(i % 2) as usize];
            let version = ["v1", "v2"][((i / 2) % 2) as usize];
            let b = if i % 3 == 0 {
                outcomes(service, version, i, 50)
            } else {
                batch(service, version, i, 100)
            };
            (service.to_owned(), b)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_is_recorded_exactly_once_across_a_restart() {
    let broker = broker().await;
    let producer = producer(&broker);
    let store = store();
    let expected = Store::new(store.config().clone());
    let first = batches(0..30);
    let second = batches(30..60);
    let n_first = points(&first);
    let n_all = n_first + points(&second);

    for (key, b) in &first {
        produce(&producer, "vigil.samples", key, &b.encode_to_vec()).await;
        record_directly(&expected, b);
    }
    let consumer = start_consumer(&broker, &store, "exactly-once");
    wait_until("readiness", || consumer.metrics.is_ready()).await;
    // At least, then exactly: a sample recorded twice fails here, at once,
    // rather than as a wait that never ends.
    wait_until("the first half", || store.stats().recorded >= n_first).await;
    consumer.stop().await;
    assert_eq!(store.stats().recorded, n_first);

    for (key, b) in &second {
        produce(&producer, "vigil.samples", key, &b.encode_to_vec()).await;
        record_directly(&expected, b);
    }
    let consumer = start_consumer(&broker, &store, "exactly-once");
    wait_until("the second half", || store.stats().recorded >= n_all).await;
    // Stopping drains every message the consumer fetched; a message read
    // twice would come before the last ones of its partition, so it would
    // show in the count by now.
    consumer.stop().await;

    assert_eq!(store.stats().recorded, n_all);
    assert_eq!(store.stats().invalid, 0);
    assert!(
        store.same_data(&expected),
        "the store differs from the samples produced"
    );
    broker.shutdown().await;
}

/// A topic created after the consumer started has no partition queue of
/// its own: its messages come through the consumer's main queue, and are
/// recorded once and committed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_after_the_start_is_consumed_exactly_once() {
    let broker = broker().await;
    // A topic that exists from the start: once its partitions are
    // assigned (the consumer is ready), the consumer has looked up the
    // partitions of every topic, so the late one is certainly created
    // after that look-up, however slowly the consumer started.
    broker.create_topic("early.samples", 1).unwrap();
    let producer = producer(&broker);
    let store = store();
    let expected = Store::new(store.config().clone());
    let start = |group: &str| {
        let mut config = vigil_ingest::IngestConfig::new(broker.bootstrap_servers());
        config.topics = ["early.samples", "late.samples"]
            .map(|t| vigil_ingest::TopicConfig::new(t, vigil_ingest::Format::Samples))
            .to_vec();
        // librdkafka looks for new topics every 5 minutes by default.
        config.client_properties = vec![(
            "topic.metadata.refresh.interval.ms".to_owned(),
            "200".to_owned(),
        )];
        start_consumer_with(config, store.clone(), group)
    };
    let consumer = start("late");
    wait_until("the early topic's assignment", || {
        consumer.metrics.is_ready()
    })
    .await;
    broker.create_topic("late.samples", 2).unwrap();
    let first = batches(0..10);
    let second = batches(10..20);
    for (key, b) in &first {
        produce(&producer, "late.samples", key, &b.encode_to_vec()).await;
        record_directly(&expected, b);
    }
    wait_until("the late topic's samples", || {
        store.stats().recorded >= points(&first)
    })
    .await;
    consumer.stop().await;
    assert_eq!(store.stats().recorded, points(&first));

    for (key, b) in &second {
        produce(&producer, "late.samples", key, &b.encode_to_vec()).await;
        record_directly(&expected, b);
    }
    let consumer = start("late");
    let n_all = points(&first) + points(&second);
    wait_until("the second half", || store.stats().recorded >= n_all).await;
    consumer.stop().await;
    assert_eq!(store.stats().recorded, n_all);
    assert!(store.same_data(&expected));
    broker.shutdown().await;
}

fn span_request(service: Option<&str>, version: Option<&str>) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
    };
    let mut attributes = Vec::new();
    if let Some(s) = service {
        attributes.push(kv("service.name", s));
    }
    if let Some(v) = version {
        attributes.push(kv("service.version", v));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "GET /cart".to_owned(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_012_000_000,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn arrow_garbage() -> Vec<u8> {
    // A continuation marker and a length that points past the end.
    vec![0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 1, 2, 3]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_dead_lettered_and_consumption_goes_on() {
    let broker = broker().await;
    let producer = producer(&broker);
    let store = store();
    let mut nan = batch("checkout", "v1", 1, 3);
    nan.values[1] = f64::NAN;
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "vigil.samples",
            b"\xff\xff\xff not protobuf".to_vec(),
            "bad_protobuf",
        ),
        ("vigil.samples", nan.encode_to_vec(), "not_finite"),
        ("vigil.events", b"{\"ts\": 1, oops".to_vec(), "bad_json"),
        (
            "vigil.events",
            b"{\"ts\":1700000000,\"service\":\"a\",\"version\":\"v1\",\"latency_ms\":-3}".to_vec(),
            "invalid_event",
        ),
        (
            "vigil.events",
            b"{\"ts\":1700000000,\"version\":\"v1\",\"latency_ms\":3}".to_vec(),
            "invalid_event",
        ),
        (
            "otlp_spans",
            span_request(None, Some("v1")),
            "missing_service",
        ),
        (
            "otlp_spans",
            span_request(Some("cart"), None),
            "missing_version",
        ),
        (
            "otlp_spans",
            b"\x0a\xff\xff\xff\xff\x0f".to_vec(),
            "bad_protobuf",
        ),
        ("vigil.arrow", arrow_garbage(), "bad_arrow"),
    ];
    let consumer = start_consumer(&broker, &store, "dlq");
    for (topic, payload, _) in &bad {
        produce(&producer, topic, "k", payload).await;
    }
    // Good messages after the bad ones, on the same topics.
    let good = batch("checkout", "v1", 2, 10);
    produce(&producer, "vigil.samples", "k", &good.encode_to_vec()).await;
    produce(
        &producer,
        "vigil.events",
        "k",
        b"{\"ts\":1700000001,\"service\":\"a\",\"version\":\"v1\",\"latency_ms\":3}",
    )
    .await;
    produce(
        &producer,
        "otlp_spans",
        "k",
        &span_request(Some("cart"), Some("v2")),
    )
    .await;
    // 10 values, one request event (latency + error_rate), one server span
    // (latency + error_rate).
    wait_until("the good messages", || store.stats().recorded >= 14).await;
    assert_eq!(store.stats().recorded, 14);

    let letters = read_topic(&broker, "vigil.dlq", 3, bad.len()).await;
    for (topic, payload, reason) in &bad {
        let letter = letters
            .iter()
            .find(|l| l.payload == *payload)
            .unwrap_or_else(|| panic!("no dead letter for a {reason} message on {topic}"));
        assert_eq!(letter.header(headers::REASON), Some(*reason), "{letter:?}");
        assert_eq!(letter.header(headers::TOPIC), Some(*topic));
        assert!(letter.header(headers::ERROR).is_some_and(|e| !e.is_empty()));
        let partition: i32 = letter.header(headers::PARTITION).unwrap().parse().unwrap();
        assert!((0..3).contains(&partition));
        let offset: i64 = letter.header(headers::OFFSET).unwrap().parse().unwrap();
        assert!(offset >= 0);
        assert!(consumer.metrics.rejected_count(topic, reason) >= 1);
    }
    assert_eq!(
        consumer
            .metrics
            .rejected_count("vigil.events", "invalid_event"),
        2
    );
    assert_eq!(consumer.metrics.dlq_failed.get(), 0);
    consumer.stop().await;
    assert_eq!(store.stats().recorded, 14);

    // The good span became a latency of 12 ms for cart v2.
    let key = vigil_core::SeriesKey {
        service: ServiceName::new("cart").unwrap(),
        version: Version::new("v2").unwrap(),
        metric: MetricName::new("latency").unwrap(),
        labels: Labels::empty(),
    };
    let from = store.slice_of(T0) - 1;
    let data = store.merged(&key, from, from + 10).unwrap();
    let expected = Store::new(store.config().clone());
    expected
        .record(&Sample {
            ts: T0 + 0.012,
            service: key.service.clone(),
            version: key.version.clone(),
            metric: key.metric.clone(),
            labels: Labels::empty(),
            observation: Observation::Value(12.0),
        })
        .unwrap();
    assert_eq!(Some(data), expected.merged(&key, from, from + 10));
    broker.shutdown().await;
}

/// A sink that records into a store once the gate opens: a store that
/// cannot keep up.
struct Gated {
    store: Store,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl vigil_ingest::SampleSink for Gated {
    fn record_samples(&self, samples: &[Sample]) -> u64 {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.store.record_samples(samples)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_pauses_consumption_instead_of_buffering() {
    let broker = broker().await;
    let producer = producer(&broker);
    let sink = std::sync::Arc::new(Gated {
        store: Store::new(vigil_core::store::StoreConfig::default()),
        open: std::sync::Mutex::new(false),
        opened: std::sync::Condvar::new(),
    });
    let mut config = vigil_ingest::IngestConfig::new(broker.bootstrap_servers());
    config.workers = 1;
    // Far more messages than a worker may hold, spread over the topic's
    // partitions (a key per message). Values only: a change of kind would
    // make the worker record, and so block, sooner.
    const TOTAL: usize = 1000;
    let all: Vec<(String, SampleBatch)> = (0..TOTAL as u64)
        .map(|i| (format!("k{i}"), batch("checkout", "v1", i, 10)))
        .collect();
    // Enqueued at once (librdkafka copies each payload), then their
    // deliveries awaited.
    let deliveries: Vec<_> = all
        .iter()
        .map(|(key, b)| {
            producer
                .send_result(
                    rdkafka::producer::FutureRecord::to("vigil.samples")
                        .key(key)
                        .payload(&b.encode_to_vec()),
                )
                .map_err(|(e, _)| e)
                .unwrap()
        })
        .collect();
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    let consumer = start_consumer_with(config, sink.clone(), "backpressure");
    let received = || {
        consumer
            .metrics
            .messages
            .get_or_create(&vec![("topic".to_owned(), "vigil.samples".to_owned())])
            .get()
    };
    // The worker takes batches until it records (after OFFSET_BATCH
    // messages at the latest, sooner if it runs out or FLUSH_AFTER passes),
    // then is stuck in the store: it takes nothing more, and the rest wait
    // in librdkafka's bounded prefetch. The count only grows, and a
    // consumer that buffers without limit takes all TOTAL within
    // milliseconds; so, a while later, it must still be under the bound.
    wait_until("a first batch", || received() > 0).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let first = received();
    let bound =
        (vigil_ingest::consumer::OFFSET_BATCH + vigil_ingest::consumer::BATCH_MESSAGES) as u64;
    assert!(
        first < bound,
        "took {first} of {TOTAL} messages into a stuck store (bound {bound})"
    );

    *sink.open.lock().unwrap() = true;
    sink.opened.notify_all();
    let n = points(&all);
    wait_until("every sample", || sink.store.stats().recorded >= n).await;
    assert_eq!(sink.store.stats().recorded, n);
    assert_eq!(received(), TOTAL as u64);
    consumer.stop().await;
    broker.shutdown().await;
}

/// With no broker to answer, the consumer keeps asking for its topics'
/// partitions, and still stops when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_no_broker_stops_when_told() {
    // A port that never answers: bound and kept, never accepted from (a
    // released port could be taken by another test's broker meanwhile).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = vigil_ingest::IngestConfig::new(format!("127.0.0.1:{port}"));
    let consumer = start_consumer_with(config, store(), "nobody");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!consumer.metrics.is_ready());
    tokio::time::timeout(DEADLINE, consumer.stop())
        .await
        .expect("the consumer stops");
    drop(silent);
}
