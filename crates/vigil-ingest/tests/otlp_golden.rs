//! OTLP payloads produced by the official OpenTelemetry Python SDK (see
//! scripts/gen_otlp_golden.py, which records the versions) decode to the
//! series and values the generator expects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vigil_core::{Observation, Sample};
use vigil_ingest::decode::{decode, DecodeOptions, Format};

const SPANS: &[u8] = include_bytes!("data/otlp_spans.bin");
const METRICS: &[u8] = include_bytes!("data/otlp_metrics.bin");
const EXPECTED: &str = include_str!("data/otlp_expected.json");

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Whether a decoded sample is the expected one (floats to 1e-9 relative:
/// Python and Rust compute bucket bounds with their own `pow`).
fn matches(sample: &Sample, expected: &Value) -> bool {
    let labels: Vec<(String, String)> = expected["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let sample_labels: Vec<(String, String)> = sample
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if sample.service.as_str() != expected["service"]
        || sample.version.as_str() != expected["version"]
        || sample.metric.as_str() != expected["metric"]
        || sample_labels != labels
        || !close(sample.ts, expected["ts"].as_f64().unwrap())
    {
        return false;
    }
    match &sample.observation {
        Observation::Value(v) => expected["value"].as_f64().is_some_and(|e| close(*v, e)),
        Observation::Outcome { error } => expected["error"].as_bool() == Some(*error),
        Observation::Histogram(pairs) => {
            let Some(want) = expected["histogram"].as_array() else {
                return false;
            };
            let mut got = pairs.clone();
            got.sort_by(|a, b| a.0.total_cmp(&b.0));
            got.len() == want.len()
                && got.iter().zip(want).all(|(&(v, n), w)| {
                    close(v, w[0].as_f64().unwrap()) && w[1].as_u64() == Some(n)
                })
        }
        Observation::Counts { .. } => false,
    }
}

fn check(format: Format, payload: &[u8], expected: &Value) {
    let decoded = decode(format, payload, &DecodeOptions::default()).unwrap();
    let expected = expected.as_array().unwrap();
    assert_eq!(
        decoded.samples.len(),
        expected.len(),
        "decoded {:#?}",
        decoded.samples
    );
    let mut unmatched: Vec<&Value> = expected.iter().collect();
    for sample in &decoded.samples {
        let i = unmatched
            .iter()
            .position(|e| matches(sample, e))
            .unwrap_or_else(|| panic!("unexpected sample {sample:#?}\nleft: {unmatched:#?}"));
        unmatched.swap_remove(i);
    }
    assert!(unmatched.is_empty());
}

#[test]
fn python_sdk_spans_decode_to_the_expected_requests() {
    let expected: Value = serde_json::from_str(EXPECTED).unwrap();
    check(Format::OtlpSpans, SPANS, &expected["spans"]);
}

#[test]
fn python_sdk_metrics_decode_to_the_expected_distributions() {
    let expected: Value = serde_json::from_str(EXPECTED).unwrap();
    check(Format::OtlpMetrics, METRICS, &expected["metrics"]);
}

#[test]
fn the_version_attribute_is_configurable() {
    let options = DecodeOptions {
        version_attribute: "k8s.pod.label.version".to_owned(),
    };
    let error = decode(Format::OtlpSpans, SPANS, &options).unwrap_err();
    assert_eq!(error.reason(), "missing_version");
}
