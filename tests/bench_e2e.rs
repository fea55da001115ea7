//! `vigil bench e2e` through the real binary, in a reduced mode (1-second
//! slices, 1,000 rps, two runs) that takes seconds: the report's fields
//! are there and consistent. No timing thresholds: the figures themselves
//! belong in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

/// Median, p90 and max of a summary, in order.
fn summary(report: &Value, key: &str) -> [f64; 3] {
    let s = &report[key];
    let out = [f(s, "median"), f(s, "p90"), f(s, "max")];
    assert!(
        out[0] <= out[1] && out[1] <= out[2],
        "{key} is not ordered: {s}"
    );
    out
}

#[test]
fn e2e_reports_every_run_rolled_back_with_its_breakdown() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "bench",
            "e2e",
            "--runs",
            "2",
            "--slice-secs",
            "1",
            "--tick-ms",
            "100",
            "--slice-grace-ms",
            "300",
            "--warmup-secs",
            "2",
            "--rate",
            "1000",
            "--timeout-secs",
            "60",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["scenario"], "payment-incident");
    assert_eq!(report["format"], "vigil.samples");
    assert_eq!(report["runs"], 2);
    assert_eq!(report["slice_secs"], 1);
    assert_eq!(report["tick_ms"], 100);
    assert_eq!(report["slice_grace_ms"], 300);
    assert_eq!(f(&report, "rps"), 1000.0);

    let runs = report["per_run"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    let mut phases: Vec<f64> = runs.iter().map(|r| f(r, "change_phase")).collect();
    phases.sort_by(f64::total_cmp);
    assert_eq!(phases, [0.25, 0.75], "the changes spread over the slice");
    assert_ne!(runs[0]["service"], runs[1]["service"]);
    for run in runs {
        let (e2e, wait, after) = (
            f(run, "e2e_ms"),
            f(run, "slice_wait_ms"),
            f(run, "after_slice_ms"),
        );
        // The verdict is read after its slice ended, and e2e is the sum
        // of its two parts.
        assert!(e2e > 0.0 && after > 0.0, "{run}");
        assert!(f(run, "watch_e2e_ms") > 0.0, "{run}");
        assert!((wait + after - e2e).abs() < 1e-6 * e2e.max(1.0), "{run}");
        assert!(run["slices"].as_u64().unwrap() >= 1, "{run}");
        assert!(run["bad_canary_requests"].as_u64().unwrap() > 0, "{run}");
    }
    let e2e = summary(&report, "e2e_ms");
    let max_run = runs.iter().map(|r| f(r, "e2e_ms")).fold(f64::MIN, f64::max);
    assert_eq!(e2e[2], max_run);
    summary(&report, "slice_wait_ms");
    summary(&report, "after_slice_ms");
    summary(&report, "watch_e2e_ms");
    // The raw consumer saw the run's messages.
    assert!(report["kafka_messages"].as_u64().unwrap() > 0, "{report}");
    assert!(summary(&report, "kafka_round_trip_ms")[0] > 0.0, "{report}");
}

#[test]
fn e2e_names_an_unknown_scenario() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "e2e", "--scenario", "no-such-scenario", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no-such-scenario"), "{stderr}");
}

/// A healthy canary is never rolled back, so the bench gives up on the run
/// at its timeout and says so, instead of waiting or reporting a figure.
#[test]
fn e2e_fails_clearly_when_no_rollback_comes() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "bench",
            "e2e",
            "--scenario",
            "aa",
            "--runs",
            "1",
            "--slice-secs",
            "1",
            "--tick-ms",
            "100",
            "--slice-grace-ms",
            "300",
            "--warmup-secs",
            "1",
            "--timeout-secs",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "no report without a ROLLBACK");
    assert!(
        stderr.contains("no ROLLBACK within 3 s") || stderr.contains("instead of ROLLBACK"),
        "{stderr}"
    );
}
