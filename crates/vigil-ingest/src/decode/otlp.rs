//! OTLP protobuf: spans become request events, metrics become distributions.
//!
//! Spans: each server span (`SPAN_KIND_SERVER`) of a resource is one
//! request of `service.name` at the version in the configured resource
//! attribute (`service.version` by default): a `latency` sample of
//! `end - start` in milliseconds and an `error_rate` outcome, failed when
//! the span's status is ERROR or its HTTP status (`http.response.status_code`
//! or the older `http.status_code`) is 500 or more. The endpoint label is
//! `http.route`, or the span name without one. Other span kinds are
//! skipped: a client span measures the callee, not the service.
//!
//! Metrics (delta temporality only: cumulative points repeat every earlier
//! count, so they are rejected with a pointer to the Collector's
//! `cumulativetodelta` processor):
//! - explicit-bucket histograms: each bucket's count is recorded at the
//!   bucket's upper bound, the conservative choice for metrics where higher
//!   is worse (a latency is never reported lower than it was, and two
//!   versions' histograms keep the same bucket layout, so a comparison
//!   between them is fair). The overflow bucket, which has no upper bound,
//!   is recorded at the point's `max` when given and otherwise at the last
//!   bound (the only value the data supports);
//! - exponential histograms: likewise at each bucket's upper bound
//!   `base^(index + 1)`, and the zero bucket at 0; negative buckets are
//!   rejected (the store holds non-negative distributions);
//! - sums (monotonic or not) and gauges: each point's value is one sample of
//!   the metric (for a delta sum: the increase over the export interval);
//! - summaries are skipped: their quantiles cannot be merged.
//!
//! Histogram values whose unit is `s` are converted to milliseconds, the
//! unit of Vigil's latencies. Data point attributes become labels (the
//! store keeps those on its allow-list).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, ExponentialHistogramDataPoint,
    HistogramDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use prost::Message;
use vigil_core::event::{ERROR_RATE_METRIC, LATENCY_METRIC};
use vigil_core::events::MAX_LABELS;
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};

use super::{DecodeError, DecodeOptions};

const NANOS_PER_SEC: f64 = 1e9;
const NANOS_PER_MS: f64 = 1e6;

/// Decodes an `ExportTraceServiceRequest`.
///
/// # Errors
///
/// Bad protobuf, a resource with server spans but no service or version, a
/// span that ends before it starts.
pub fn decode_otlp_spans(
    payload: &[u8],
    options: &DecodeOptions,
) -> Result<Vec<Sample>, DecodeError> {
    let request = ExportTraceServiceRequest::decode(payload)?;
    spans_to_samples(&request, options)
}

/// The samples of a decoded trace export (shared with the gRPC receiver).
///
/// # Errors
///
/// As [`decode_otlp_spans`].
pub fn spans_to_samples(
    request: &ExportTraceServiceRequest,
    options: &DecodeOptions,
) -> Result<Vec<Sample>, DecodeError> {
    let latency = MetricName::new(LATENCY_METRIC)?;
    let error_rate = MetricName::new(ERROR_RATE_METRIC)?;
    let mut samples = Vec::new();
    for resource_spans in &request.resource_spans {
        let mut identity = None;
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                if span.kind != SpanKind::Server as i32 {
                    continue;
                }
                let (service, version) = match &identity {
                    Some(id) => id,
                    None => identity.insert(resource_identity(
                        resource_spans.resource.as_ref(),
                        options,
                    )?),
                };
                if span.end_time_unix_nano < span.start_time_unix_nano {
                    return Err(DecodeError::NegativeDuration {
                        span: span.name.chars().take(80).collect(),
                    });
                }
                let duration_ns = span.end_time_unix_nano - span.start_time_unix_nano;
                let status_error = span
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == StatusCode::Error as i32);
                let http_error = ["http.response.status_code", "http.status_code"]
                    .iter()
                    .find_map(|k| attribute(&span.attributes, k))
                    .and_then(int_value)
                    .is_some_and(|code| code >= 500);
                let endpoint = attribute(&span.attributes, "http.route")
                    .and_then(string_value)
                    .unwrap_or(&span.name);
                let labels = if endpoint.is_empty() {
                    Labels::empty()
                } else {
                    Labels::from_pairs([("endpoint", endpoint)])
                };
                let ts = span.end_time_unix_nano as f64 / NANOS_PER_SEC;
                samples.push(Sample {
                    ts,
                    service: service.clone(),
                    version: version.clone(),
                    metric: latency.clone(),
                    labels: labels.clone(),
                    observation: Observation::Value(duration_ns as f64 / NANOS_PER_MS),
                });
                samples.push(Sample {
                    ts,
                    service: service.clone(),
                    version: version.clone(),
                    metric: error_rate.clone(),
                    labels,
                    observation: Observation::Outcome {
                        error: status_error || http_error,
                    },
                });
            }
        }
    }
    Ok(samples)
}

