//! Shared set-up of the Kafka integration tests: an in-process dev broker,
//! a producer, a consumer driven on a token, bounded waits.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::dev::DevBroker;
use vigil_ingest::{Consumer, IngestConfig, IngestMetrics};

/// Every wait in these tests gives up (and fails) after this long.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub async fn broker() -> DevBroker {
    DevBroker::start(0, 3).await.unwrap()
}

pub fn producer(broker: &DevBroker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

pub fn store() -> Arc<Store> {
    Arc::new(Store::new(StoreConfig::default()))
}

/// A running consumer and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub metrics: IngestMetrics,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), vigil_ingest::IngestError>>,
}

impl Running {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub fn start_consumer(broker: &DevBroker, store: &Arc<Store>, group: &str) -> Running {
    let config = IngestConfig::new(broker.bootstrap_servers());
    start_consumer_with(config, store.clone(), group)
}

pub fn start_consumer_with(
    mut config: IngestConfig,
    sink: Arc<dyn vigil_ingest::SampleSink>,
    group: &str,
) -> Running {
    config.group_id = group.to_owned();
    config.client_properties.extend([
        ("session.timeout.ms".to_owned(), "6000".to_owned()),
        ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
    ]);
    let metrics = IngestMetrics::new(&mut Registry::default());
    let cancel = CancellationToken::new();
    let consumer = Consumer::new(config, sink, metrics.clone());
    let task = tokio::spawn(consumer.run(cancel.clone()));
    Running {
        metrics,
        cancel,
        task,
    }
}

/// Polls `done` until it holds; fails the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dead-letter record as read back.
#[derive(Debug)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl DeadLetter {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `n` records of `topic` from the start of its partitions.
pub async fn read_topic(
    broker: &DevBroker,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        let left = DEADLINE.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "read {} of {n} records of {topic}",
            out.len()
        );
        let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await else {
            continue;
        };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}
