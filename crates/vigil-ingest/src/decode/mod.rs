//! Bytes of one Kafka message in, validated [`Sample`]s out.
//!
//! A message is the unit of rejection: a message that cannot be decoded, or
//! that holds one invalid sample, is rejected whole and none of its samples
//! are recorded, so re-driving it from the dead-letter queue after a fix
//! cannot count anything twice. The one exception is JSON lines, whose unit
//! is the line (as in `vigil replay`): the valid lines of a message are
//! recorded and each rejected line is dead-lettered on its own.

mod arrow;
pub mod otlp;

use std::fmt;
use std::str::FromStr;

use prost::Message;
use vigil_core::events::{EventReader, LineResult};
use vigil_core::{CoreError, Observation, Sample};

pub use self::arrow::decode_arrow;
pub use self::otlp::{decode_otlp_metrics, decode_otlp_spans};

/// The resource attribute that names a span's or metric's version unless
/// configured otherwise.
pub const DEFAULT_VERSION_ATTRIBUTE: &str = "service.version";

/// How a topic's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `vigil.v1.SampleBatch` protobuf (the gRPC `Ingest` message).
    Samples,
    /// JSON lines in the `vigil replay` format.
    Events,
    /// OTLP `ExportTraceServiceRequest` (`otlp_proto`).
    OtlpSpans,
    /// OTLP `ExportMetricsServiceRequest` (`otlp_proto`).
    OtlpMetrics,
    /// An Arrow IPC stream.
    Arrow,
}

impl Format {
    /// Every format, for help texts and errors.
    pub const ALL: [Format; 5] = [
        Format::Samples,
        Format::Events,
        Format::OtlpSpans,
        Format::OtlpMetrics,
        Format::Arrow,
    ];

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Samples => "samples",
            Format::Events => "events",
            Format::OtlpSpans => "otlp_spans",
            Format::OtlpMetrics => "otlp_metrics",
            Format::Arrow => "arrow",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown format `{0}` (expected samples, events, otlp_spans, otlp_metrics or arrow)")]
pub struct UnknownFormat(String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// Why a message (or, for JSON lines, a line) was rejected. Each variant is
/// counted under its own `reason` label ([`DecodeError::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf message of the topic's type.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The bytes are not a valid Arrow IPC stream.
    #[error("invalid arrow ipc stream: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// An Arrow stream without a required column, or with one of the
    /// wrong type.
    #[error("arrow column `{column}`: {problem}")]
    ArrowColumn {
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A JSON line that is not a valid event.
    #[error("line {line}: {source}")]
    Event {
        /// 1-based line number within the message.
        line: u64,
        /// Why.
        #[source]
        source: vigil_core::events::EventError,
    },
    /// A resource, batch or row without a service name.
    #[error("missing service name ({0})")]
    MissingService(&'static str),
    /// A resource, batch or row without a version.
    #[error("missing version (attribute `{0}`)")]
    MissingVersion(String),
    /// A span that ends before it starts.
    #[error("span `{span}` ends before it starts")]
    NegativeDuration {
        /// The span's name.
        span: String,
    },
    /// Cumulative OTLP temporality, which would count every export's
    /// running total again.
    #[error("metric `{metric}` has cumulative temporality; send delta (the Collector's cumulativetodelta processor)")]
    CumulativeTemporality {
        /// The metric.
        metric: String,
    },
    /// A histogram with inconsistent buckets.
    #[error("metric `{metric}`: {problem}")]
    InvalidHistogram {
        /// The metric.
        metric: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A `SampleBatch` point that `vigil-proto` rejects.
    #[error("invalid point: {0}")]
    InvalidPoint(vigil_proto::PointError),
    /// A sample the store would refuse (a name, a NaN or negative value).
    #[error("invalid sample: {0}")]
    InvalidSample(#[from] CoreError),
}

impl DecodeError {
    /// The bounded label this rejection is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Protobuf(_) => "bad_protobuf",
            DecodeError::Arrow(_) | DecodeError::ArrowColumn { .. } => "bad_arrow",
            DecodeError::Event { source, .. } => match source {
                vigil_core::events::EventError::Json(_)
                | vigil_core::events::EventError::InvalidUtf8 { .. }
                | vigil_core::events::EventError::LineTooLong { .. }
                | vigil_core::events::EventError::NotAnObject { .. } => "bad_json",
                _ => "invalid_event",
            },
            DecodeError::InvalidPoint(e) => e.reason.as_str(),
            DecodeError::MissingService(_) => "missing_service",
            DecodeError::MissingVersion(_) => "missing_version",
            DecodeError::NegativeDuration { .. } => "negative_value",
            DecodeError::CumulativeTemporality { .. } => "cumulative_temporality",
            DecodeError::InvalidHistogram { .. } => "invalid_histogram",
            DecodeError::InvalidSample(e) => match e {
                CoreError::NotFinite { .. } => "not_finite",
                CoreError::Negative { .. } => "negative_value",
                CoreError::InvalidName { .. } => "invalid_name",
                _ => "invalid_sample",
            },
        }
    }
}

/// One rejected line of a JSON lines message.
#[derive(Debug)]
pub struct RejectedLine {
    /// The line's bytes (what goes to the dead-letter queue).
    pub payload: Vec<u8>,
    /// Why.
    pub error: DecodeError,
}

/// What a message gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Validated samples, ready for the store.
    pub samples: Vec<Sample>,
    /// Validated values of one series each (SampleBatch messages of values
    /// only, from [`decode_compact`]; [`decode`] leaves this empty).
    pub values: Vec<vigil_proto::BatchValues>,
    /// JSON lines rejected one by one (always empty for other formats).
    pub rejected_lines: Vec<RejectedLine>,
}

/// Decoding settings shared by all topics.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// The OTLP resource attribute that holds the version.
    pub version_attribute: String,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            version_attribute: DEFAULT_VERSION_ATTRIBUTE.to_owned(),
        }
    }
}

