//! `SampleBatch` -> samples, each point validated on its own.
//!
//! A batch names one series (service, version, metric, labels) and carries
//! any mix of point lists. A bad batch header (an invalid name, too many
//! labels) rejects every point in it; a bad point (a non-finite timestamp,
//! a value without a timestamp) rejects only itself. Values themselves
//! (negative latencies, errors over requests...) are checked by
//! `Store::record`, which counts its own rejections; every point here is
//! either returned as a sample or as exactly one [`PointError`], so nothing
//! is lost or counted twice.

use vigil_core::events::MAX_LABELS;
use vigil_core::{CoreError, Labels, MetricName, Observation, Sample, ServiceName, Version};

use crate::v1::SampleBatch;

/// Why a point was rejected; also the `reason` label of rejection counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Service, version, metric or a label is not a valid name.
    InvalidName,
    /// More labels than [`MAX_LABELS`].
    TooManyLabels,
    /// `timestamps` and `values` differ in length.
    LengthMismatch,
    /// A timestamp that is NaN, infinite or negative.
    InvalidTimestamp,
}

impl RejectReason {
    /// A short, stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidName => "invalid_name",
            RejectReason::TooManyLabels => "too_many_labels",
            RejectReason::LengthMismatch => "length_mismatch",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
        }
    }
}

/// One rejected point (or a whole batch's points, when `points` > 1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PointError {
    /// Where: `service`, `values[3]`, `histograms[0].ts`...
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How many points this rejects.
    pub points: u64,
    /// The counter label.
    pub reason: RejectReason,
}

/// What a batch decodes to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSamples {
    /// The well-formed points, in batch order per list.
    pub samples: Vec<Sample>,
    /// The rejected ones.
    pub rejected: Vec<PointError>,
}

impl BatchSamples {
    /// Points rejected in total.
    pub fn rejected_points(&self) -> u64 {
        self.rejected.iter().map(|e| e.points).sum()
    }
}

/// Points in a batch: every entry of every list (a value without a
/// timestamp, or the reverse, is a point too).
pub fn point_count(batch: &SampleBatch) -> u64 {
    let pairs = batch.timestamps.len().max(batch.values.len());
    (pairs + batch.histograms.len() + batch.counts.len() + batch.outcomes.len()) as u64
}

fn name_error(field: &str, e: CoreError, points: u64) -> PointError {
    PointError {
        field: field.to_owned(),
        message: e.to_string(),
        points,
        reason: RejectReason::InvalidName,
    }
}

fn check_ts(field: impl FnOnce() -> String, ts: f64) -> Result<f64, PointError> {
    if ts.is_finite() && ts >= 0.0 {
        Ok(ts)
    } else {
        Err(PointError {
            field: field(),
            message: format!("must be finite epoch seconds >= 0, got {ts}"),
            points: 1,
            reason: RejectReason::InvalidTimestamp,
        })
    }
}

/// Validated names of the batches a thread decoded last (see
/// [`batch_names`]).
const NAME_CACHE: usize = 16;

thread_local! {
    static NAMES: std::cell::RefCell<Vec<(ServiceName, Version, MetricName)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A batch's service, version and metric, validated. A stream's batches
/// repeat a few series: names seen in one of this thread's last
/// [`NAME_CACHE`] batches are the same shared names again, not new ones.
/// That saves three allocations and checks per batch, and lets the store
/// recognise the names by address (one lookup per batch where new names
/// took three).
fn batch_names(
    batch: &SampleBatch,
    total: u64,
) -> Result<(ServiceName, Version, MetricName), PointError> {
    names_of(&batch.service, &batch.version, &batch.metric, total)
}

/// [`batch_names`] of the names themselves.
fn names_of(
    service: &str,
    version: &str,
    metric: &str,
    total: u64,
) -> Result<(ServiceName, Version, MetricName), PointError> {
    let batch = (service, version, metric);
    let same = |(s, v, m): &(ServiceName, Version, MetricName)| {
        s.as_str() == batch.0 && v.as_str() == batch.1 && m.as_str() == batch.2
    };
    let cached = NAMES.with(|names| {
        let names = names.try_borrow().ok()?;
        names.iter().find(|n| same(n)).cloned()
    });
    if let Some(names) = cached {
        return Ok(names);
    }
    let service = ServiceName::new(service).map_err(|e| name_error("service", e, total))?;
    let version = Version::new(version).map_err(|e| name_error("version", e, total))?;
    let metric = MetricName::new(metric).map_err(|e| name_error("metric", e, total))?;
    let names = (service, version, metric);
    NAMES.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if cache.len() >= NAME_CACHE {
                cache.remove(0);
            }
            cache.push(names.clone());
        }
    });
    Ok(names)
}

