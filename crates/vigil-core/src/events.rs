//! The JSON lines event format (`vigil replay`, `POST /v1/ingest`, the
//! `vigil.events` topic): JSON lines in, [`Sample`]s out.
//!
//! Each line holds one event, or a JSON array of events, in one of two
//! shapes (the field names are a contract with producers):
//!
//! - a request event, `{"ts", "service", "version", "latency_ms", "error",
//!   "status", "labels"}`, which feeds two metrics: `latency` with the
//!   request's duration and `error_rate` with whether it failed. `latency_ms`
//!   is optional (then only `error_rate` is fed); `error` defaults to
//!   `status >= 500` when a `status` is given, to false otherwise; at least
//!   one of the three must be present;
//! - a metric sample, `{"ts", "service", "version", "metric", "value",
//!   "labels"}`, or with `"requests"` and `"errors"` instead of `"value"`
//!   for a pre-aggregated error-rate metric.
//!
//! `ts` is epoch seconds (integer or float) or an RFC 3339 string with a
//! `Z` or `±hh:mm` offset. `labels` is an object whose values are strings;
//! numbers and booleans are taken as their JSON text (`200` is `"200"`,
//! `true` is `"true"`), so producers that emit `"status_class": 5` need not
//! change. A `null` optional field is treated as absent; unknown fields are
//! ignored, so producers can add fields before the judge reads them.
//!
//! Layout: [`EventReader`] iterates over the lines of decoded text (the
//! binary's `open_input` opens files and standard input and unpacks gzip),
//! yielding a [`LineResult`] per line, or a [`ReadError`] when
//! reading itself fails; [`parse_event`] decodes a single line.
//!
//! Errors come in two kinds, as two types. A malformed event (bad JSON,
//! a missing or invalid field, a non-object) is an [`EventError`] in a
//! [`LineResult::Rejected`]: expected in real streams, counted by the caller,
//! never fatal. A failure to read the input (an unreadable file, truncated
//! gzip) is a [`ReadError`], after which the reader stops: the data that
//! follows is unknown, so carrying on would silently judge part of a file.
//!
//! Throughput matters (`vigil replay` aims at over a million events a
//! second from a gzipped file), so the reader reuses one line buffer,
//! deserializes fields borrowed from it, and interns service, version,
//! metric and label names so that a sample costs reference-count bumps
//! rather than fresh allocations.
//!
//! This module deliberately does not order, window or judge samples, nor
//! apply the store's label allow-list: it turns bytes into validated
//! samples.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use crate::event::{ERROR_RATE_METRIC, LATENCY_METRIC};
use crate::names::MAX_NAME_BYTES;
use crate::{CoreError, Labels, MetricName, Observation, Sample, ServiceName, Version};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Longest accepted line. Generous, since a line may hold an array of
/// thousands of events, but bounded so that a file without newlines (or a
/// binary file) cannot make the reader buffer it whole.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Most labels accepted on one event; real producers send a handful, and
/// each label is copied into every sample of the event.
pub const MAX_LABELS: usize = 64;

/// The latest accepted timestamp, 9999-12-31T23:59:59Z. Anything later is
/// almost certainly milliseconds or microseconds sent as seconds, which
/// would otherwise open a window thousands of years in the future.
const MAX_TS: f64 = 253_402_300_799.0;

/// Integers above 2^53 are not exact as f64, so a float count beyond that
/// cannot be trusted to be the integer the producer meant.
const MAX_EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// Offending text quoted in an error is cut to this many characters, so a
/// garbage line cannot produce a megabyte-long message.
const MAX_QUOTED_CHARS: usize = 40;

/// Entries, and bytes of text, per name cache before it is cleared. Real
/// streams hold a few services, versions and label sets; the bounds only
/// stop a stream of ever-new names (or of label sets near the size limits)
/// from growing the caches without limit.
const MAX_INTERNED: usize = 4096;
const MAX_INTERNED_BYTES: usize = 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Separators of the label cache key. Label keys and values may not contain
/// control characters, so these cannot occur inside them.
const LABEL_KEY_END: char = '\u{1f}';
const LABEL_VALUE_END: char = '\u{1e}';