/// Decodes one message of the given format.
///
/// # Errors
///
/// A [`DecodeError`] when the message as a whole is rejected.
pub fn decode(
    format: Format,
    payload: &[u8],
    options: &DecodeOptions,
) -> Result<Decoded, DecodeError> {
    let mut decoded = decode_compact(format, payload, options)?;
    for run in std::mem::take(&mut decoded.values) {
        decoded
            .samples
            .extend(run.points.iter().map(|&(ts, v)| Sample {
                ts,
                observation: Observation::Value(v),
                ..run.head.clone()
            }));
    }
    Ok(decoded)
}

/// Decodes one message as [`decode`] does, except that a SampleBatch of
/// values only comes out in [`Decoded::values`] (its series once and its
/// points), not as one [`Sample`] per point: the Kafka consumer records it
/// with [`crate::SampleSink::record_values`].
///
/// # Errors
///
/// A [`DecodeError`] when the message as a whole is rejected.
pub fn decode_compact(
    format: Format,
    payload: &[u8],
    options: &DecodeOptions,
) -> Result<Decoded, DecodeError> {
    let samples = match format {
        Format::Events => return Ok(decode_events(payload)),
        Format::Samples => {
            if let Some(values) = vigil_proto::values_from_bytes(payload) {
                // A batch of values only, read without decoding the message.
                return decoded_values(values);
            }
            return SAMPLE_BATCH.with(|scratch| {
                // A worker thread's own message, cleared and refilled: its
                // vectors keep their capacity, where decoding into a new
                // message grew each packed field from empty (a sixth of
                // the workers' time went to those reallocations).
                let mut batch = scratch.take();
                batch.clear();
                let decoded = batch
                    .merge(payload)
                    .map_err(DecodeError::from)
                    .and_then(|()| decode_sample_batch(&batch));
                let room = batch.values.capacity()
                    + batch.timestamps.capacity()
                    + batch.histograms.capacity()
                    + batch.counts.capacity()
                    + batch.outcomes.capacity();
                if room <= SCRATCH_MAX_POINTS {
                    scratch.set(batch);
                }
                decoded
            });
        }
        Format::OtlpSpans => decode_otlp_spans(payload, options)?,
        Format::OtlpMetrics => decode_otlp_metrics(payload, options)?,
        Format::Arrow => decode_arrow(payload)?,
    };
    for sample in &samples {
        check_sample(sample)?;
    }
    Ok(Decoded {
        samples,
        ..Decoded::default()
    })
}

thread_local! {
    /// The message [`decode_compact`] decodes SampleBatch payloads into.
    static SAMPLE_BATCH: std::cell::Cell<vigil_proto::v1::SampleBatch> =
        std::cell::Cell::new(vigil_proto::v1::SampleBatch::default());
}

/// Points (values, timestamps, histograms, counters, outcomes) the kept
/// message may hold room for: one huge batch should not pin its memory to
/// a worker thread.
const SCRATCH_MAX_POINTS: usize = 1 << 16;

/// A decoded SampleBatch: plain values as one run, anything else as samples.
fn decode_sample_batch(batch: &vigil_proto::v1::SampleBatch) -> Result<Decoded, DecodeError> {
    if let Some(values) = vigil_proto::values_from_batch(batch) {
        return decoded_values(values.map_err(DecodeError::InvalidPoint)?);
    }
    let samples = samples_of_batch(batch)?;
    for sample in &samples {
        check_sample(sample)?;
    }
    Ok(Decoded {
        samples,
        ..Decoded::default()
    })
}

/// A batch of values only, once its values pass what check_sample checks
/// of a value (the timestamps are already checked), in the same order.
fn decoded_values(values: vigil_proto::BatchValues) -> Result<Decoded, DecodeError> {
    for &(_, v) in &values.points {
        check_value(v)?;
    }
    Ok(Decoded {
        values: vec![values],
        ..Decoded::default()
    })
}

/// `vigil.v1.SampleBatch`: one batch per message, all points or none.
fn samples_of_batch(batch: &vigil_proto::v1::SampleBatch) -> Result<Vec<Sample>, DecodeError> {
    let decoded = vigil_proto::samples_from_batch(batch);
    match decoded.rejected.into_iter().next() {
        Some(error) => Err(DecodeError::InvalidPoint(error)),
        None => Ok(decoded.samples),
    }
}