/// A batch's series: its names and labels, validated; an error rejects
/// all `total` points.
fn batch_header(
    batch: &SampleBatch,
    total: u64,
) -> Result<(ServiceName, Version, MetricName, Labels), PointError> {
    let (service, version, metric) = batch_names(batch, total)?;
    if batch.labels.len() > MAX_LABELS {
        return Err(PointError {
            field: "labels".into(),
            message: format!(
                "{} labels, at most {MAX_LABELS} are accepted",
                batch.labels.len()
            ),
            points: total,
            reason: RejectReason::TooManyLabels,
        });
    }
    for (k, v) in &batch.labels {
        for (what, s) in [("key", k), ("value", v)] {
            if !label_text_ok(s) {
                return Err(PointError {
                    field: format!("labels[{k:?}]"),
                    message: format!(
                        "label {what} must be non-empty printable text of at most {} bytes",
                        vigil_core::names::MAX_NAME_BYTES
                    ),
                    points: total,
                    reason: RejectReason::InvalidName,
                });
            }
        }
    }
    Ok((
        service,
        version,
        metric,
        Labels::from_pairs(batch.labels.iter()),
    ))
}

/// Whether `s` is a valid label key or value: non-empty printable text of
/// at most `MAX_NAME_BYTES` bytes.
fn label_text_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(char::is_control)
        && s.len() <= vigil_core::names::MAX_NAME_BYTES
}

/// What a batch of values only decodes to: its series and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchValues {
    /// The series, as a sample carrying the first point (only its names
    /// and labels matter: see `Store::record_values`).
    pub head: Sample,
    /// `(timestamp, value)` pairs, in batch order.
    pub points: Vec<(f64, f64)>,
}

