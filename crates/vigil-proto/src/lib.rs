#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
//! Vigil's gRPC API, package `vigil.v1` (`proto/vigil/v1/vigil.proto`),
//! generated with tonic/prost at build time by a vendored `protoc`, and the
//! conversions between its messages and `vigil-core`'s types.
//!
//! - [`v1`]: the generated messages, `VigilService` client and server, and
//!   the encoded file descriptor set for server reflection.
//! - [`ingest`]: `SampleBatch` -> `Vec<Sample>` with per-point rejections:
//!   the one decoding path of gRPC `Ingest` and of the Kafka consumer.
//! - [`convert`]: specs, verdicts and reports both ways.
//!
//! Pure: no IO, no clock (tonic is here only for the generated stubs).

pub mod convert;
pub mod ingest;

/// Generated code of package `vigil.v1`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("vigil.v1");

    /// The encoded `FileDescriptorSet` of `vigil.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vigil_v1_descriptor.bin"));
}

pub use ingest::{
    samples_from_batch, values_from_batch, values_from_bytes, BatchSamples, BatchValues,
    PointError, RejectReason,
};
