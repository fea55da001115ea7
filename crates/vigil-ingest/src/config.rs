//! What the consumer reads and how.

use crate::decode::{DecodeOptions, Format};

/// The consumer group unless configured otherwise.
pub const DEFAULT_GROUP: &str = "vigil";
/// The dead-letter topic unless configured otherwise.
pub const DEFAULT_DLQ_TOPIC: &str = "vigil.dlq";

/// One topic and the format of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Topic name.
    pub topic: String,
    /// Its messages' format.
    pub format: Format,
}

impl TopicConfig {
    /// A topic read in the given format.
    pub fn new(topic: impl Into<String>, format: Format) -> Self {
        TopicConfig {
            topic: topic.into(),
            format,
        }
    }

    /// Vigil's default topics: `vigil.samples`, `vigil.events`,
    /// `otlp_spans` and `otlp_metrics` (the OpenTelemetry Collector kafka
    /// exporter's defaults) and `vigil.arrow`.
    pub fn defaults() -> Vec<TopicConfig> {
        vec![
            TopicConfig::new("vigil.samples", Format::Samples),
            TopicConfig::new("vigil.events", Format::Events),
            TopicConfig::new("otlp_spans", Format::OtlpSpans),
            TopicConfig::new("otlp_metrics", Format::OtlpMetrics),
            TopicConfig::new("vigil.arrow", Format::Arrow),
        ]
    }
}

/// The consumer's settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<TopicConfig>,
    /// Where rejected messages go.
    pub dlq_topic: String,
    /// Decode workers (dedicated threads); partitions are spread over them.
    pub workers: usize,
    /// librdkafka's prefetch bound per partition, in KiB
    /// (`queued.max.messages.kbytes`): how much of a partition waits in
    /// memory when the store falls behind.
    pub prefetch_kbytes: u32,
    /// Decoding settings.
    pub decode: DecodeOptions,
    /// Further librdkafka consumer properties (`session.timeout.ms`,
    /// `security.protocol`...), applied after Vigil's own.
    pub client_properties: Vec<(String, String)>,
}

impl IngestConfig {
    /// Defaults for the given brokers.
    pub fn new(brokers: impl Into<String>) -> Self {
        IngestConfig {
            brokers: brokers.into(),
            group_id: DEFAULT_GROUP.to_owned(),
            topics: TopicConfig::defaults(),
            dlq_topic: DEFAULT_DLQ_TOPIC.to_owned(),
            workers: 2,
            prefetch_kbytes: 8 * 1024,
            decode: DecodeOptions::default(),
            client_properties: Vec::new(),
        }
    }

    /// The format of a topic's messages, if it is consumed.
    pub fn format_of(&self, topic: &str) -> Option<Format> {
        self.topics
            .iter()
            .find(|t| t.topic == topic)
            .map(|t| t.format)
    }
}