/// Why an event (or a whole line) was rejected. Never fatal: the reader
/// reports it and goes on with the next line.
///
/// Messages are complete on their own (the serde error's text is part of
/// [`EventError::Json`]'s message rather than its source), because a
/// rejection is reported as `line N: <message>`, usually without walking a
/// source chain.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not only JSON.
    #[error("invalid json: {0}")]
    Json(serde_json::Error),

    /// The line's bytes are not UTF-8.
    #[error("invalid utf-8 at byte offset {valid_up_to}")]
    InvalidUtf8 {
        /// How many bytes from the line's start are valid.
        valid_up_to: usize,
    },

    /// The line exceeds [`MAX_LINE_BYTES`]; the rest of it was skipped.
    #[error("line is longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },

    /// The event (or an element of the line's array) is not an object.
    #[error("an event must be a json object, got {found}")]
    NotAnObject {
        /// What was found instead, as JSON text or a kind (`an array`).
        found: String,
    },

    /// A required field is absent (or `null` where a value is required).
    #[error("missing field `{field}`")]
    Missing {
        /// The field.
        field: &'static str,
    },

    /// A field appears twice in one event; which one counts is ambiguous.
    #[error("duplicate field `{field}`")]
    Duplicate {
        /// The field.
        field: &'static str,
    },

    /// A field holds a value of the wrong type or range.
    #[error("`{field}` must be {expected}, got {found}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it must be (`a number >= 0`).
        expected: &'static str,
        /// What it was, as JSON text (strings quoted and shortened).
        found: String,
    },

    /// `ts` is neither epoch seconds nor an RFC 3339 timestamp.
    #[error("`ts` is not epoch seconds or rfc 3339: {found} ({reason})")]
    Timestamp {
        /// The value, as JSON text.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `labels` holds an unusable label.
    #[error("label `{key}` {problem}")]
    InvalidLabel {
        /// The label's key (shortened).
        key: String,
        /// What is wrong with it (`must be a string, number or bool, got null`).
        problem: String,
    },

    /// `labels` holds a label with an empty key.
    #[error("a label key is empty")]
    EmptyLabelKey,

    /// `labels` holds more than [`MAX_LABELS`] labels.
    #[error("more than {max} labels")]
    TooManyLabels {
        /// The limit.
        max: usize,
    },

    /// An event with neither request fields nor `metric`.
    #[error("an event needs `latency_ms`, `error` or `status` (a request) or `metric` (a metric sample)")]
    EmptyRequest,

    /// A request field in a metric sample.
    #[error("`{field}` cannot be combined with `metric`: an event is either a request or a metric sample")]
    Mixed {
        /// The request field.
        field: &'static str,
    },

    /// A metric sample without an observation.
    #[error("a metric sample needs `value`, or `requests` and `errors`")]
    EmptyMetricSample,

    /// A metric sample with both kinds of observation.
    #[error("a metric sample has either `value` or `requests` and `errors`, not both")]
    AmbiguousMetricSample,

    /// An invalid name, or more errors than requests, as the domain
    /// defines them.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// An element of the line's array was rejected; the others were kept.
    #[error("element [{index}] of the array: {error}")]
    InArray {
        /// The element's 0-based index.
        index: usize,
        /// Why it was rejected.
        error: Box<EventError>,
    },
}

