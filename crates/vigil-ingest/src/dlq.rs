//! The dead-letter queue: rejected messages, with why and where from.
//!
//! Each record carries the original payload (for JSON lines: the rejected
//! line) and key, and these headers: `vigil.error` (the message),
//! `vigil.reason` (the counter label), `vigil.source.topic`,
//! `vigil.source.partition`, `vigil.source.offset`, and for a JSON line
//! `vigil.source.line`. Delivery is awaited before the source offset is
//! stored; a record that cannot be delivered is logged and counted
//! (`vigil_ingest_dlq_failed_total`), and consumption goes on.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::decode::DecodeError;

/// Header names, a contract with whoever re-drives the dead letters.
pub mod headers {
    /// The error message.
    pub const ERROR: &str = "vigil.error";
    /// The rejection reason (a metrics label).
    pub const REASON: &str = "vigil.reason";
    /// Source topic.
    pub const TOPIC: &str = "vigil.source.topic";
    /// Source partition.
    pub const PARTITION: &str = "vigil.source.partition";
    /// Source offset.
    pub const OFFSET: &str = "vigil.source.offset";
    /// 1-based line within the source message (JSON lines only).
    pub const LINE: &str = "vigil.source.line";
}

/// How long a dead-letter record may take to be delivered.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a rejected payload came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Line within a JSON lines message.
    pub line: Option<u64>,
}

/// Produces dead-letter records.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A producer for `topic` on `brokers`.
    ///
    /// # Errors
    ///
    /// When librdkafka refuses the configuration.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, rdkafka::error::KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.timeout.ms", "10000")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Sends one record and waits for its delivery.
    ///
    /// # Errors
    ///
    /// When the record is not delivered within the timeout.
    pub async fn send(
        &self,
        payload: &[u8],
        error: &DecodeError,
        source: Source<'_>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let message = error.to_string();
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let mut hdrs = OwnedHeaders::new()
            .insert(Header {
                key: headers::ERROR,
                value: Some(message.as_str()),
            })
            .insert(Header {
                key: headers::REASON,
                value: Some(error.reason()),
            })
            .insert(Header {
                key: headers::TOPIC,
                value: Some(source.topic),
            })
            .insert(Header {
                key: headers::PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::OFFSET,
                value: Some(offset.as_str()),
            });
        if let Some(line) = source.line {
            let line = line.to_string();
            hdrs = hdrs.insert(Header {
                key: headers::LINE,
                value: Some(line.as_str()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload)
            .headers(hdrs);
        if let Some(key) = source.key {
            record = record.key(key);
        }
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}
