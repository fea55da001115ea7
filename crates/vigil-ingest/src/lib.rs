//! Kafka ingestion for Vigil: topics in, samples into the store.
//!
//! Services and OpenTelemetry Collectors write to Kafka; this crate consumes
//! their topics continuously into a shared [`vigil_core::store::Store`].
//!
//! Layout:
//! - [`decode`]: bytes of one message in, validated samples out, one
//!   function per format (SampleBatch protobuf, JSON lines, OTLP spans and
//!   metrics, Arrow IPC). Pure: no IO.
//! - [`consumer`]: the Kafka consumer (rdkafka, consumer group `vigil` by
//!   default). Each partition's queue belongs to one decode worker on a
//!   dedicated thread, which reads it straight from librdkafka, decodes,
//!   records into the store, dead-letters rejections, and only then stores
//!   the messages' offsets for the next commit.
//! - [`sink`]: where samples go ([`SampleSink`]: the store, or the server's
//!   ingest path).
//! - [`dlq`]: the dead-letter queue producer (`vigil.dlq`).
//! - [`metrics`]: the consumer's Prometheus metrics and readiness.
//! - [`otlp_grpc`]: an OTLP/gRPC receiver (trace and metrics export) that
//!   records like the OTLP topics do, for Collectors and SDKs without Kafka.
//! - [`dev`]: a local Kafka-protocol broker (librdkafka's mock cluster) for
//!   `vigil dev-broker` and tests.
//!
//! Delivery guarantee today: at least once. An offset is committed only
//! after every sample of its message is in the store (or the message is in
//! the dead-letter queue), so a restart loses nothing; a crash between
//! recording and the next commit replays the uncommitted messages, whose
//! samples are then counted twice. Exactly-once needs store checkpoints
//! that carry the offsets (a later issue).
//!
//! This crate does not judge, serve HTTP or own the store: the binary wires
//! it to the server and the judge.

pub mod config;
pub mod consumer;
pub mod decode;
pub mod dev;
pub mod dlq;
pub mod metrics;
pub mod otlp_grpc;
pub mod sink;

pub use config::{IngestConfig, TopicConfig};
pub use consumer::{Consumer, IngestError};
pub use decode::{DecodeError, DecodeOptions, Format};
pub use metrics::IngestMetrics;
pub use sink::SampleSink;