/// Why the input could not be read. Fatal: the reader yields it once and
/// then ends.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened.
    #[error("cannot open {}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// Reading (or unpacking) failed partway, for example on truncated or
    /// corrupt gzip data.
    #[error("cannot read {input} at line {line}")]
    Read {
        /// The input's display name: its path, or `<stdin>`.
        input: String,
        /// The 1-based line being read.
        line: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What one line of input gave. A line holding an array whose events are
/// partly valid gives several results: one `Samples` for the valid events,
/// then one `Rejected` per invalid one.
#[derive(Debug)]
pub enum LineResult {
    /// The samples of the line's valid events, in order.
    Samples {
        /// 1-based line number.
        line: u64,
        /// How many events the samples came from (a request event gives
        /// one or two samples).
        n_events: usize,
        /// The samples; never empty.
        samples: Vec<Sample>,
    },
    /// A rejected line, or one rejected event of a line's array.
    Rejected {
        /// 1-based line number.
        line: u64,
        /// Why.
        error: EventError,
    },
}

/// Decodes one line (an event or an array of events) into samples, all or
/// nothing. A blank or `#` comment line gives no samples.
///
/// [`EventReader`] is the fast path for many lines: it keeps name caches
/// across lines and keeps the valid events of a partly invalid array.
///
/// # Errors
///
/// Any [`EventError`] but [`EventError::LineTooLong`] and
/// [`EventError::InvalidUtf8`]; for an array, the first invalid element's,
/// wrapped in [`EventError::InArray`].
pub fn parse_event(line: &str) -> Result<Vec<Sample>, EventError> {
    let mut decoder = Decoder::default();
    let mut samples = Vec::new();
    let mut rejected = VecDeque::new();
    let text = line.trim();
    if !text.is_empty() && !text.starts_with('#') {
        decoder.decode_line(text, &mut samples, &mut rejected)?;
    }
    match rejected.pop_front() {
        Some(error) => Err(error),
        None => Ok(samples),
    }
}

/// Iterates over the events of a JSON lines input, one [`LineResult`] per
/// non-blank, non-comment line (more for a partly invalid array), then
/// ends; or yields one [`ReadError`] and ends.
pub struct EventReader<R> {
    reader: R,
    input: String,
    /// The current line's 1-based number.
    line: u64,
    /// The current line's bytes, reused for every line.
    buf: Vec<u8>,
    decoder: Decoder,
    /// Rejections of the current line's array not yet yielded.
    pending: VecDeque<EventError>,
    done: bool,
}

impl<R> fmt::Debug for EventReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader")
            .field("input", &self.input)
            .field("line", &self.line)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> EventReader<R> {
    /// Reads events from `reader`, which holds decoded text (see
    /// the binary's `open_input` for files and gzip); `input` names it in errors.
    pub fn new(reader: R, input: impl Into<String>) -> Self {
        EventReader {
            reader,
            input: input.into(),
            line: 0,
            buf: Vec::with_capacity(256),
            decoder: Decoder::default(),
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// Reads the next line into `buf` (newline included), or reports that
    /// it was too long and skips it.
    fn read_line(&mut self) -> io::Result<LineRead> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n_read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n_read == 0 {
            return Ok(LineRead::End);
        }
        if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
            self.reader.skip_until(b'\n')?;
            // Give back the oversized buffer rather than keep it for the
            // rest of the input.
            self.buf = Vec::with_capacity(256);
            return Ok(LineRead::TooLong);
        }
        Ok(LineRead::Line)
    }
}

enum LineRead {
    Line,
    TooLong,
    End,
}

/// What [`EventReader::next_into`] read: like [`LineResult`], with the
/// samples appended to the caller's vector.
#[derive(Debug)]
pub enum LineOutcome {
    /// A line's valid events gave `n_samples` samples (at least one), now
    /// at the end of the caller's vector.
    Samples {
        /// 1-based line number.
        line: u64,
        /// How many events the samples came from.
        n_events: usize,
        /// How many samples were appended.
        n_samples: usize,
    },
    /// A rejected line, or one rejected event of a line's array.
    Rejected {
        /// 1-based line number.
        line: u64,
        /// Why.
        error: EventError,
    },
}

impl<R: BufRead> EventReader<R> {
    /// The next result, as [`Iterator::next`] gives it, with the line's
    /// samples appended to `out` rather than in a vector of their own: a
    /// reader of many lines keeps one vector and allocates nothing per
    /// line.
    pub fn next_into(&mut self, out: &mut Vec<Sample>) -> Option<Result<LineOutcome, ReadError>> {
        if let Some(error) = self.pending.pop_front() {
            return Some(Ok(LineOutcome::Rejected {
                line: self.line,
                error,
            }));
        }
        if self.done {
            return None;
        }
        loop {
            self.line += 1;
            let line = self.line;
            match self.read_line() {
                Ok(LineRead::Line) => {}
                Ok(LineRead::End) => {
                    self.done = true;
                    return None;
                }
                Ok(LineRead::TooLong) => {
                    return Some(Ok(LineOutcome::Rejected {
                        line,
                        error: EventError::LineTooLong {
                            max: MAX_LINE_BYTES,
                        },
                    }))
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Read {
                        input: self.input.clone(),
                        line,
                        source,
                    }));
                }
            }
            let bytes = if line == 1 {
                self.buf.strip_prefix(UTF8_BOM).unwrap_or(&self.buf)
            } else {
                &self.buf
            };
            let text = match std::str::from_utf8(bytes) {
                Ok(text) => text.trim(),
                Err(error) => {
                    return Some(Ok(LineOutcome::Rejected {
                        line,
                        error: EventError::InvalidUtf8 {
                            valid_up_to: error.valid_up_to(),
                        },
                    }))
                }
            };
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let before = out.len();
            match self.decoder.decode_line(text, out, &mut self.pending) {
                Err(error) => {
                    out.truncate(before);
                    return Some(Ok(LineOutcome::Rejected { line, error }));
                }
                Ok(n_events) if out.len() > before => {
                    return Some(Ok(LineOutcome::Samples {
                        line,
                        n_events,
                        n_samples: out.len() - before,
                    }))
                }
                Ok(_) => {
                    if let Some(error) = self.pending.pop_front() {
                        return Some(Ok(LineOutcome::Rejected { line, error }));
                    }
                    // An empty array: nothing to report, like a blank line.
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<LineResult, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Most lines hold one request event, which gives two samples.
        let mut samples = Vec::with_capacity(2);
        Some(self.next_into(&mut samples)?.map(|outcome| match outcome {
            LineOutcome::Samples { line, n_events, .. } => LineResult::Samples {
                line,
                n_events,
                samples,
            },
            LineOutcome::Rejected { line, error } => LineResult::Rejected { line, error },
        }))
    }
}

/// Turns lines into samples, caching validated names across lines.
#[derive(Default)]
struct Decoder {
    services: Interner<ServiceName>,
    versions: Interner<Version>,
    metrics: Interner<MetricName>,
    /// Label sets keyed by their encoding in `label_key`.
    labels: Interner<Labels>,
    /// The current event's labels, encoded as `key US value RS ...` in
    /// input order: the cache key of its label set.
    label_key: String,
    latency_metric: Option<MetricName>,
    error_rate_metric: Option<MetricName>,
}

impl Decoder {
    /// Decodes a trimmed, non-empty line, appending the samples of its
    /// valid events to `out` and the rejections of its invalid array
    /// elements to `rejected`; returns how many events were valid.
    ///
    /// A line that is not valid JSON, or a single event that is invalid,
    /// is an error, and leaves `out` and `rejected` as they were.
    fn decode_line(
        &mut self,
        text: &str,
        out: &mut Vec<Sample>,
        rejected: &mut VecDeque<EventError>,
    ) -> Result<usize, EventError> {
        let n_out = out.len();
        let n_rejected = rejected.len();
        let mut de = serde_json::Deserializer::from_str(text);
        let result = if text.starts_with('[') {
            ArraySeed {
                decoder: self,
                out: &mut *out,
                rejected: &mut *rejected,
            }
            .deserialize(&mut de)
            .and_then(|n_events| de.end().map(|()| Ok(n_events)))
        } else {
            let mut raw = RawEvent::default();
            EventSeed {
                raw: &mut raw,
                label_key: &mut self.label_key,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map(|()| self.convert(&mut raw, out).map(|()| 1))
        };
        match result {
            Ok(Ok(n_events)) => Ok(n_events),
            Ok(Err(error)) => Err(error),
            Err(error) => {
                out.truncate(n_out);
                rejected.truncate(n_rejected);
                Err(EventError::Json(error))
            }
        }
    }

    /// Validates one deserialized event and appends its samples.
    fn convert(&mut self, raw: &mut RawEvent<'_>, out: &mut Vec<Sample>) -> Result<(), EventError> {
        if let Some(found) = raw.not_an_object.take() {
            return Err(EventError::NotAnObject { found });
        }
        if let Some(field) = raw.duplicate {
            return Err(EventError::Duplicate { field });
        }
        let ts = timestamp(required("ts", &raw.ts)?)?;
        let service = self.services.intern(
            string("service", required("service", &raw.service)?)?,
            ServiceName::new,
        )?;
        let version = self.versions.intern(
            string("version", required("version", &raw.version)?)?,
            Version::new,
        )?;
        let labels = match std::mem::take(&mut raw.labels) {
            LabelsField::Absent => Labels::empty(),
            LabelsField::Invalid(error) => return Err(error),
            LabelsField::Present => self.labels.intern(&self.label_key, |key| {
                Ok(Labels::from_pairs(
                    key.split_terminator(LABEL_VALUE_END)
                        .map(|pair| pair.split_once(LABEL_KEY_END).unwrap_or((pair, ""))),
                ))
            })?,
        };

        let Some(metric) = present(&raw.metric) else {
            // Without `metric` this is a request event; the metric sample
            // fields suggest the producer forgot `metric`.
            let metric_fields = [&raw.value, &raw.requests, &raw.errors];
            if metric_fields.into_iter().any(|v| present(v).is_some()) {
                return Err(EventError::Missing { field: "metric" });
            }
            let latency = present(&raw.latency_ms).map(latency_ms).transpose()?;
            let status_error = present(&raw.status).map(status_is_error).transpose()?;
            let error = match present(&raw.error) {
                Some(Json::Bool(error)) => Some(*error),
                Some(other) => {
                    return Err(invalid("error", "true or false", other));
                }
                None => status_error,
            };
            if latency.is_none() && error.is_none() {
                return Err(EventError::EmptyRequest);
            }
            if let Some(latency) = latency {
                out.push(Sample {
                    ts,
                    service: service.clone(),
                    version: version.clone(),
                    metric: fixed_metric(&mut self.latency_metric, LATENCY_METRIC)?,
                    labels: labels.clone(),
                    observation: Observation::Value(latency),
                });
            }
            out.push(Sample {
                ts,
                service,
                version,
                metric: fixed_metric(&mut self.error_rate_metric, ERROR_RATE_METRIC)?,
                labels,
                observation: Observation::Outcome {
                    error: error.unwrap_or(false),
                },
            });
            return Ok(());
        };

        for (field, value) in [
            ("latency_ms", &raw.latency_ms),
            ("error", &raw.error),
            ("status", &raw.status),
        ] {
            if present(value).is_some() {
                return Err(EventError::Mixed { field });
            }
        }
        let metric = self
            .metrics
            .intern(string("metric", metric)?, MetricName::new)?;
        let value = present(&raw.value);
        let requests = present(&raw.requests);
        let errors = present(&raw.errors);
        let observation = match (value, requests, errors) {
            (Some(value), None, None) => {
                Observation::Value(non_negative("value", "a number >= 0", value)?)
            }
            (None, Some(requests), Some(errors)) => {
                let requests = count("requests", requests)?;
                let errors = count("errors", errors)?;
                if errors > requests {
                    return Err(CoreError::ErrorsExceedRequests { requests, errors }.into());
                }
                Observation::Counts { requests, errors }
            }
            (None, Some(_), None) => return Err(EventError::Missing { field: "errors" }),
            (None, None, Some(_)) => return Err(EventError::Missing { field: "requests" }),
            (None, None, None) => return Err(EventError::EmptyMetricSample),
            (Some(_), _, _) => return Err(EventError::AmbiguousMetricSample),
        };
        out.push(Sample {
            ts,
            service,
            version,
            metric,
            labels,
            observation,
        });
        Ok(())
    }
}

/// A cache of validated names (or label sets) by their text.
///
/// The last hit is checked before the map: consecutive events mostly share
/// their service, often their version and labels, and comparing a short
/// string is several times cheaper than hashing it.
struct Interner<T> {
    map: HashMap<Box<str>, T>,
    /// Total length of the map's keys.
    n_bytes: usize,
    last_text: String,
    last: Option<T>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            map: HashMap::new(),
            n_bytes: 0,
            last_text: String::new(),
            last: None,
        }
    }
}

impl<T: Clone> Interner<T> {
    /// The cached value for `text`, or `make`'s, which is cached if valid.
    fn intern<'t>(
        &mut self,
        text: &'t str,
        make: impl FnOnce(&'t str) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        if let Some(last) = &self.last {
            if self.last_text == text {
                return Ok(last.clone());
            }
        }
        let value = match self.map.get(text) {
            Some(value) => value.clone(),
            None => self.insert(text, make(text)?),
        };
        self.last_text.clear();
        self.last_text.push_str(text);
        self.last = Some(value.clone());
        Ok(value)
    }

    /// Caches a new value.
    fn insert(&mut self, text: &str, value: T) -> T {
        // Clearing everything is crude but bounded, and only ever happens
        // on streams with thousands of distinct names, where re-validating
        // the few live ones is cheap next to the rest of the work.
        if self.map.len() >= MAX_INTERNED || self.n_bytes + text.len() > MAX_INTERNED_BYTES {
            self.map.clear();
            self.n_bytes = 0;
        }
        self.n_bytes += text.len();
        self.map.insert(text.into(), value.clone());
        value
    }
}

