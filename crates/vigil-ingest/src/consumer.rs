//! The Kafka consumer: topics in, samples into the store, offsets out.
//!
//! One rdkafka `BaseConsumer` in the configured group reads every topic.
//! Before it subscribes, the consumer splits each partition the topics have
//! into a queue of its own (librdkafka's partition queues) and gives each
//! queue to one of a few decode workers, dedicated threads: a worker takes
//! its partitions' messages straight from librdkafka, decodes them from
//! librdkafka's buffers (no copy, no hop through the async runtime),
//! records a batch's samples into the store in one call per run of one
//! topic, sends rejections to the dead-letter queue and waits for their
//! delivery, and only then stores the messages' offsets. librdkafka commits
//! stored offsets in the background (`enable.auto.offset.store=false`); on
//! shutdown the workers finish their batch and the consumer commits
//! synchronously before leaving the group. A partition's messages are
//! handled in order, by the one worker that holds its queue.
//!
//! One control thread polls the consumer's main queue: it serves rebalances,
//! statistics (consumer lag) and commit results, and handles the messages
//! of partitions that did not exist when the consumer started (a topic
//! created or grown later), which librdkafka delivers there.
//!
//! Backpressure: a worker takes messages only when it has handled the
//! previous batch, so when the store lags, the messages wait in librdkafka,
//! which stops fetching a partition once its queue holds
//! `queued.max.messages.kbytes` ([`IngestConfig::prefetch_kbytes`]). Memory
//! is bounded by that prefetch per assigned partition plus one batch per
//! worker; nothing is buffered without limit.
//!
//! Guarantee: at least once (see the crate docs). After a rebalance, the
//! messages of a revoked partition that a worker is handling are recorded
//! but their offsets can no longer be stored, so the partition's new owner
//! reads them again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
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

type KafkaConsumer = BaseConsumer<Context>;

/// librdkafka's `fetch.queue.backoff.ms` (see where it is set). Public so
/// that `vigil bench ingest` gives its raw consumer the same fetch settings.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Messages a worker handles before storing their offsets at the latest.
pub const OFFSET_BATCH: usize = 256;

/// A worker records what it decoded once it holds this many samples, if
/// [`OFFSET_BATCH`] messages have not come first (bounds its memory for
/// large messages: about 1 MB of decoded values).
pub const FLUSH_SAMPLES: usize = 1 << 16;

/// ... or once the first of them waited this long (a worker that never
/// runs out of messages, yet gets fewer than [`OFFSET_BATCH`] a while).
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// Messages a worker takes from one partition per batch, at most (their
/// samples are kept with the next batches' until [`Handler::flush`]).
/// With [`OFFSET_BATCH`], this bounds what a worker holds: it records
/// (and so stops taking messages while the store is stuck) once it has
/// taken [`OFFSET_BATCH`] messages, at most `BATCH_MESSAGES - 1` past that.
pub const BATCH_MESSAGES: usize = 64;
/// Payload bytes a worker takes from one partition per batch, at most.
pub const BATCH_BYTES: usize = 1 << 20;