/// A batch that holds values only (no histograms, counts or outcomes, as
/// many timestamps as values, at least one): its series and points, with
/// no [`Sample`] per point; or the first error [`samples_from_batch`]
/// would give. `None` for any other batch (use [`samples_from_batch`]).
pub fn values_from_batch(batch: &SampleBatch) -> Option<Result<BatchValues, PointError>> {
    if !(batch.histograms.is_empty() && batch.counts.is_empty() && batch.outcomes.is_empty())
        || batch.timestamps.len() != batch.values.len()
        || batch.values.is_empty()
    {
        return None;
    }
    let total = point_count(batch);
    let (service, version, metric, labels) = match batch_header(batch, total) {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    let mut points = Vec::with_capacity(batch.values.len());
    for (i, (&ts, &v)) in batch.timestamps.iter().zip(&batch.values).enumerate() {
        match check_ts(|| format!("timestamps[{i}]"), ts) {
            Ok(ts) => points.push((ts, v)),
            Err(e) => return Some(Err(e)),
        }
    }
    let (ts, v) = points[0];
    Some(Ok(BatchValues {
        head: Sample {
            ts,
            service,
            version,
            metric,
            labels,
            observation: Observation::Value(v),
        },
        points,
    }))
}

/// [`values_from_batch`] of an encoded `SampleBatch`, read straight from
/// its bytes: the points go from the two packed lists into their pairs in
/// one pass, where decoding the message first copied each list into a
/// vector of its own (both steps were a seventh of a Kafka worker's time,
/// `vigil bench ingest`).
///
/// `None` whenever this reading could differ from decoding the message
/// and [`values_from_batch`]: a field other than service, version, metric,
/// labels and the two packed lists (histograms, counts, outcomes, unknown
/// fields), a field or label given twice, a list split in several parts,
/// a malformed encoding, or anything [`values_from_batch`] would reject.
/// The caller then decodes the message the general way, which also says
/// what is wrong.
pub fn values_from_bytes(bytes: &[u8]) -> Option<BatchValues> {
    let mut wire = Wire(bytes);
    let (mut service, mut version, mut metric) = (None, None, None);
    let (mut timestamps, mut values) = (None, None);
    let mut labels: Vec<(&str, &str)> = Vec::new();
    while !wire.0.is_empty() {
        let key = wire.varint()?;
        // Every field this reads is length-delimited (wire type 2).
        if key & 7 != 2 {
            return None;
        }
        let body = wire.take()?;
        match key >> 3 {
            1 => set_once(&mut service, std::str::from_utf8(body).ok()?)?,
            2 => set_once(&mut version, std::str::from_utf8(body).ok()?)?,
            3 => set_once(&mut metric, std::str::from_utf8(body).ok()?)?,
            4 => {
                let (k, v) = map_entry(body)?;
                if labels.len() >= MAX_LABELS || labels.iter().any(|&(seen, _)| seen == k) {
                    return None;
                }
                if !(label_text_ok(k) && label_text_ok(v)) {
                    return None;
                }
                labels.push((k, v));
            }
            5 => set_once(&mut timestamps, body)?,
            6 => set_once(&mut values, body)?,
            _ => return None,
        }
    }
    let (timestamps, values) = (timestamps?, values?);
    if timestamps.len() != values.len() || values.is_empty() || values.len() % 8 != 0 {
        return None;
    }
    let (service, version, metric) = names_of(
        service.unwrap_or_default(),
        version.unwrap_or_default(),
        metric.unwrap_or_default(),
        (values.len() / 8) as u64,
    )
    .ok()?;
    // Whole 8-byte words (the lengths were checked above). The timestamps
    // are checked in one pass, then the points built in another: two tight
    // loops rather than a check and a push per point.
    let (timestamps, _) = timestamps.as_chunks::<8>();
    let (values, _) = values.as_chunks::<8>();
    if !timestamps
        .iter()
        .all(|&ts| check_ts(String::new, f64::from_le_bytes(ts)).is_ok())
    {
        return None;
    }
    let points: Vec<(f64, f64)> = timestamps
        .iter()
        .zip(values)
        .map(|(&ts, &v)| (f64::from_le_bytes(ts), f64::from_le_bytes(v)))
        .collect();
    let &(ts, v) = points.first()?;
    Some(BatchValues {
        head: Sample {
            ts,
            service,
            version,
            metric,
            labels: Labels::from_pairs(labels),
            observation: Observation::Value(v),
        },
        points,
    })
}

/// Protobuf wire-format bytes not yet read.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    /// A base-128 varint of at most ten bytes.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// A length-delimited field's bytes.
    fn take(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (body, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(body)
    }
}

/// Sets a field read for the first time; `None` for a second time.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// A `map<string, string>` entry: key (1) and value (2), each at most once
/// (an absent one is empty).
fn map_entry(body: &[u8]) -> Option<(&str, &str)> {
    let mut wire = Wire(body);
    let (mut key, mut value) = (None, None);
    while !wire.0.is_empty() {
        let tag = wire.varint()?;
        if tag & 7 != 2 {
            return None;
        }
        let text = std::str::from_utf8(wire.take()?).ok()?;
        match tag >> 3 {
            1 => set_once(&mut key, text)?,
            2 => set_once(&mut value, text)?,
            _ => return None,
        }
    }
    Some((key.unwrap_or_default(), value.unwrap_or_default()))
}

/// Decodes one batch.
pub fn samples_from_batch(batch: &SampleBatch) -> BatchSamples {
    let mut out = BatchSamples::default();
    let total = point_count(batch);
    if total == 0 {
        return out;
    }
    let header = batch_header(batch, total);
    let (service, version, metric, labels) = match header {
        Ok(h) => h,
        Err(e) => {
            out.rejected.push(e);
            return out;
        }
    };
    let mut push = |ts: f64, observation: Observation| {
        out.samples.push(Sample {
            ts,
            service: service.clone(),
            version: version.clone(),
            metric: metric.clone(),
            labels: labels.clone(),
            observation,
        });
    };
    let mut rejected = Vec::new();
    let pairs = batch.timestamps.len().max(batch.values.len());
    for i in 0..pairs {
        match (batch.timestamps.get(i), batch.values.get(i)) {
            (Some(&ts), Some(&v)) => match check_ts(|| format!("timestamps[{i}]"), ts) {
                Ok(ts) => push(ts, Observation::Value(v)),
                Err(e) => rejected.push(e),
            },
            _ => rejected.push(PointError {
                field: if batch.timestamps.len() > batch.values.len() {
                    format!("timestamps[{i}]")
                } else {
                    format!("values[{i}]")
                },
                message: format!(
                    "timestamps ({}) and values ({}) must have the same length",
                    batch.timestamps.len(),
                    batch.values.len()
                ),
                points: 1,
                reason: RejectReason::LengthMismatch,
            }),
        }
    }
    for (i, h) in batch.histograms.iter().enumerate() {
        match check_ts(|| format!("histograms[{i}].ts"), h.ts) {
            Ok(ts) => push(
                ts,
                Observation::Histogram(h.buckets.iter().map(|b| (b.value, b.count)).collect()),
            ),
            Err(e) => rejected.push(e),
        }
    }
    for (i, c) in batch.counts.iter().enumerate() {
        match check_ts(|| format!("counts[{i}].ts"), c.ts) {
            Ok(ts) => push(
                ts,
                Observation::Counts {
                    requests: c.requests,
                    errors: c.errors,
                },
            ),
            Err(e) => rejected.push(e),
        }
    }
    for (i, o) in batch.outcomes.iter().enumerate() {
        match check_ts(|| format!("outcomes[{i}].ts"), o.ts) {
            Ok(ts) => push(ts, Observation::Outcome { error: o.error }),
            Err(e) => rejected.push(e),
        }
    }
    out.rejected = rejected;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Bucket, CountsPoint, HistogramPoint, OutcomePoint};

    fn batch() -> SampleBatch {
        SampleBatch {
            service: "payment".into(),
            version: "v8".into(),
            metric: "latency".into(),
            labels: [("endpoint".to_owned(), "/charge".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// Values-only batches give the samples' series and points, or their
    /// first error; other batches are left to `samples_from_batch`.
    #[test]
    fn values_only_batches_match_their_samples() {
        let as_values = |b: &SampleBatch| -> Option<Result<Vec<Sample>, PointError>> {
            values_from_batch(b).map(|r| {
                r.map(|v| {
                    v.points
                        .iter()
                        .map(|&(ts, x)| Sample {
                            ts,
                            observation: Observation::Value(x),
                            ..v.head.clone()
                        })
                        .collect()
                })
            })
        };
        let as_samples = |b: &SampleBatch| {
            let out = samples_from_batch(b);
            match out.rejected.into_iter().next() {
                Some(e) => Err(e),
                None => Ok(out.samples),
            }
        };
        let mut b = batch();
        b.timestamps = vec![10.0, 11.0, 12.0];
        b.values = vec![80.5, -1.0, 90.0];
        assert_eq!(as_values(&b), Some(as_samples(&b)));
        b.timestamps[1] = f64::NAN;
        b.timestamps[2] = -3.0;
        assert_eq!(as_values(&b), Some(as_samples(&b)));
        let mut bad = b.clone();
        bad.service = String::new();
        assert_eq!(as_values(&bad), Some(as_samples(&bad)));
        bad.timestamps.pop();
        assert_eq!(as_values(&bad), None);
        b.outcomes = vec![OutcomePoint {
            ts: 1.0,
            error: true,
        }];
        assert_eq!(as_values(&b), None);
        assert_eq!(as_values(&batch()), None);
    }

    #[test]
    fn every_point_list_becomes_samples() {
        let mut b = batch();
        b.timestamps = vec![10.0, 11.0];
        b.values = vec![80.5, 90.0];
        b.histograms = vec![HistogramPoint {
            ts: 12.0,
            buckets: vec![Bucket {
                value: 5.0,
                count: 3,
            }],
        }];
        b.counts = vec![CountsPoint {
            ts: 13.0,
            requests: 100,
            errors: 2,
        }];
        b.outcomes = vec![OutcomePoint {
            ts: 14.0,
            error: true,
        }];
        let out = samples_from_batch(&b);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let obs: Vec<_> = out
            .samples
            .iter()
            .map(|s| (s.ts, s.observation.clone()))
            .collect();
        assert_eq!(
            obs,
            vec![
                (10.0, Observation::Value(80.5)),
                (11.0, Observation::Value(90.0)),
                (12.0, Observation::Histogram(vec![(5.0, 3)])),
                (
                    13.0,
                    Observation::Counts {
                        requests: 100,
                        errors: 2
                    }
                ),
                (14.0, Observation::Outcome { error: true }),
            ]
        );
        let s = &out.samples[0];
        assert_eq!(s.service.as_str(), "payment");
        assert_eq!(s.labels.get("endpoint"), Some("/charge"));
    }

    #[test]
    fn a_bad_point_rejects_only_itself() {
        let mut b = batch();
        b.timestamps = vec![10.0, f64::NAN, 12.0];
        b.values = vec![1.0, 2.0, 3.0, 4.0];
        b.counts = vec![CountsPoint {
            ts: -1.0,
            requests: 1,
            errors: 0,
        }];
        let out = samples_from_batch(&b);
        assert_eq!(out.samples.len(), 2);
        let fields: Vec<_> = out
            .rejected
            .iter()
            .map(|e| (e.field.as_str(), e.reason))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("timestamps[1]", RejectReason::InvalidTimestamp),
                ("values[3]", RejectReason::LengthMismatch),
                ("counts[0].ts", RejectReason::InvalidTimestamp),
            ]
        );
        assert_eq!(
            out.samples.len() as u64 + out.rejected_points(),
            point_count(&b)
        );
    }

    #[test]
    fn a_bad_header_rejects_every_point_once() {
        let mut b = batch();
        b.version = String::new();
        b.timestamps = vec![1.0, 2.0];
        b.values = vec![1.0, 2.0];
        b.outcomes = vec![OutcomePoint {
            ts: 1.0,
            error: false,
        }];
        let out = samples_from_batch(&b);
        assert!(out.samples.is_empty());
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].field, "version");
        assert_eq!(out.rejected_points(), 3);

        let mut b = batch();
        b.labels.insert("bad".into(), "a\nb".into());
        b.outcomes = vec![OutcomePoint {
            ts: 1.0,
            error: false,
        }];
        let out = samples_from_batch(&b);
        assert_eq!(out.rejected[0].reason, RejectReason::InvalidName);
    }

    /// Batches of the same series share their names (by address); a name
    /// not seen before is built and checked, and a bad one still fails,
    /// however many good ones came first.
    #[test]
    fn repeated_series_share_their_names() {
        let ptrs = |b: &SampleBatch| {
            let (s, v, m, _) = batch_header(b, 1).unwrap();
            (
                s.as_str().as_ptr(),
                v.as_str().as_ptr(),
                m.as_str().as_ptr(),
            )
        };
        let first = ptrs(&batch());
        assert_eq!(ptrs(&batch()), first);
        let other = SampleBatch {
            version: "v9".into(),
            ..batch()
        };
        let (s, v, m, _) = batch_header(&other, 1).unwrap();
        assert_eq!(v.as_str(), "v9");
        assert_eq!(s.as_str(), "payment");
        assert_ne!(v.as_str().as_ptr(), first.1);
        assert_eq!(m.as_str(), "latency");
        // Evicted from the cache after NAME_CACHE others: built again.
        for k in 0..NAME_CACHE {
            batch_header(
                &SampleBatch {
                    version: format!("w{k}"),
                    ..batch()
                },
                1,
            )
            .unwrap();
        }
        let again = batch_header(&batch(), 1).unwrap();
        assert_eq!(again.1.as_str(), "v8");
        let bad = SampleBatch {
            service: String::new(),
            ..batch()
        };
        let err = batch_header(&bad, 3).unwrap_err();
        assert_eq!(err.field, "service");
        assert_eq!(err.points, 3);
        assert_eq!(err.reason, RejectReason::InvalidName);
    }

    /// What the general path gives for an encoded batch: decode the
    /// message, then `values_from_batch`; values as their bits, so that a
    /// NaN read the same way compares equal.
    fn general(bytes: &[u8]) -> Option<Result<Bits, PointError>> {
        use prost::Message as _;
        let batch = SampleBatch::decode(bytes).ok()?;
        values_from_batch(&batch).map(|r| r.map(bits))
    }

    /// A batch's series and its points' bits.
    type Bits = (String, Vec<(u64, u64)>);

    fn bits(v: BatchValues) -> Bits {
        let head = Sample {
            observation: Observation::Value(0.0),
            ..v.head
        };
        let points = v
            .points
            .iter()
            .map(|p| (p.0.to_bits(), p.1.to_bits()))
            .collect();
        (format!("{head:?}"), points)
    }

    /// Reading the bytes straight gives what decoding the message gives,
    /// for the batches it reads; it leaves every other batch to the
    /// general path.
    #[test]
    fn values_read_from_bytes_match_the_decoded_message() {
        use prost::Message as _;
        let values = |b: SampleBatch| -> SampleBatch {
            SampleBatch {
                timestamps: vec![1_800_000_000.0, 1_800_000_000.5, 0.0],
                values: vec![12.5, 0.0, -3.0],
                ..b
            }
        };
        // Read: with labels, without, with a negative value (a value is
        // the caller's to check, as for the general path).
        for b in [
            values(batch()),
            values(SampleBatch {
                labels: Default::default(),
                ..batch()
            }),
        ] {
            let bytes = b.encode_to_vec();
            let fast = values_from_bytes(&bytes).expect("a values-only batch is read");
            assert_eq!(general(&bytes), Some(Ok(bits(fast))));
        }
        // Left to the general path.
        let nan = SampleBatch {
            timestamps: vec![f64::NAN, 1.0, 2.0],
            ..values(batch())
        };
        let bad_name = SampleBatch {
            service: "".into(),
            ..values(batch())
        };
        let bad_label = SampleBatch {
            labels: [("endpoint".to_owned(), "a\nb".to_owned())]
                .into_iter()
                .collect(),
            ..values(batch())
        };
        let too_many = SampleBatch {
            labels: (0..=MAX_LABELS)
                .map(|i| (format!("k{i}"), "v".to_owned()))
                .collect(),
            ..values(batch())
        };
        let short = SampleBatch {
            values: vec![1.0],
            ..values(batch())
        };
        let histograms = SampleBatch {
            histograms: vec![HistogramPoint {
                ts: 1.0,
                buckets: vec![Bucket {
                    value: 1.0,
                    count: 1,
                }],
            }],
            ..values(batch())
        };
        for b in [nan, bad_name, bad_label, too_many, short, histograms] {
            let bytes = b.encode_to_vec();
            assert_eq!(values_from_bytes(&bytes), None, "{b:?}");
        }
        // Two messages in one payload (a decoder merges them: lists
        // append, names are replaced) and truncated bytes.
        let one = values(batch()).encode_to_vec();
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(values_from_bytes(&two), None);
        assert!(matches!(general(&two), Some(Ok(v)) if v.1.len() == 6));
        for cut in 0..one.len() {
            assert_eq!(values_from_bytes(&one[..cut]), None, "cut at {cut}");
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, reading them straight either gives exactly
        /// what the general path gives, or leaves them to it; and a
        /// well-formed values-only batch is always read.
        #[test]
        fn values_from_bytes_agrees_with_the_general_path(
            service in "[a-z]{0,3}",
            labels in proptest::collection::vec(("[a-c]{0,2}", "[x\\n]{0,2}"), 0..3),
            points in proptest::collection::vec(
                (proptest::prop_oneof![proptest::num::f64::ANY, 0.0..2e9f64],
                 proptest::num::f64::ANY),
                0..5,
            ),
            extra in proptest::collection::vec(proptest::num::u8::ANY, 0..4),
            cut in proptest::option::of(0usize..200),
        ) {
            use prost::Message as _;
            let b = SampleBatch {
                service,
                version: "v1".into(),
                metric: "latency".into(),
                labels: labels.into_iter().collect(),
                timestamps: points.iter().map(|p| p.0).collect(),
                values: points.iter().map(|p| p.1).collect(),
                ..Default::default()
            };
            let mut bytes = b.encode_to_vec();
            bytes.extend(&extra);
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            match values_from_bytes(&bytes) {
                Some(fast) => proptest::prop_assert_eq!(general(&bytes), Some(Ok(bits(fast)))),
                None => {
                    let read = extra.is_empty() && cut.is_none();
                    if read {
                        // Left alone only if the general path rejects it
                        // or does not take it as values only.
                        proptest::prop_assert!(!matches!(general(&bytes), Some(Ok(_))));
                    }
                }
            }
        }
    }
}