/// The metric name of a request event's sample, created on first use.
fn fixed_metric(slot: &mut Option<MetricName>, name: &str) -> Result<MetricName, CoreError> {
    if let Some(metric) = slot {
        return Ok(metric.clone());
    }
    let metric = MetricName::new(name)?;
    *slot = Some(metric.clone());
    Ok(metric)
}

/// Any JSON value, with strings borrowed from the line where possible and
/// arrays and objects skipped (only their kind is kept, for messages).
#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Json<'_> {
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::U64(n) => Some(n as f64),
            Json::I64(n) => Some(n as f64),
            Json::F64(x) => Some(x),
            _ => None,
        }
    }
}

impl fmt::Display for Json<'_> {
    /// As JSON text, strings quoted and shortened; arrays and objects by
    /// kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::U64(n) => write!(f, "{n}"),
            Json::I64(n) => write!(f, "{n}"),
            // Debug keeps a float's decimal point and switches to exponents
            // for huge values, where Display would print 300 digits.
            Json::F64(x) => write!(f, "{x:?}"),
            Json::Str(s) => write!(f, "{:?}", shorten(s)),
            Json::Array => f.write_str("an array"),
            Json::Object => f.write_str("an object"),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any json value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::I64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // Only strings with escapes land here; they need their own copy.
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