/// JSON lines: the valid lines' samples, and each invalid line on its own.
fn decode_events(payload: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let lines: Vec<&[u8]> = payload.split(|&b| b == b'\n').collect();
    for result in EventReader::new(payload, "message") {
        match result {
            Ok(LineResult::Samples { samples, .. }) => decoded.samples.extend(samples),
            Ok(LineResult::Rejected { line, error }) => {
                let index = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
                let text = lines.get(index).copied().unwrap_or_default();
                decoded.rejected_lines.push(RejectedLine {
                    payload: text.strip_suffix(b"\r").unwrap_or(text).to_vec(),
                    error: DecodeError::Event {
                        line,
                        source: error,
                    },
                });
            }
            // Reading from a byte slice cannot fail.
            Err(_) => break,
        }
    }
    decoded
}

/// The store's checks of a distribution value.
fn check_value(v: f64) -> Result<(), DecodeError> {
    if !v.is_finite() {
        return Err(CoreError::NotFinite {
            what: "value",
            value: v,
        }
        .into());
    }
    if v < 0.0 {
        return Err(CoreError::Negative {
            what: "value",
            value: v,
        }
        .into());
    }
    Ok(())
}

/// The checks the store makes on an observation, made before any sample of
/// the message is recorded, so a message is recorded whole or not at all.
pub fn check_sample(sample: &Sample) -> Result<(), DecodeError> {
    if !sample.ts.is_finite() {
        return Err(CoreError::NotFinite {
            what: "timestamp",
            value: sample.ts,
        }
        .into());
    }
    match &sample.observation {
        Observation::Value(v) => check_value(*v),
        Observation::Histogram(pairs) => {
            for &(v, _) in pairs {
                check_value(v)?;
            }
            if pairs.iter().all(|&(_, n)| n == 0) {
                return Err(CoreError::EmptyHistogram.into());
            }
            Ok(())
        }
        Observation::Outcome { .. } => Ok(()),
        Observation::Counts { requests, errors } => {
            if errors > requests {
                return Err(CoreError::ErrorsExceedRequests {
                    requests: *requests,
                    errors: *errors,
                }
                .into());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        assert!("json".parse::<Format>().is_err());
    }

    #[test]
    fn a_reused_sample_batch_decodes_as_a_fresh_one() {
        use vigil_proto::v1::{CountsPoint, SampleBatch};
        let values = |metric: &str, endpoint: Option<&str>, n: usize| SampleBatch {
            service: "payment".into(),
            version: "v8".into(),
            metric: metric.into(),
            labels: endpoint
                .map(|e| ("endpoint".to_owned(), e.to_owned()))
                .into_iter()
                .collect(),
            timestamps: (0..n).map(|i| 1_763_900_000.0 + i as f64).collect(),
            values: (0..n).map(|i| 1.0 + i as f64 / 7.0).collect(),
            ..Default::default()
        };
        let counts = SampleBatch {
            counts: vec![CountsPoint {
                ts: 1_763_900_001.0,
                requests: 10,
                errors: 1,
            }],
            ..values("error_rate", None, 0)
        };
        let mut bad_value = values("latency", None, 3);
        bad_value.values[1] = f64::NAN;
        let payloads: Vec<Vec<u8>> = vec![
            values("latency", Some("/charge"), 100).encode_to_vec(),
            b"\xff\xff not protobuf".to_vec(),
            counts.encode_to_vec(),
            values("db_latency", None, 3).encode_to_vec(),
            bad_value.encode_to_vec(),
            values("latency", Some("/refund"), 1).encode_to_vec(),
        ];
        let options = DecodeOptions::default();
        let describe = |p: &[u8]| format!("{:?}", decode_compact(Format::Samples, p, &options));
        // In a row on this thread, each against a thread that never decoded.
        for p in &payloads {
            let fresh = std::thread::scope(|s| s.spawn(|| describe(p)).join().unwrap());
            assert_eq!(describe(p), fresh);
        }
        assert!(describe(&payloads[0]).contains("/charge"));
        assert!(describe(&payloads[1]).starts_with("Err"));
        assert!(describe(&payloads[4]).starts_with("Err"));
    }

    #[test]
    fn events_keep_good_lines_and_reject_bad_ones() {
        let payload = b"{\"ts\":1,\"service\":\"a\",\"version\":\"v1\",\"latency_ms\":5}\nnot json\n{\"ts\":2,\"service\":\"a\",\"version\":\"v1\",\"latency_ms\":-1}\n";
        let d = decode(Format::Events, payload, &DecodeOptions::default()).unwrap();
        // One request event feeds latency and error_rate.
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.rejected_lines.len(), 2);
        assert_eq!(d.rejected_lines[0].payload, b"not json");
        assert_eq!(d.rejected_lines[0].error.reason(), "bad_json");
        assert_eq!(d.rejected_lines[1].error.reason(), "invalid_event");
        assert!(d.rejected_lines[1].payload.starts_with(b"{\"ts\":2"));
    }
}