/// How long the control thread, or a worker with nothing to do, waits
/// before it looks at the shutdown token again.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// How long one request for a topic's partitions may take at start.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

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

    /// Consumes until `shutdown` is cancelled, then lets the workers finish
    /// their batch, commits the stored offsets and leaves the group. The
    /// consumer runs on threads of its own; dropping this future stops it
    /// as cancelling the token does.
    ///
    /// # Errors
    ///
    /// When the client cannot be created or subscribed, or a worker panics.
    /// Bad messages are never errors: they are counted and dead-lettered.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), IngestError> {
        if self.config.workers == 0 {
            return Err(IngestError::Config("workers must be at least 1"));
        }
        let runtime = Handle::current();
        let stop = shutdown.child_token();
        let _stop_on_drop = stop.clone().drop_guard();
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("vigil-kafka".to_owned())
            .spawn(move || {
                // The receiver is gone only if the future was dropped.
                let _ = done.send(self.run_blocking(&stop, runtime));
            })
            .map_err(IngestError::Spawn)?;
        result.await.unwrap_or(Err(IngestError::WorkerPanicked))
    }

    /// [`Consumer::run`]'s body, on the consumer's control thread.
    fn run_blocking(
        self,
        shutdown: &CancellationToken,
        runtime: Handle,
    ) -> Result<(), IngestError> {
        let config = &self.config;
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
        let shared = Arc::new(Shared {
            consumer: Arc::clone(&consumer),
            sink: Arc::clone(&self.sink),
            metrics: self.metrics.clone(),
            dlq: DeadLetters::new(&config.brokers, &config.dlq_topic)?,
            runtime,
            options: config.decode.clone(),
            stored: Arc::default(),
        });
        let topics: HashMap<String, Arc<TopicInfo>> = config
            .topics
            .iter()
            .map(|t| (t.topic.clone(), Arc::new(TopicInfo::new(t, &self.metrics))))
            .collect();

        // Split every partition the topics have now, before subscribing, so
        // that no message of theirs ever reaches the main queue (librdkafka
        // leaves a queue the application split alone when it assigns the
        // partition).
        let bells: Vec<Arc<Doorbell>> = (0..config.workers).map(|_| Arc::default()).collect();
        let mut owned: Vec<Vec<Partition>> = (0..config.workers).map(|_| Vec::new()).collect();
        for topic in &config.topics {
            let Some(info) = topics.get(&topic.topic) else {
                continue;
            };
            let Some(partitions) = partitions_of(&consumer, &topic.topic, shutdown) else {
                return Ok(()); // shut down before the broker answered
            };
            for partition in partitions {
                let w = worker_of(&topic.topic, partition, config.workers);
                let Some(mut queue) = consumer.split_partition_queue(&topic.topic, partition)
                else {
                    continue;
                };
                let bell = Arc::clone(&bells[w]);
                queue.set_nonempty_callback(move || bell.ring());
                owned[w].push(Partition {
                    topic: Arc::clone(info),
                    partition,
                    queue,
                });
            }
        }
        let names: Vec<&str> = config.topics.iter().map(|t| t.topic.as_str()).collect();
        consumer.subscribe(&names)?;

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(config.workers);
        for (index, (partitions, bell)) in owned.into_iter().zip(&bells).enumerate() {
            let handler = Handler::new(Arc::clone(&shared));
            let (bell, stopped) = (Arc::clone(bell), Arc::clone(&stop));
            let thread = std::thread::Builder::new()
                .name(format!("vigil-ingest-{index}"))
                .spawn(move || work(handler, &partitions, &bell, &stopped));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop_workers(&stop, &bells, threads);
                    return Err(IngestError::Spawn(error));
                }
            }
        }
        info!(topics = ?names, group = %config.group_id, workers = config.workers, "kafka consumer started");

        // The main queue: rebalances, statistics, commit results, and the
        // messages of partitions that were not split at start.
        let mut handler = Handler::new(Arc::clone(&shared));
        let mut result = Ok(());
        while !shutdown.is_cancelled() {
            match consumer.poll(IDLE_WAIT) {
                Some(Ok(message)) => {
                    if let Some(topic) = topics.get(message.topic()) {
                        topic.received.inc();
                        handler.handle(topic, std::slice::from_ref(&message));
                        // One message at a time here: recorded at once.
                        handler.flush();
                    }
                }
                // Transient broker errors and unknown topics: librdkafka
                // retries by itself.
                Some(Err(error)) => debug!(%error, "kafka consumer error"),
                None => handler.store_offsets(),
            }
            if threads.iter().any(|t| t.is_finished()) {
                result = Err(IngestError::WorkerPanicked);
                break;
            }
        }
        handler.store_offsets();
        if !stop_workers(&stop, &bells, threads) {
            result = Err(IngestError::WorkerPanicked);
        }
        commit_stored(&consumer, &shared.stored);
        self.metrics.set_ready(false);
        info!("kafka consumer stopped");
        // Dropping the consumer (the last handle, now the workers' queues
        // are gone) leaves the group.
        drop(shared);
        drop(consumer);
        result
    }
}

/// The partitions `topic` has, asking until the broker answers or the
/// consumer is shut down (`None`). A topic that does not exist yet has
/// none: its messages, once it does, come through the main queue.
fn partitions_of(
    consumer: &KafkaConsumer,
    topic: &str,
    shutdown: &CancellationToken,
) -> Option<Vec<i32>> {
    loop {
        match consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
            Ok(metadata) => {
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if partitions.is_empty() {
                    info!(
                        topic,
                        "topic not found at start: its messages will be read from the main queue"
                    );
                }
                return Some(partitions);
            }
            Err(error) => {
                warn!(%error, topic, "cannot read the topic's partitions; trying again");
                // Some failures (no broker resolvable) return at once.
                for _ in 0..20 {
                    if shutdown.is_cancelled() {
                        return None;
                    }
                    std::thread::sleep(IDLE_WAIT);
                }
            }
        }
    }
}