/// The fields of an event as deserialized, before validation. Keeping every
/// field as raw JSON lets validation name the field and the offending value
/// (serde's own type errors would abort the whole line, array included).
#[derive(Default)]
struct RawEvent<'a> {
    ts: Option<Json<'a>>,
    service: Option<Json<'a>>,
    version: Option<Json<'a>>,
    latency_ms: Option<Json<'a>>,
    error: Option<Json<'a>>,
    status: Option<Json<'a>>,
    metric: Option<Json<'a>>,
    value: Option<Json<'a>>,
    requests: Option<Json<'a>>,
    errors: Option<Json<'a>>,
    labels: LabelsField,
    /// The first field seen twice, if any.
    duplicate: Option<&'static str>,
    /// What stood where the event should be, if not an object.
    not_an_object: Option<String>,
}

/// What the `labels` field held; the pairs themselves are in
/// [`Decoder::label_key`].
#[derive(Debug, Default)]
enum LabelsField {
    #[default]
    Absent,
    Present,
    Invalid(EventError),
}

/// The fields an event may have; anything else is ignored.
#[derive(Clone, Copy)]
enum Field {
    Ts,
    Service,
    Version,
    LatencyMs,
    Error,
    Status,
    Labels,
    Metric,
    Value,
    Requests,
    Errors,
    Other,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Ts => "ts",
            Field::Service => "service",
            Field::Version => "version",
            Field::LatencyMs => "latency_ms",
            Field::Error => "error",
            Field::Status => "status",
            Field::Labels => "labels",
            Field::Metric => "metric",
            Field::Value => "value",
            Field::Requests => "requests",
            Field::Errors => "errors",
            Field::Other => "",
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(match v {
            "ts" => Field::Ts,
            "service" => Field::Service,
            "version" => Field::Version,
            "latency_ms" => Field::LatencyMs,
            "error" => Field::Error,
            "status" => Field::Status,
            "labels" => Field::Labels,
            "metric" => Field::Metric,
            "value" => Field::Value,
            "requests" => Field::Requests,
            "errors" => Field::Errors,
            _ => Field::Other,
        })
    }
}

