//! The Kafka consumer: topics in, samples into the store, offsets out.
//!
//! One rdkafka `StreamConsumer` in the configured group reads every topic.
//! Each message is copied into a job and routed by (topic, partition) to one
//! of a few decode workers, dedicated threads, so decoding and recording
//! (CPU work) never run on the async runtime and one partition's messages
//! are handled in order by one worker. Jobs are handed over in batches:
//! after each message it waited for, the consumer also takes the messages
//! librdkafka already has (up to [`HANDOFF_MESSAGES`] or
//! [`HANDOFF_BYTES`]), so a channel send and a thread wake-up serve many
//! messages rather than one. A worker decodes a batch's messages, records
//! all their samples into the store in one call, sends rejections to the
//! dead-letter queue and waits for their delivery, and only then stores the
//! messages' offsets; librdkafka commits stored offsets in the background
//! (`enable.auto.offset.store=false`), and on shutdown the consumer drains
//! the workers and commits synchronously before leaving the group.
//!
//! Backpressure: a worker's queue holds at most `queue_messages` messages
//! (a semaphore of that many permits: the consumer takes one per message it
//! queues, the worker gives a batch's back when it takes the batch). When a
//! worker's queue is full the consumer stops receiving; if the queue is
//! still full after a short grace (a burst rather than a lagging store), it
//! also pauses every assigned partition until the queue takes the message.
//! Memory is bounded by the queues, the batch each worker handles, plus
//! librdkafka's prefetch (`queued.max.messages.kbytes`).
//!
//! Guarantee: at least once (see the crate docs). After a rebalance, the
//! messages of a revoked partition still queued are recorded but their
//! offsets can no longer be stored, so the partition's new owner reads them
//! again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::thread::JoinHandle;

use prometheus_client::metrics::counter::Counter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore, TryAcquireError};
use tokio_stream::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::IngestConfig;
use crate::decode::{decode_compact, DecodeOptions, Format};
use crate::dlq::{DeadLetters, Source};
use crate::metrics::IngestMetrics;
use crate::sink::SampleSink;

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

/// librdkafka's `fetch.queue.backoff.ms` (see where it is set). Public so
/// that `vigil bench ingest` gives its raw consumer the same fetch settings.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Messages a worker handles before storing their offsets at the latest.
const OFFSET_BATCH: usize = 256;

/// Messages handed to the workers per wait for a message, at most.
pub const HANDOFF_MESSAGES: usize = 64;
/// Payload bytes handed to the workers per wait for a message, at most.
pub const HANDOFF_BYTES: usize = 1 << 20;

/// How long a full decode queue may block the consumer before it pauses
/// fetching.
const PAUSE_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

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
    sink: Arc<dyn SampleSink>,
    metrics: IngestMetrics,
}

impl Consumer {
    /// A consumer that records into `sink` (the store, or the server's
    /// ingest path) and counts into `metrics`.
    pub fn new(config: IngestConfig, sink: Arc<dyn SampleSink>, metrics: IngestMetrics) -> Self {
        Consumer {
            config,
            sink,
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
            )
            // Once the prefetch queue is full, librdkafka waits this long
            // before fetching again (1 s by default): a consumer that drains
            // its queue in a fraction of that idled for the rest, reading a
            // backlog at a quarter of its speed (`vigil bench ingest`).
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
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
        let mut queues = Vec::with_capacity(config.workers);
        let mut threads = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let (tx, rx) = mpsc::unbounded_channel();
            let permits = Arc::new(Semaphore::new(config.queue_messages));
            let worker = Worker {
                consumer: Arc::clone(&consumer),
                sink: Arc::clone(&self.sink),
                metrics: self.metrics.clone(),
                dlq: Arc::clone(&dlq),
                runtime: Handle::current(),
                options: config.decode.clone(),
                stored: Arc::clone(&stored),
                permits: Arc::clone(&permits),
            };
            let thread = std::thread::Builder::new()
                .name(format!("vigil-ingest-{index}"))
                .spawn(move || worker.run(rx))
                .map_err(IngestError::Spawn)?;
            queues.push(Queue {
                tx,
                permits,
                batch: Vec::new(),
            });
            threads.push(thread);
        }
        info!(topics = ?topics, group = %config.group_id, "kafka consumer started");
        let mut topic_names: HashMap<String, (Arc<str>, Counter)> = HashMap::new();
        // A received message as a job; `None` for an error (transient broker
        // errors and unknown topics: librdkafka retries by itself) or a
        // topic with no format.
        let mut job_of = |received: Result<BorrowedMessage<'_>, KafkaError>| -> Option<Job> {
            let message = match received {
                Ok(message) => message,
                Err(error) => {
                    debug!(%error, "kafka consumer error");
                    return None;
                }
            };
            let format = config.format_of(message.topic())?;
            // Looked up by `&str` first: no key is built per message.
            if !topic_names.contains_key(message.topic()) {
                let counter = self
                    .metrics
                    .messages
                    .get_or_create(&IngestMetrics::topic(message.topic()))
                    .clone();
                topic_names.insert(
                    message.topic().to_owned(),
                    (Arc::from(message.topic()), counter),
                );
            }
            let (topic, received) = topic_names.get(message.topic())?;
            received.inc();
            Some(Job {
                topic: Arc::clone(topic),
                format,
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
            })
        };
        let mut stream = consumer.stream();
        // A message received but not yet admitted to its worker's queue.
        let mut held: Option<Job> = None;

        let result = loop {
            let job = match held.take() {
                Some(job) => job,
                None => {
                    let received = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break Ok(()),
                        m = stream.next() => m,
                    };
                    match received.and_then(&mut job_of) {
                        Some(job) => job,
                        None => continue,
                    }
                }
            };
            let w = worker_of(&job.topic, job.partition, queues.len());
            match admit(&queues[w].permits, &consumer, &self.metrics, &shutdown).await {
                Admitted::Yes => {}
                // Shutting down; the job's offset was never stored.
                Admitted::ShuttingDown => break Ok(()),
                Admitted::WorkerGone => break Err(IngestError::WorkerPanicked),
            }
            let (mut n, mut bytes) = (1, job.payload.len());
            queues[w].batch.push(job);
            // Take what librdkafka already holds, while the queues have room.
            while n < HANDOFF_MESSAGES && bytes < HANDOFF_BYTES {
                let job = match ready_now(&mut stream) {
                    Some(received) => match job_of(received) {
                        Some(job) => job,
                        None => continue,
                    },
                    None => break,
                };
                let n_queues = queues.len();
                let queue = &mut queues[worker_of(&job.topic, job.partition, n_queues)];
                match queue.permits.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        n += 1;
                        bytes += job.payload.len();
                        queue.batch.push(job);
                    }
                    Err(_) => {
                        held = Some(job);
                        break;
                    }
                }
            }
            if !queues.iter_mut().all(Queue::flush) {
                break Err(IngestError::WorkerPanicked);
            }
        };

        // Drain: workers finish their queues and exit when the senders go.
        drop(stream);
        drop(queues);
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

