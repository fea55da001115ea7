//! The consumer's Prometheus metrics and its readiness.
//!
//! Names follow `vigil_<subsystem>_<name>_<unit>[_total]`; labels are topic,
//! partition and a bounded `reason` ([`crate::DecodeError::reason`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Counters and gauges shared by the consumer's threads (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Messages received, by topic.
    pub messages: Family<Labels, Counter>,
    /// Samples recorded into the store, by topic.
    pub samples: Family<Labels, Counter>,
    /// Messages (or JSON lines) rejected and dead-lettered, by topic and reason.
    pub rejected: Family<Labels, Counter>,
    /// Dead-letter records that could not be produced.
    pub dlq_failed: Counter,
    /// Messages behind the partition's high watermark, by topic and partition.
    pub lag: Family<Labels, Gauge>,
    /// Partitions currently assigned.
    pub assigned: Gauge,
    ready: Arc<AtomicBool>,
}

impl IngestMetrics {
    /// Fresh metrics, registered in `registry` under `vigil_kafka_*` (the
    /// server's own `vigil_ingest_*` counts samples by source).
    pub fn new(registry: &mut Registry) -> Self {
        let m = IngestMetrics::default();
        let r = registry.sub_registry_with_prefix("vigil_kafka");
        r.register("messages", "Kafka messages received", m.messages.clone());
        r.register(
            "samples",
            "Samples recorded into the store",
            m.samples.clone(),
        );
        r.register(
            "rejected",
            "Messages or lines rejected to the dead-letter queue, by reason",
            m.rejected.clone(),
        );
        r.register(
            "dlq_failed",
            "Dead-letter records that could not be produced",
            m.dlq_failed.clone(),
        );
        r.register(
            "consumer_lag_messages",
            "Messages behind the high watermark, per partition",
            m.lag.clone(),
        );
        r.register(
            "assigned_partitions",
            "Partitions assigned to this consumer",
            m.assigned.clone(),
        );
        m
    }

    /// Whether the consumer group has assigned this consumer its partitions
    /// (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The readiness flag itself, for a server that polls it.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn topic(topic: &str) -> Labels {
        vec![("topic".to_owned(), topic.to_owned())]
    }

    pub(crate) fn topic_reason(topic: &str, reason: &str) -> Labels {
        vec![
            ("topic".to_owned(), topic.to_owned()),
            ("reason".to_owned(), reason.to_owned()),
        ]
    }

    pub(crate) fn partition(topic: &str, partition: i32) -> Labels {
        vec![
            ("topic".to_owned(), topic.to_owned()),
            ("partition".to_owned(), partition.to_string()),
        ]
    }

    /// Rejections so far for a topic and reason (for tests and reports).
    pub fn rejected_count(&self, topic: &str, reason: &str) -> u64 {
        self.rejected
            .get_or_create(&Self::topic_reason(topic, reason))
            .get()
    }

    /// Samples recorded so far from a topic.
    pub fn samples_count(&self, topic: &str) -> u64 {
        self.samples.get_or_create(&Self::topic(topic)).get()
    }
}
