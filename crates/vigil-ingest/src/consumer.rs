//! The Kafka consumer: topics in, samples into the store, offsets out.
//!
//! One rdkafka `StreamConsumer` in the configured group reads every topic.
//! Each message is copied into a job and routed by (topic, partition) to one
//! of a few decode workers, dedicated threads fed by bounded channels, so
//! decoding and recording (CPU work) never run on the async runtime and one
//! partition's messages are handled in order by one worker. A worker decodes
//! the message, records its samples into the store, sends rejections to the
//! dead-letter queue and waits for their delivery, and only then stores the
//! message's offset; librdkafka commits stored offsets in the background
//! (`enable.auto.offset.store=false`), and on shutdown the consumer drains
//! the workers and commits synchronously before leaving the group.
//!
//! Backpressure: when a worker's queue is full (the store or the machine is
//! behind), the consumer pauses every assigned partition until the queue
//! takes the message, so memory is bounded by the queues plus librdkafka's
//! prefetch (`queued.max.messages.kbytes` per partition).
//!
//! Guarantee: at least once (see the crate docs). After a rebalance, the
//! messages of a revoked partition still queued are recorded but their
//! offsets can no longer be stored, so the partition's new owner reads them
//! again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vigil_core::store::Store;
use vigil_core::CoreError;

use crate::config::IngestConfig;
use crate::decode::{decode, DecodeOptions, Format};
use crate::dlq::{DeadLetters, Source};
use crate::metrics::IngestMetrics;

/// Why the consumer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// librdkafka refused the configuration or the subscription.
    #[error("kafka client")]
    Kafka(#[from] KafkaError),
    /// A decode worker could not be started.
    #[error("cannot start a decode worker")]
    Spawn(#[source] std::io::Error),
    /// A decode worker panicked (a bug: decoding never panics on input).
    #[error("a decode worker panicked")]
    WorkerPanicked,
    /// The configuration is unusable.
    #[error("invalid ingest configuration: {0}")]
    Config(&'static str),
}

/// The rdkafka context: consumer lag from librdkafka's statistics, and
/// readiness from rebalances.
struct Context {
    metrics: IngestMetrics,
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                // -1 is librdkafka's internal unassigned partition; a lag of
                // -1 means unknown (no position or watermark yet).
                if partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .get_or_create(&IngestMetrics::partition(name, partition))
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "partitions assigned");
                self.metrics.assigned.set(tpl.count() as i64);
                self.metrics.set_ready(true);
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = tpl.count(), "partitions revoked");
                self.metrics.assigned.set(0);
            }
            Rebalance::Error(error) => warn!(%error, "rebalance failed"),
        }
    }
}

type KafkaConsumer = StreamConsumer<Context>;

/// One message, copied out of librdkafka's buffer for a worker.
struct Job {
    topic: Arc<str>,
    format: Format,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// Offsets stored so far (next offset to read), for the final commit.
type Stored = Arc<Mutex<HashMap<(Arc<str>, i32), i64>>>;

/// The Kafka consumer. Build it with [`Consumer::new`], then drive it with
/// [`Consumer::run`] until its token is cancelled.
#[derive(Debug)]
pub struct Consumer {
    config: IngestConfig,
    store: Arc<Store>,
    metrics: IngestMetrics,
}

impl Consumer {
    /// A consumer that records into `store` and counts into `metrics`.
    pub fn new(config: IngestConfig, store: Arc<Store>, metrics: IngestMetrics) -> Self {
        Consumer {
            config,
            store,
            metrics,
        }
    }