/// Deserializes one event (or whatever stands in its place) into `raw`,
/// which starts empty, writing its labels into the decoder's label key.
///
/// Filling a caller's `RawEvent` in place rather than returning one saves
/// copying its 300-odd bytes twice per event, a measurable share of the
/// time spent per line.
struct EventSeed<'s, 'de> {
    raw: &'s mut RawEvent<'de>,
    label_key: &'s mut String,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let raw = self.raw;
        // `labels: {}` leaves `raw.labels` absent, so a second `labels`
        // needs its own record to be caught.
        let mut has_labels = false;
        while let Some(field) = map.next_key::<Field>()? {
            let slot = match field {
                Field::Ts => &mut raw.ts,
                Field::Service => &mut raw.service,
                Field::Version => &mut raw.version,
                Field::LatencyMs => &mut raw.latency_ms,
                Field::Error => &mut raw.error,
                Field::Status => &mut raw.status,
                Field::Metric => &mut raw.metric,
                Field::Value => &mut raw.value,
                Field::Requests => &mut raw.requests,
                Field::Errors => &mut raw.errors,
                Field::Labels => {
                    if !has_labels {
                        has_labels = true;
                        raw.labels = map.next_value_seed(LabelsSeed {
                            key: &mut *self.label_key,
                        })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        raw.duplicate.get_or_insert(Field::Labels.name());
                    }
                    continue;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<Json<'de>>()?;
            if slot.is_some() {
                raw.duplicate.get_or_insert(field.name());
            } else {
                *slot = Some(value);
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let found = JsonVisitor.visit_seq(seq)?;
        self.not_an_object(&found);
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.not_an_object(&Json::Null);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.not_an_object(&Json::Bool(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.not_an_object(&Json::U64(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.not_an_object(&Json::I64(v));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.not_an_object(&Json::F64(v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.not_an_object(&Json::Str(Cow::Borrowed(v)));
        Ok(())
    }
}

impl EventSeed<'_, '_> {
    fn not_an_object(self, found: &Json<'_>) {
        self.raw.not_an_object = Some(found.to_string());
    }
}

/// Deserializes a line's array, converting each element as soon as it is
/// read: the label key holds one event's labels at a time.
struct ArraySeed<'d> {
    decoder: &'d mut Decoder,
    out: &'d mut Vec<Sample>,
    rejected: &'d mut VecDeque<EventError>,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    /// How many events were valid, and converted.
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n_events = 0;
        let mut index = 0;
        loop {
            let mut raw = RawEvent::default();
            let seed = EventSeed {
                raw: &mut raw,
                label_key: &mut self.decoder.label_key,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
            match self.decoder.convert(&mut raw, self.out) {
                Ok(()) => n_events += 1,
                Err(error) => self.rejected.push_back(EventError::InArray {
                    index,
                    error: Box::new(error),
                }),
            }
            index += 1;
        }
        Ok(n_events)
    }
}

/// Deserializes `labels`, encoding its pairs into the label key and
/// recording (not raising) the first problem, so that one bad label rejects
/// its event but not the rest of an array.
struct LabelsSeed<'s> {
    key: &'s mut String,
}

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = LabelsField;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<LabelsField, D::Error> {
        let labels = deserializer.deserialize_any(LabelsVisitor { key: self.key })?;
        Ok(match labels {
            Ok(true) => LabelsField::Present,
            Ok(false) => LabelsField::Absent,
            Err(error) => LabelsField::Invalid(error),
        })
    }
}

/// See [`LabelsSeed`]: gives `Ok(true)` for a non-empty object, `Ok(false)`
/// for `null` or `{}`.
struct LabelsVisitor<'s> {
    key: &'s mut String,
}

impl LabelsVisitor<'_> {
    fn not_an_object(found: &Json<'_>) -> Result<bool, EventError> {
        Err(invalid("labels", "an object", found))
    }
}

impl<'de> Visitor<'de> for LabelsVisitor<'_> {
    type Value = Result<bool, EventError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.key.clear();
        let mut n_labels = 0;
        let mut problem = None;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let value = map.next_value::<Json<'de>>()?;
            if problem.is_none() {
                n_labels += 1;
                problem = push_label(self.key, &name, &value, n_labels).err();
            }
        }
        Ok(match problem {
            Some(error) => Err(error),
            None => Ok(n_labels > 0),
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(false))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok(Self::not_an_object(&JsonVisitor.visit_seq(seq)?))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::not_an_object(&Json::Bool(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Self::not_an_object(&Json::U64(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Self::not_an_object(&Json::I64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Self::not_an_object(&Json::F64(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Self::not_an_object(&Json::Str(Cow::Borrowed(v))))
    }
}

/// Validates one label and appends it to the label key.
fn push_label(
    key: &mut String,
    name: &str,
    value: &Json<'_>,
    n_labels: usize,
) -> Result<(), EventError> {
    if n_labels > MAX_LABELS {
        return Err(EventError::TooManyLabels { max: MAX_LABELS });
    }
    if name.is_empty() {
        return Err(EventError::EmptyLabelKey);
    }
    let label_problem = |problem: String| EventError::InvalidLabel {
        key: shorten(name).into_owned(),
        problem,
    };
    check_label_text(name).map_err(|problem| label_problem(problem.to_owned()))?;
    key.push_str(name);
    key.push(LABEL_KEY_END);
    // Writing to a String cannot fail, so the fmt::Results are moot.
    let _ = match value {
        Json::Str(text) => {
            check_label_text(text).map_err(|problem| label_problem(format!("value {problem}")))?;
            key.push_str(text);
            Ok(())
        }
        Json::Bool(b) => write!(key, "{b}"),
        Json::U64(n) => write!(key, "{n}"),
        Json::I64(n) => write!(key, "{n}"),
        Json::F64(x) => write!(key, "{x:?}"),
        Json::Null | Json::Array | Json::Object => {
            return Err(label_problem(format!(
                "must be a string, number or bool, got {value}"
            )));
        }
    };
    key.push(LABEL_VALUE_END);
    Ok(())
}

/// What is wrong with a label key or value, if anything. The same limits
/// as names: labels become parts of series keys.
fn check_label_text(text: &str) -> Result<(), &'static str> {
    if text.len() > MAX_NAME_BYTES {
        return Err("is longer than 256 bytes");
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    Ok(())
}

/// A field's value, treating `null` as absent.
fn present<'r, 'a>(value: &'r Option<Json<'a>>) -> Option<&'r Json<'a>> {
    value.as_ref().filter(|v| !matches!(v, Json::Null))
}

fn required<'r, 'a>(
    field: &'static str,
    value: &'r Option<Json<'a>>,
) -> Result<&'r Json<'a>, EventError> {
    value.as_ref().ok_or(EventError::Missing { field })
}

fn invalid(field: &'static str, expected: &'static str, found: &Json<'_>) -> EventError {
    EventError::Invalid {
        field,
        expected,
        found: found.to_string(),
    }
}

/// A string field's text.
fn string<'r>(field: &'static str, value: &'r Json<'_>) -> Result<&'r str, EventError> {
    match value {
        Json::Str(text) => Ok(text),
        other => Err(invalid(field, "a string", other)),
    }
}

fn latency_ms(value: &Json<'_>) -> Result<f64, EventError> {
    non_negative("latency_ms", "a number >= 0", value)
}

/// A finite number >= 0, with -0 made 0 so that no consumer prints "-0".
fn non_negative(
    field: &'static str,
    expected: &'static str,
    value: &Json<'_>,
) -> Result<f64, EventError> {
    match value.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x + 0.0),
        _ => Err(invalid(field, expected, value)),
    }
}

/// A non-negative integer; floats with no fractional part are accepted,
/// since some producers (JavaScript's) write every number as a float.
fn count(field: &'static str, value: &Json<'_>) -> Result<u64, EventError> {
    let n = match *value {
        Json::U64(n) => Some(n),
        Json::I64(n) => u64::try_from(n).ok(),
        Json::F64(x) if x.fract() == 0.0 && (0.0..=MAX_EXACT_FLOAT_INT).contains(&x) => {
            Some(x as u64)
        }
        _ => None,
    };
    n.ok_or_else(|| invalid(field, "an integer >= 0", value))
}

/// Whether an HTTP status means the request failed (5xx).
fn status_is_error(value: &Json<'_>) -> Result<bool, EventError> {
    match count("status", value) {
        Ok(status) if (100..=599).contains(&status) => Ok(status >= 500),
        _ => Err(invalid("status", "an http status code (100 to 599)", value)),
    }
}

/// Stream time from epoch seconds or an RFC 3339 string.
fn timestamp(value: &Json<'_>) -> Result<f64, EventError> {
    let ts = match value {
        Json::Str(text) => parse_rfc3339(text).map_err(|reason| EventError::Timestamp {
            found: value.to_string(),
            reason,
        })?,
        other => match other.as_f64() {
            Some(ts) => ts,
            None => {
                return Err(EventError::Timestamp {
                    found: value.to_string(),
                    reason: "expected a number or a string",
                })
            }
        },
    };
    if !(0.0..=MAX_TS).contains(&ts) {
        return Err(invalid(
            "ts",
            "epoch seconds from 1970 to 9999 (0 to 253402300799)",
            value,
        ));
    }
    Ok(ts + 0.0)
}

/// Parses `yyyy-mm-ddThh:mm:ss[.frac]` followed by `Z` or `±hh:mm` into
/// epoch seconds.
///
/// humantime does the calendar arithmetic, but its parser is lenient about
/// zones: it reads a missing zone as UTC and, after fractional seconds,
/// ignores any `+hh:mm` offset. So the zone is split off and applied here,
/// and humantime sees only the zone-less date and time, checked first to
/// be exactly that.
fn parse_rfc3339(text: &str) -> Result<f64, &'static str> {
    const SHAPE: &str = "expected yyyy-mm-ddThh:mm:ss[.frac] followed by Z or ±hh:mm";
    let bytes = text.as_bytes();
    // The date and time's separators first, so that text that is not a
    // timestamp at all is not reported as lacking a time zone.
    let is_date_time = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !is_date_time {
        return Err(SHAPE);
    }
    let (local, offset_secs) = if let Some(local) = text.strip_suffix(['Z', 'z']) {
        (local, 0_i64)
    } else {
        // At least 19 bytes long, as checked above.
        let at = bytes.len() - 6;
        let sign = match bytes[at] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err("no time zone: expected Z or ±hh:mm at the end"),
        };
        let (Some(hours), Some(b':'), Some(minutes)) = (
            two_digits(&bytes[at + 1..at + 3]),
            bytes.get(at + 3),
            two_digits(&bytes[at + 4..at + 6]),
        ) else {
            return Err("no time zone: expected Z or ±hh:mm at the end");
        };
        if hours > 23 || minutes > 59 {
            return Err("the time zone offset is out of range");
        }
        // `at` is the index of an ASCII sign, so it is a char boundary.
        (&text[..at], sign * (hours * 3600 + minutes * 60))
    };
    let local_bytes = local.as_bytes();
    let well_formed = match local_bytes.len() {
        19 => true,
        n if n > 20 => local_bytes[19] == b'.' && local_bytes[20..].iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !well_formed {
        return Err(SHAPE);
    }
    let time = humantime::parse_rfc3339_weak(local).map_err(|error| match error {
        humantime::TimestampError::OutOfRange => "a date or time field is out of range",
        humantime::TimestampError::InvalidDigit | humantime::TimestampError::InvalidFormat => SHAPE,
    })?;
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| "before 1970")?;
    Ok(since_epoch.as_secs_f64() - offset_secs as f64)
}

/// Two ASCII digits as a number.
fn two_digits(bytes: &[u8]) -> Option<i64> {
    match *bytes {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(i64::from(a - b'0') * 10 + i64::from(b - b'0')),
        _ => None,
    }
}

/// Cuts text quoted in an error message to a readable length.
fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests;