/// Decodes an `ExportMetricsServiceRequest`.
///
/// # Errors
///
/// Bad protobuf, a resource with metrics but no service or version,
/// cumulative temporality, inconsistent histogram buckets.
pub fn decode_otlp_metrics(
    payload: &[u8],
    options: &DecodeOptions,
) -> Result<Vec<Sample>, DecodeError> {
    let request = ExportMetricsServiceRequest::decode(payload)?;
    metrics_to_samples(&request, options)
}

/// The samples of a decoded metrics export (shared with the gRPC receiver).
///
/// # Errors
///
/// As [`decode_otlp_metrics`].
pub fn metrics_to_samples(
    request: &ExportMetricsServiceRequest,
    options: &DecodeOptions,
) -> Result<Vec<Sample>, DecodeError> {
    let mut samples = Vec::new();
    for resource_metrics in &request.resource_metrics {
        let mut identity = None;
        for scope_metrics in &resource_metrics.scope_metrics {
            for m in &scope_metrics.metrics {
                let Some(data) = &m.data else { continue };
                if matches!(data, metric::Data::Summary(_)) {
                    continue;
                }
                let (service, version) = match &identity {
                    Some(id) => id,
                    None => identity.insert(resource_identity(
                        resource_metrics.resource.as_ref(),
                        options,
                    )?),
                };
                let name = MetricName::new(&m.name)?;
                let scale = if m.unit == "s" { 1000.0 } else { 1.0 };
                let sample = |ts_nanos: u64, attributes: &[KeyValue], observation| Sample {
                    ts: ts_nanos as f64 / NANOS_PER_SEC,
                    service: service.clone(),
                    version: version.clone(),
                    metric: name.clone(),
                    labels: labels_of(attributes),
                    observation,
                };
                let require_delta = |temporality: i32| {
                    if temporality == AggregationTemporality::Cumulative as i32 {
                        Err(DecodeError::CumulativeTemporality {
                            metric: m.name.clone(),
                        })
                    } else {
                        Ok(())
                    }
                };
                match data {
                    metric::Data::Histogram(h) => {
                        require_delta(h.aggregation_temporality)?;
                        for p in &h.data_points {
                            let pairs = explicit_buckets(&m.name, p, scale)?;
                            if !pairs.is_empty() {
                                samples.push(sample(
                                    p.time_unix_nano,
                                    &p.attributes,
                                    Observation::Histogram(pairs),
                                ));
                            }
                        }
                    }
                    metric::Data::ExponentialHistogram(h) => {
                        require_delta(h.aggregation_temporality)?;
                        for p in &h.data_points {
                            let pairs = exponential_buckets(&m.name, p, scale)?;
                            if !pairs.is_empty() {
                                samples.push(sample(
                                    p.time_unix_nano,
                                    &p.attributes,
                                    Observation::Histogram(pairs),
                                ));
                            }
                        }
                    }
                    metric::Data::Sum(s) => {
                        require_delta(s.aggregation_temporality)?;
                        for p in &s.data_points {
                            let value = number(p.value);
                            samples.push(sample(
                                p.time_unix_nano,
                                &p.attributes,
                                Observation::Value(value),
                            ));
                        }
                    }
                    metric::Data::Gauge(g) => {
                        for p in &g.data_points {
                            let value = number(p.value);
                            samples.push(sample(
                                p.time_unix_nano,
                                &p.attributes,
                                Observation::Value(value),
                            ));
                        }
                    }
                    metric::Data::Summary(_) => {}
                }
            }
        }
    }
    Ok(samples)
}

fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

/// `(upper bound, count)` per non-empty bucket; see the module docs.
fn explicit_buckets(
    metric: &str,
    p: &HistogramDataPoint,
    scale: f64,
) -> Result<Vec<(f64, u64)>, DecodeError> {
    let invalid = |problem| DecodeError::InvalidHistogram {
        metric: metric.to_owned(),
        problem,
    };
    let n_bounds = p.explicit_bounds.len();
    if p.bucket_counts.is_empty() {
        return Ok(Vec::new());
    }
    if p.bucket_counts.len() != n_bounds + 1 {
        return Err(invalid(
            "bucket_counts must have one more entry than explicit_bounds",
        ));
    }
    if p.explicit_bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("explicit_bounds must increase"));
    }
    if p.bucket_counts.iter().sum::<u64>() != p.count {
        return Err(invalid("bucket counts do not add up to count"));
    }
    let mut pairs = Vec::new();
    for (i, &n) in p.bucket_counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let upper = match p.explicit_bounds.get(i) {
            Some(&bound) => bound,
            None => {
                let last = p.explicit_bounds.last().copied().unwrap_or(0.0);
                p.max.filter(|&max| max > last).unwrap_or(last)
            }
        };
        pairs.push((upper * scale, n));
    }
    Ok(pairs)
}

/// `(upper bound, count)` per non-empty bucket; see the module docs.
fn exponential_buckets(
    metric: &str,
    p: &ExponentialHistogramDataPoint,
    scale: f64,
) -> Result<Vec<(f64, u64)>, DecodeError> {
    let invalid = |problem| DecodeError::InvalidHistogram {
        metric: metric.to_owned(),
        problem,
    };
    if p.negative
        .as_ref()
        .is_some_and(|b| b.bucket_counts.iter().any(|&n| n > 0))
    {
        return Err(invalid("negative buckets are not supported"));
    }
    if !(-10..=20).contains(&p.scale) {
        return Err(invalid("scale outside -10..=20"));
    }
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mut pairs = Vec::new();
    if p.zero_count > 0 {
        pairs.push((0.0, p.zero_count));
    }
    if let Some(positive) = &p.positive {
        for (k, &n) in positive.bucket_counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let index = i64::from(positive.offset) + k as i64;
            let upper = base.powf((index + 1) as f64);
            if !upper.is_finite() {
                return Err(invalid("bucket bound overflows"));
            }
            pairs.push((upper * scale, n));
        }
    }
    let total: u64 = pairs.iter().map(|&(_, n)| n).sum();
    if total != p.count {
        return Err(invalid("bucket counts do not add up to count"));
    }
    Ok(pairs)
}

/// The service and version of a resource.
fn resource_identity(
    resource: Option<&Resource>,
    options: &DecodeOptions,
) -> Result<(ServiceName, Version), DecodeError> {
    let attributes = resource
        .map(|r| r.attributes.as_slice())
        .unwrap_or_default();
    let service = attribute(attributes, "service.name")
        .and_then(string_value)
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::MissingService(
            "resource attribute `service.name`",
        ))?;
    let version = attribute(attributes, &options.version_attribute)
        .and_then(string_value)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DecodeError::MissingVersion(options.version_attribute.clone()))?;
    Ok((ServiceName::new(service)?, Version::new(version)?))
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn string_value(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_value(v: &AnyValue) -> Option<i64> {
    match &v.value {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        Some(any_value::Value::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
}

/// Scalar attributes as labels (strings as they are, numbers and booleans
/// as text), at most [`MAX_LABELS`].
fn labels_of(attributes: &[KeyValue]) -> Labels {
    Labels::from_pairs(attributes.iter().take(MAX_LABELS).filter_map(|kv| {
        let text = match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::DoubleValue(d) => d.to_string(),
            any_value::Value::BoolValue(b) => b.to_string(),
            _ => return None,
        };
        Some((kv.key.clone(), text))
    }))
}
