//! `vigil bench api` through the real binary, in a reduced mode (200
//! analyses, 0.2 s warm-up and 1 s measured per load, two rounds) that
//! takes seconds: the report's fields are there and consistent, the rounds
//! alternate which server goes first and the top-level figures are their
//! medians, and both servers got the same paced schedule with every call
//! accounted for. No timing
//! thresholds: the figures themselves belong in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn bench(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "api"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn api_reports_both_loads_of_both_servers() {
    let (ok, stdout, stderr) = bench(&[
        "--analyses",
        "200",
        "--warmup-secs",
        "0.2",
        "--measure-secs",
        "1",
        "--rounds",
        "2",
        "--json",
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["analyses"], 200);
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{r}");
    assert_eq!(rounds[0]["vigil_first"], false);
    assert_eq!(rounds[1]["vigil_first"], true);
    for round in rounds {
        let (vigil, baseline) = (f(round, "vigil_qps"), f(round, "baseline_qps"));
        assert!(vigil > 0.0 && baseline > 0.0, "{round}");
        assert!(
            (f(round, "ratio") - vigil / baseline).abs() < 0.001,
            "{round}"
        );
    }
    // Medians of two: the mean of the rounds.
    let mean = |key: &str| (f(&rounds[0], key) + f(&rounds[1], key)) / 2.0;
    assert!((f(&r, "ratio") - mean("ratio")).abs() < 1e-9, "{r}");
    assert!(
        (f(&r, "p99_ms") - mean("paced_vigil_p99_ms")).abs() < 1e-9,
        "{r}"
    );
    assert!((f(&r, "vigil_qps") - mean("vigil_qps")).abs() <= 0.5, "{r}");
    assert!(f(&r, "ratio_min") <= f(&r, "ratio") && f(&r, "ratio") <= f(&r, "ratio_max"));
    assert!(f(&r, "p99_ms") <= f(&r, "p99_ms_max"), "{r}");
    // The offered rate follows its rule, set by the first round's
    // saturated loads, the same for both servers in every round, and
    // every call of that schedule was measured on both. One read per
    // analysis per second, unless half the slower server's saturated rate
    // is lower.
    let (vigil, baseline) = (f(&rounds[0], "vigil_qps"), f(&rounds[0], "baseline_qps"));
    let cap = (baseline.min(vigil) * 0.5).round();
    assert_eq!(f(&r, "offered_qps"), cap.min(200.0), "{r}");
    let rule = r["offered_rule"].as_str().unwrap();
    let expected_rule = if cap < 200.0 {
        "slower server"
    } else {
        "per live analysis"
    };
    assert!(rule.contains(expected_rule), "{rule}");
    let calls = f(&r, "paced_vigil_calls");
    assert_eq!(calls, f(&r, "paced_baseline_calls"), "{r}");
    let expected = (1.2 * f(&r, "offered_qps")).ceil() - (0.2 * f(&r, "offered_qps")).ceil();
    assert!(
        (calls - expected).abs() <= 1.0,
        "{calls} calls, {expected} due: {r}"
    );
    assert_eq!(f(&r, "p99_ms"), f(&r, "paced_vigil_p99_ms"));
    for (p50, p99) in [
        ("paced_vigil_p50_ms", "paced_vigil_p99_ms"),
        ("paced_baseline_p50_ms", "paced_baseline_p99_ms"),
        ("saturated_vigil_p50_ms", "saturated_vigil_p99_ms"),
        ("saturated_baseline_p50_ms", "saturated_baseline_p99_ms"),
    ] {
        assert!(f(&r, p50) > 0.0 && f(&r, p50) <= f(&r, p99), "{p50}: {r}");
    }
    // A call's latency includes how late the pacer sent it.
    for round in rounds {
        let p99 = f(round, "paced_baseline_p99_ms").max(f(round, "paced_vigil_p99_ms"));
        assert!(f(round, "pacer_late_p99_ms") <= p99, "{round}");
    }
    // CPU per call of each server's threads and of the load generator's
    // (Linux: read from /proc/self/task).
    for key in [
        "paced_vigil_server_cpu_us",
        "paced_baseline_server_cpu_us",
        "paced_vigil_client_cpu_us",
        "paced_baseline_client_cpu_us",
    ] {
        assert!(f(&r, key) > 0.0, "{key}: {r}");
    }
    assert!(f(&r, "verdict_bytes") > 100.0, "{r}");
    assert!(f(&r, "read_us") > 0.0, "{r}");
    assert_eq!(f(&r, "seconds"), 1.0);
}

#[test]
fn api_refuses_a_bad_rate_or_window() {
    for args in [
        &["--rate=-5"][..],
        &["--rate", "0"][..],
        &["--measure-secs", "0"][..],
        &["--warmup-secs", "nan"][..],
    ] {
        let (ok, stdout, stderr) = bench(args);
        assert!(!ok, "{args:?} succeeded:\n{stdout}");
        assert!(
            stderr.contains("rate") || stderr.contains("secs"),
            "{args:?}: {stderr}"
        );
    }
}