/// Tells the workers to stop, wakes them and waits for them; false if one
/// panicked.
fn stop_workers(
    stop: &AtomicBool,
    bells: &[Arc<Doorbell>],
    threads: Vec<std::thread::JoinHandle<()>>,
) -> bool {
    stop.store(true, Ordering::Release);
    for bell in bells {
        bell.ring();
    }
    threads.into_iter().map(|t| t.join()).all(|r| r.is_ok())
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

/// A consumed topic: its name, its messages' format and its counters.
struct TopicInfo {
    name: Arc<str>,
    format: Format,
    received: Counter,
    samples: Counter,
}

impl TopicInfo {
    fn new(topic: &crate::TopicConfig, metrics: &IngestMetrics) -> Self {
        let labels = IngestMetrics::topic(&topic.topic);
        TopicInfo {
            name: Arc::from(topic.topic.as_str()),
            format: topic.format,
            received: metrics.messages.get_or_create(&labels).clone(),
            samples: metrics.samples.get_or_create(&labels).clone(),
        }
    }
}

/// A partition's own queue, read by one worker.
struct Partition {
    topic: Arc<TopicInfo>,
    partition: i32,
    queue: PartitionQueue<Context>,
}

/// Wakes a worker when one of its queues gets a message (librdkafka calls
/// the queue's callback when it goes from empty to not empty).
#[derive(Default)]
struct Doorbell {
    rung: Mutex<bool>,
    woken: Condvar,
}

impl Doorbell {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.woken.notify_one();
    }

    /// Forgets earlier rings: called before looking at the queues, so a
    /// ring after the look is never lost.
    fn clear(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Waits for a ring, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.woken
                .wait_timeout_while(rung, timeout, |rung| !*rung)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// A worker: takes each of its partitions' messages in batches, handles
/// them, and sleeps when none has any.
fn work(mut handler: Handler, partitions: &[Partition], bell: &Doorbell, stop: &AtomicBool) {
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(BATCH_MESSAGES);
    while !stop.load(Ordering::Acquire) {
        bell.clear();
        let mut busy = false;
        for p in partitions {
            let mut bytes = 0;
            while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
                match p.queue.poll(Duration::ZERO) {
                    Some(Ok(message)) => {
                        bytes += message.payload_len();
                        batch.push(message);
                    }
                    Some(Err(error)) => {
                        debug!(%error, topic = &*p.topic.name, partition = p.partition, "kafka partition error");
                        busy = true;
                        break;
                    }
                    None => break,
                }
            }
            if !batch.is_empty() {
                busy = true;
                p.topic.received.inc_by(batch.len() as u64);
                handler.handle(&p.topic, &batch);
                batch.clear();
            }
        }
        if !busy {
            handler.store_offsets();
            bell.wait(IDLE_WAIT);
        }
    }
    handler.store_offsets();
}

/// What every thread that handles messages shares.
struct Shared {
    consumer: Arc<KafkaConsumer>,
    sink: Arc<dyn SampleSink>,
    metrics: IngestMetrics,
    dlq: DeadLetters,
    runtime: Handle,
    options: DecodeOptions,
    stored: Stored,
}

impl Shared {
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

/// One thread's handling of messages: decode, dead-letter, record, then
/// store the offsets.
struct Handler {
    shared: Arc<Shared>,
    /// Decoded data not yet recorded (buffers reused), of one topic's
    /// messages: recorded in one store call per [`OFFSET_BATCH`] messages
    /// or [`FLUSH_SAMPLES`] samples, at a change of topic, and before
    /// offsets are stored (so an offset is never stored ahead of its
    /// samples).
    data: Pending,
    /// The topic of the messages `data` holds, and when the first came.
    pending_topic: Option<(Arc<TopicInfo>, Instant)>,
    /// Next offsets of handled messages not yet stored, stored in one call
    /// when the thread runs out of messages (or every [`OFFSET_BATCH`]
    /// messages) rather than one FFI call per message.
    offsets: HashMap<(Arc<str>, i32), i64>,
    n_offsets: usize,
}

impl Handler {
    fn new(shared: Arc<Shared>) -> Self {
        Handler {
            shared,
            data: Pending::default(),
            pending_topic: None,
            offsets: HashMap::new(),
            n_offsets: 0,
        }
    }

    /// Decodes a batch of one partition's messages, dead-letters what is
    /// rejected, and keeps their samples for recording in message order (a
    /// SampleBatch of values only is kept as one series' values, with no
    /// sample per point; `data` holds them until a change of kind, of
    /// topic, or [`Handler::flush`]); notes the offset after the last
    /// message for storing.
    ///
    /// Recording many batches in one store call matters when several
    /// workers write the same series (a topic not keyed by service): each
    /// call takes each of its series' locks once.
    fn handle(&mut self, topic: &Arc<TopicInfo>, batch: &[BorrowedMessage<'_>]) {
        if self
            .pending_topic
            .as_ref()
            .is_some_and(|(pending, _)| !Arc::ptr_eq(pending, topic))
        {
            self.flush();
        }
        let since = self
            .pending_topic
            .get_or_insert_with(|| (Arc::clone(topic), Instant::now()))
            .1;
        let shared = &*self.shared;
        let sink = shared.sink.as_ref();
        let data = &mut self.data;
        let mut recorded = 0;
        for message in batch {
            let payload = message.payload().unwrap_or_default();
            let source = |line| Source {
                topic: &topic.name,
                partition: message.partition(),
                offset: message.offset(),
                key: message.key(),
                line,
            };
            match decode_compact(topic.format, payload, &shared.options) {
                Ok(decoded) => {
                    if !decoded.values.is_empty() && !data.samples.is_empty() {
                        recorded += data.record(sink);
                    }
                    if !decoded.samples.is_empty() && !data.values.is_empty() {
                        recorded += data.record(sink);
                    }
                    data.value_points +=
                        decoded.values.iter().map(|v| v.points.len()).sum::<usize>();
                    data.values.extend(decoded.values);
                    data.samples.extend(decoded.samples);
                    for rejected in &decoded.rejected_lines {
                        let line = match &rejected.error {
                            crate::DecodeError::Event { line, .. } => Some(*line),
                            _ => None,
                        };
                        shared.dead_letter(&rejected.payload, &rejected.error, source(line));
                    }
                }
                Err(error) => shared.dead_letter(payload, &error, source(None)),
            }
        }
        if recorded > 0 {
            topic.samples.inc_by(recorded);
        }
        if let Some(last) = batch.last() {
            self.offsets.insert(
                (Arc::clone(&topic.name), last.partition()),
                last.offset() + 1,
            );
            self.n_offsets += batch.len();
            if self.n_offsets >= OFFSET_BATCH
                || self.data.points() >= FLUSH_SAMPLES
                || since.elapsed() >= FLUSH_AFTER
            {
                self.store_offsets();
            }
        }
    }

    /// Records the samples decoded and not yet recorded.
    fn flush(&mut self) {
        let recorded = self.data.record(self.shared.sink.as_ref());
        if let Some((topic, _)) = self.pending_topic.take() {
            if recorded > 0 {
                topic.samples.inc_by(recorded);
            }
        }
    }

    /// Records what is pending, then stores the next offset of each
    /// partition handled, for the next commit.
    fn store_offsets(&mut self) {
        self.flush();
        self.n_offsets = 0;
        if self.offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), &next) in &self.offsets {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(next)) {
                debug!(%error, "cannot list an offset to store");
            }
        }
        // Partitions revoked meanwhile fail alone; their new owner reads
        // those messages again.
        if let Err(error) = self.shared.consumer.store_offsets(&tpl) {
            debug!(%error, "cannot store some offsets");
        }
        let mut stored = self
            .shared
            .stored
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for element in tpl.elements() {
            if element.error().is_ok() {
                let key = (Arc::from(element.topic()), element.partition());
                if let Some(&next) = self.offsets.get(&key) {
                    stored.insert(key, next);
                }
            }
        }
        drop(stored);
        self.offsets.clear();
    }
}

/// Decoded data of a run of messages, not yet recorded (reused buffers).
#[derive(Default)]
struct Pending {
    samples: Vec<vigil_core::Sample>,
    values: Vec<vigil_proto::BatchValues>,
    /// Points in `values`.
    value_points: usize,
}

impl Pending {
    fn clear(&mut self) {
        self.samples.clear();
        self.values.clear();
        self.value_points = 0;
    }

    /// Samples held.
    fn points(&self) -> usize {
        self.samples.len() + self.value_points
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