/// A worker's queue as the consumer sees it.
struct Queue {
    tx: mpsc::UnboundedSender<Vec<Job>>,
    /// Room left in the queue, in messages.
    permits: Arc<Semaphore>,
    /// Jobs admitted (a permit each), not yet sent.
    batch: Vec<Job>,
}

impl Queue {
    /// Sends the admitted jobs; false if the worker is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(HANDOFF_MESSAGES));
        self.tx.send(batch).is_ok()
    }
}

enum Admitted {
    Yes,
    ShuttingDown,
    WorkerGone,
}

/// Takes room for one message in a worker's queue: at once if there is
/// some, else after waiting, pausing every partition if the wait outlasts
/// [`PAUSE_AFTER`] (the store is behind) until the room is there.
async fn admit(
    permits: &Semaphore,
    consumer: &KafkaConsumer,
    metrics: &IngestMetrics,
    shutdown: &CancellationToken,
) -> Admitted {
    match permits.try_acquire() {
        Ok(permit) => {
            permit.forget();
            return Admitted::Yes;
        }
        Err(TryAcquireError::Closed) => return Admitted::WorkerGone,
        Err(TryAcquireError::NoPermits) => {}
    }
    // A burst: wait briefly with librdkafka still prefetching (bounded by
    // queued.max.messages.kbytes). Pausing at once would drop the
    // prefetched messages and cost a fetch round trip per burst.
    match tokio::time::timeout(PAUSE_AFTER, permits.acquire()).await {
        Ok(Ok(permit)) => {
            permit.forget();
            return Admitted::Yes;
        }
        Ok(Err(_)) => return Admitted::WorkerGone,
        Err(_) => {}
    }
    // The store is behind: stop fetching until it catches up.
    metrics.paused.inc();
    let paused = pause(consumer);
    let admitted = tokio::select! {
        () = shutdown.cancelled() => Admitted::ShuttingDown,
        r = permits.acquire() => match r {
            Ok(permit) => {
                permit.forget();
                Admitted::Yes
            }
            Err(_) => Admitted::WorkerGone,
        },
    };
    if let Some(tpl) = paused {
        if let Err(error) = consumer.resume(&tpl) {
            debug!(%error, "cannot resume partitions");
        }
    }
    admitted
}