    /// Consumes until `shutdown` is cancelled, then drains the workers,
    /// commits the stored offsets and leaves the group.
    ///
    /// # Errors
    ///
    /// When the client cannot be created or subscribed, or a worker panics.
    /// Bad messages are never errors: they are counted and dead-lettered.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), IngestError> {
        let config = &self.config;
        if config.workers == 0 || config.queue_messages == 0 {
            return Err(IngestError::Config(
                "workers and queue_messages must be at least 1",
            ));
        }
        let mut client_config = ClientConfig::new();
        client_config
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            .set(
                "queued.max.messages.kbytes",
                config.prefetch_kbytes.to_string(),
            );
        for (key, value) in &config.client_properties {
            client_config.set(key, value);
        }
        let consumer: Arc<KafkaConsumer> =
            Arc::new(client_config.create_with_context(Context {
                metrics: self.metrics.clone(),
            })?);
        let topics: Vec<&str> = config.topics.iter().map(|t| t.topic.as_str()).collect();
        consumer.subscribe(&topics)?;
        let dlq = Arc::new(DeadLetters::new(&config.brokers, &config.dlq_topic)?);
        let stored: Stored = Arc::default();
        let mut senders = Vec::with_capacity(config.workers);
        let mut threads = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let (tx, rx) = mpsc::channel(config.queue_messages);
            let worker = Worker {
                consumer: Arc::clone(&consumer),
                store: Arc::clone(&self.store),
                metrics: self.metrics.clone(),
                dlq: Arc::clone(&dlq),
                runtime: Handle::current(),
                options: config.decode.clone(),
                stored: Arc::clone(&stored),
            };
            let thread = std::thread::Builder::new()
                .name(format!("vigil-ingest-{index}"))
                .spawn(move || worker.run(rx))
                .map_err(IngestError::Spawn)?;
            senders.push(tx);
            threads.push(thread);
        }
        info!(topics = ?topics, group = %config.group_id, "kafka consumer started");
        let mut topic_names: HashMap<String, Arc<str>> = HashMap::new();

        let result = loop {
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ok(()),
                m = consumer.recv() => m,
            };
            let job = match received {
                Ok(message) => {
                    let Some(format) = config.format_of(message.topic()) else {
                        continue;
                    };
                    let topic = topic_names
                        .entry(message.topic().to_owned())
                        .or_insert_with(|| Arc::from(message.topic()))
                        .clone();
                    Job {
                        topic,
                        format,
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().unwrap_or_default().to_vec(),
                    }
                }
                Err(error) => {
                    // Transient broker errors and unknown topics: librdkafka
                    // retries by itself.
                    debug!(%error, "kafka consumer error");
                    continue;
                }
            };
            self.metrics
                .messages
                .get_or_create(&IngestMetrics::topic(&job.topic))
                .inc();
            let sender = &senders[worker_of(&job.topic, job.partition, senders.len())];
            match sender.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(job)) => {
                    self.metrics.paused.inc();
                    let paused = pause(&consumer);
                    let sent = tokio::select! {
                        () = shutdown.cancelled() => None,
                        r = sender.send(job) => Some(r.is_ok()),
                    };
                    if let Some(tpl) = paused {
                        if let Err(error) = consumer.resume(&tpl) {
                            debug!(%error, "cannot resume partitions");
                        }
                    }
                    match sent {
                        Some(true) => {}
                        Some(false) => break Err(IngestError::WorkerPanicked),
                        // Shutting down; the job's offset was never stored.
                        None => break Ok(()),
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    break Err(IngestError::WorkerPanicked);
                }
            }
        };

        // Drain: workers finish their queues and exit when the senders go.
        drop(senders);
        let joined = tokio::task::spawn_blocking(move || {
            threads.into_iter().map(JoinHandle::join).all(|r| r.is_ok())
        })
        .await
        .unwrap_or(false);
        commit_stored(&consumer, &stored);
        self.metrics.set_ready(false);
        info!("kafka consumer stopped");
        match result {
            Ok(()) if !joined => Err(IngestError::WorkerPanicked),
            other => other,
        }
    }
}

/// Pauses every assigned partition; returns them for the resume.
fn pause(consumer: &KafkaConsumer) -> Option<TopicPartitionList> {
    let assignment = consumer.assignment().ok()?;
    match consumer.pause(&assignment) {
        Ok(()) => Some(assignment),
        Err(error) => {
            debug!(%error, "cannot pause partitions");
            None
        }
    }
}

