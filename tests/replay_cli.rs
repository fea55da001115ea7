//! End-to-end tests of `vigil replay`: the real binary on recorded streams.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{json, vigil, Scratch, ROOT};

/// Stream time at which examples/incident.jsonl.gz starts; the canary's
/// /charge errors jump to 15% five minutes later.
const T0: f64 = 1_763_900_000.0;

#[test]
fn the_payment_incident_is_rolled_back_within_a_minute_of_the_change() {
    let r = json(
        &[
            "replay",
            "--spec",
            "examples/payment.yaml",
            "--input",
            "examples/incident.jsonl.gz",
        ],
        None,
    );
    assert_eq!(r["verdict"], "ROLLBACK", "{}", r["reason"]);
    let decided = r["decided_at"].as_f64().unwrap();
    let after_change = decided - (T0 + 300.0);
    assert!(
        (0.0..=60.0).contains(&after_change),
        "decided {after_change} s after the change"
    );
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("error rate of /charge") && reason.ends_with("roll back"),
        "{reason}"
    );
    assert_eq!(r["worst_dimension"], "endpoint=/charge");
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["verdict"], "ROLLBACK");
    assert!(r["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["status"] == "fail"));

    // The text form says the same.
    let out = vigil(
        &[
            "replay",
            "--spec",
            "examples/payment.yaml",
            "--input",
            "examples/incident.jsonl.gz",
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("verdict: ROLLBACK") && text.contains("timeline"),
        "{text}"
    );
}

#[test]
fn continue_replays_past_the_verdict_and_malformed_lines_are_counted() {
    let data = flate2::read::MultiGzDecoder::new(
        std::fs::File::open(format!("{ROOT}/examples/incident.jsonl.gz")).unwrap(),
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { data }, &mut text).unwrap();
    // Garbage among the first lines: never aborts the replay.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "{not json");
    lines.insert(
        10,
        r#"{"ts": 1763900001, "service": "payment", "version": "v8", "latency_ms": -5}"#,
    );
    lines.insert(
        20,
        r#"{"ts": "yesterday", "service": "payment", "version": "v8", "error": true}"#,
    );
    let input = lines.join("\n");
    let r = json(
        &[
            "replay",
            "--spec",
            "examples/payment.yaml",
            "--input",
            "-",
            "--continue",
        ],
        Some(input.as_bytes()),
    );
    assert_eq!(r["input"]["lines_rejected"], 3);
    let errors = r["input"]["first_errors"].as_array().unwrap();
    assert_eq!(errors[0]["line"], 4);
    assert!(
        errors[1]["error"].as_str().unwrap().contains("latency_ms"),
        "{errors:?}"
    );
    // With --continue the whole stream is read: 20 minutes.
    let end = r["input"]["stream_end"].as_f64().unwrap();
    assert!(end - T0 > 1190.0, "stopped at {}", end - T0);
    assert!(r["decided_at"].as_f64().is_some());
}

/// The incident with the canary's events written 5 s of stream time late,
/// as when two producers' logs are merged.
fn incident_with_late_canary() -> String {
    let data = flate2::read::MultiGzDecoder::new(
        std::fs::File::open(format!("{ROOT}/examples/incident.jsonl.gz")).unwrap(),
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { data }, &mut text).unwrap();
    let mut lines: Vec<(f64, &str)> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let late = if v["version"] == "v8" { 5.0 } else { 0.0 };
            (v["ts"].as_f64().unwrap() + late, line)
        })
        .collect();
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    lines.iter().map(|(_, l)| *l).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_slice_grace_waits_for_events_out_of_order() {
    let input = incident_with_late_canary();
    let replay = |grace: &str| {
        json(
            &[
                "replay",
                "--spec",
                "examples/payment.yaml",
                "--input",
                "-",
                "--slice-grace",
                grace,
            ],
            Some(input.as_bytes()),
        )
    };
    // Without a grace, the canary's last 5 s of each slice come after the
    // judge read it: counted, and missing from the verdicts.
    let r = replay("0");
    let late = r["input"]["samples_after_judged"].as_u64().unwrap();
    assert!(late > 1000, "{late} samples after their slice was judged");
    // A grace longer than the disorder: every sample is judged, and the
    // incident is rolled back within a minute of the change, as in order.
    let r = replay("6");
    assert_eq!(r["input"]["samples_after_judged"], 0);
    assert_eq!(r["verdict"], "ROLLBACK", "{}", r["reason"]);
    let after_change = r["decided_at"].as_f64().unwrap() - (T0 + 300.0);
    assert!(
        (0.0..=60.0).contains(&after_change),
        "decided {after_change} s after the change"
    );
    // A negative grace is refused.
    let out = vigil(
        &[
            "replay",
            "--spec",
            "examples/payment.yaml",
            "--input",
            "-",
            "--slice-grace=-1",
        ],
        Some(input.as_bytes()),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--slice-grace"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_healthy_canary_is_promoted() {
    let scratch = Scratch::new("healthy");
    // 400 requests/s for 6 minutes, the canary identical to the baseline.
    let mut s = String::new();
    let mut state: u64 = 42;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..(400 * 360) {
        let ts = T0 + i as f64 / 400.0;
        let version = if next() < 0.2 { "v8" } else { "v7" };
        let latency = 50.0 + 100.0 * next();
        let error = next() < 0.001;
        s.push_str(&format!(
            "{{\"ts\": {ts:.3}, \"service\": \"payment\", \"version\": \"{version}\", \"latency_ms\": {latency:.1}, \"error\": {error}}}\n"
        ));
    }
    let input = scratch.0.join("healthy.jsonl");
    std::fs::write(&input, s).unwrap();
    let spec = scratch.0.join("spec.json");
    std::fs::write(
        &spec,
        r#"{"service": "payment", "baseline_version": "v7", "canary_version": "v8",
            "metrics": [{"name": "latency", "kind": "latency", "tolerance": 0.1, "quantiles": [0.5, 0.9]},
                        {"name": "error_rate", "kind": "error_rate", "tolerance": 0.0, "tolerance_abs": 0.005}],
            "policy": {"max_duration": "5m"}}"#,
    )
    .unwrap();
    let r = json(
        &[
            "replay",
            "--spec",
            spec.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r["verdict"], "PROMOTE", "{}", r["reason"]);
    assert!(r["reason"].as_str().unwrap().ends_with("promote"));
}

#[test]
fn bad_spec_and_missing_input_are_clear_errors() {
    let scratch = Scratch::new("bad");
    let spec = scratch.0.join("bad.yaml");
    std::fs::write(&spec, "service: s\nbaseline_version: a\ncanary_version: b\nmetrics:\n  - {name: x, kind: latency, tolerance: -1}\n").unwrap();
    let out = vigil(
        &[
            "replay",
            "--spec",
            spec.to_str().unwrap(),
            "--input",
            "examples/incident.jsonl.gz",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics[0].tolerance"), "{err}");
    let out = vigil(
        &[
            "replay",
            "--spec",
            "examples/payment.yaml",
            "--input",
            "/nonexistent.jsonl",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.jsonl"));
}