/// The stream's next item if it is there without waiting.
fn ready_now<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match Pin::new(stream).poll_next(&mut cx) {
        Poll::Ready(item) => item,
        Poll::Pending => None,
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
/// messages are recorded and their offsets stored in order. A topic's
/// partitions go round the workers from a place set by the topic's name,
/// so they are spread evenly (hashing each partition could leave most on
/// one worker, which then sets the pace of all).
fn worker_of(topic: &str, partition: i32, n_workers: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    let partition = u64::from(partition.unsigned_abs());
    (hasher.finish().wrapping_add(partition) % n_workers as u64) as usize
}

/// A decode worker's shared handles.
struct Worker {
    consumer: Arc<KafkaConsumer>,
    sink: Arc<dyn SampleSink>,
    metrics: IngestMetrics,
    dlq: Arc<DeadLetters>,
    runtime: Handle,
    options: DecodeOptions,
    stored: Stored,
    /// Room in this worker's queue (see [`Queue`]).
    permits: Arc<Semaphore>,
}

/// Decoded data of a run of messages, not yet recorded (reused buffers).
#[derive(Default)]
struct Pending {
    samples: Vec<vigil_core::Sample>,
    values: Vec<vigil_proto::BatchValues>,
}

impl Pending {
    fn clear(&mut self) {
        self.samples.clear();
        self.values.clear();
    }

    /// Records what is pending; returns how many samples were recorded.
    fn record(&mut self, sink: &dyn SampleSink) -> u64 {
        let mut recorded = 0;
        if !self.values.is_empty() {
            recorded += sink.record_values(&self.values);
        }
        if !self.samples.is_empty() {
            recorded += sink.record_samples(&self.samples);
        }
        self.clear();
        recorded
    }
}

/// Closes a worker's queue room when the worker ends (or panics), so a
/// consumer waiting for room learns it will never come.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Worker {
    fn run(self, mut jobs: mpsc::UnboundedReceiver<Vec<Job>>) {
        let _close = CloseOnDrop(Arc::clone(&self.permits));
        // Offsets of handled messages not yet stored, stored in one call per
        // drained queue (or every OFFSET_BATCH messages) rather than one FFI
        // call per message.
        let mut pending: HashMap<(Arc<str>, i32), i64> = HashMap::new();
        let mut n_pending = 0;
        let mut pending_data = Pending::default();
        let mut counters: HashMap<Arc<str>, Counter> = HashMap::new();
        loop {
            let batch = match jobs.try_recv() {
                Ok(batch) => batch,
                Err(mpsc::error::TryRecvError::Empty) => {
                    self.store_offsets(&mut pending);
                    n_pending = 0;
                    match jobs.blocking_recv() {
                        Some(batch) => batch,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            // The batch left the queue: its room is free again.
            self.permits.add_permits(batch.len());
            self.handle(&batch, &mut pending_data, &mut counters);
            for job in &batch {
                pending.insert((Arc::clone(&job.topic), job.partition), job.offset + 1);
            }
            n_pending += batch.len();
            if n_pending >= OFFSET_BATCH {
                self.store_offsets(&mut pending);
                n_pending = 0;
            }
        }
        self.store_offsets(&mut pending);
    }

    /// Stores the next offset of each partition handled, for the next commit.
    fn store_offsets(&self, pending: &mut HashMap<(Arc<str>, i32), i64>) {
        if pending.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), &next) in pending.iter() {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(next)) {
                debug!(%error, "cannot list an offset to store");
            }
        }
        // Partitions revoked meanwhile fail alone; their new owner reads
        // those messages again.
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            debug!(%error, "cannot store some offsets");
        }
        let mut stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        for element in tpl.elements() {
            if element.error().is_ok() {
                if let Some(&next) = pending.get(&(Arc::from(element.topic()), element.partition()))
                {
                    stored.insert((Arc::from(element.topic()), element.partition()), next);
                }
            }
        }
        drop(stored);
        pending.clear();
    }

    /// Decodes a batch of messages, records their samples in one call per
    /// run of messages of the same topic and kind (`pending` holds them; a
    /// SampleBatch of values only is kept as one series' values, with no
    /// sample per point), in message order, and dead-letters what is
    /// rejected.
    fn handle(
        &self,
        batch: &[Job],
        pending: &mut Pending,
        counters: &mut HashMap<Arc<str>, Counter>,
    ) {
        pending.clear();
        for (k, job) in batch.iter().enumerate() {
            let source = |line| Source {
                topic: &job.topic,
                partition: job.partition,
                offset: job.offset,
                key: job.key.as_deref(),
                line,
            };
            let mut recorded = 0;
            match decode_compact(job.format, &job.payload, &self.options) {
                Ok(decoded) => {
                    // Samples and values are recorded in message order.
                    if !decoded.values.is_empty() && !pending.samples.is_empty() {
                        recorded += pending.record(self.sink.as_ref());
                    }
                    if !decoded.samples.is_empty() && !pending.values.is_empty() {
                        recorded += pending.record(self.sink.as_ref());
                    }
                    pending.values.extend(decoded.values);
                    pending.samples.extend(decoded.samples);
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
            let run_ends = batch.get(k + 1).is_none_or(|next| next.topic != job.topic);
            if run_ends {
                recorded += pending.record(self.sink.as_ref());
            }
            if recorded > 0 {
                counters
                    .entry(Arc::clone(&job.topic))
                    .or_insert_with(|| {
                        self.metrics
                            .samples
                            .get_or_create(&IngestMetrics::topic(&job.topic))
                            .clone()
                    })
                    .inc_by(recorded);
            }
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

    #[test]
    fn a_topics_partitions_are_spread_evenly() {
        for (partitions, workers) in [(12, 2), (12, 3), (7, 2), (24, 5)] {
            let mut load = vec![0; workers];
            for p in 0..partitions {
                load[worker_of("bench", p, workers)] += 1;
            }
            let (min, max) = (load.iter().min(), load.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{load:?}");
        }
    }
}