/// Commits the offsets the workers stored, for the partitions still
/// assigned, and waits for the broker's answer.
fn commit_stored(consumer: &KafkaConsumer, stored: &Stored) {
    let assignment = consumer.assignment().unwrap_or_default();
    let stored = stored.lock().unwrap_or_else(PoisonError::into_inner);
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), &next) in stored.iter() {
        if assignment.find_partition(topic, *partition).is_some() {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(next)) {
                warn!(%error, "cannot build the final commit");
            }
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => info!(partitions = tpl.count(), "offsets committed"),
        Err(error) => warn!(%error, "final offset commit failed"),
    }
}

/// Which worker handles a partition: always the same one, so a partition's
/// messages are recorded and their offsets stored in order.
fn worker_of(topic: &str, partition: i32, n_workers: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    partition.hash(&mut hasher);
    (hasher.finish() % n_workers as u64) as usize
}

/// A decode worker's shared handles.
struct Worker {
    consumer: Arc<KafkaConsumer>,
    store: Arc<Store>,
    metrics: IngestMetrics,
    dlq: Arc<DeadLetters>,
    runtime: Handle,
    options: DecodeOptions,
    stored: Stored,
}

impl Worker {
    fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            self.handle(&job);
        }
    }

    fn handle(&self, job: &Job) {
        let source = |line| Source {
            topic: &job.topic,
            partition: job.partition,
            offset: job.offset,
            key: job.key.as_deref(),
            line,
        };
        match decode(job.format, &job.payload, &self.options) {
            Ok(decoded) => {
                let outcome = self.store.record_batch(&decoded.samples);
                for (_, error) in &outcome.rejected {
                    self.metrics
                        .store_rejected
                        .get_or_create(&IngestMetrics::reason(store_reason(error)))
                        .inc();
                }
                let recorded = outcome.recorded as u64;
                self.metrics
                    .samples
                    .get_or_create(&IngestMetrics::topic(&job.topic))
                    .inc_by(recorded);
                for rejected in &decoded.rejected_lines {
                    let line = match &rejected.error {
                        crate::DecodeError::Event { line, .. } => Some(*line),
                        _ => None,
                    };
                    self.dead_letter(&rejected.payload, &rejected.error, source(line));
                }
            }
            Err(error) => self.dead_letter(&job.payload, &error, source(None)),
        }
        match self
            .consumer
            .store_offset(&job.topic, job.partition, job.offset)
        {
            Ok(()) => {
                self.stored
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((Arc::clone(&job.topic), job.partition), job.offset + 1);
            }
            // Revoked meanwhile: the new owner reads the message again.
            Err(error) => debug!(%error, partition = job.partition, "cannot store offset"),
        }
    }

    fn dead_letter(&self, payload: &[u8], error: &crate::DecodeError, source: Source<'_>) {
        self.metrics
            .rejected
            .get_or_create(&IngestMetrics::topic_reason(source.topic, error.reason()))
            .inc();
        debug!(%error, topic = source.topic, partition = source.partition, offset = source.offset, "message rejected");
        if let Err(e) = self.runtime.block_on(self.dlq.send(payload, error, source)) {
            self.metrics.dlq_failed.inc();
            warn!(error = %e, topic = source.topic, partition = source.partition, offset = source.offset, "cannot dead-letter a rejected message");
        }
    }
}

pub(crate) fn store_reason(error: &CoreError) -> &'static str {
    match error {
        CoreError::TooOld { .. } => "too_old",
        CoreError::KindMismatch { .. } => "kind_mismatch",
        CoreError::TooLarge { .. } => "too_large",
        _ => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_always_goes_to_the_same_worker() {
        for p in 0..16 {
            let w = worker_of("vigil.samples", p, 3);
            assert!(w < 3);
            assert_eq!(w, worker_of("vigil.samples", p, 3));
        }
    }
}
