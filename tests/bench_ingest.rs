//! `vigil bench ingest` through the real binary on a small topic (200
//! messages, 2 partitions, 3 rounds): every round read the whole topic with
//! both consumers, the rounds alternate which goes first, and the reported
//! figures are the rounds' medians. No timing thresholds: the figures
//! themselves belong in docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

/// `vigil bench ingest ARGS --json`, which must succeed; its report.
fn bench_ingest(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "ingest"])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn ingest_reports_median_of_alternating_rounds() {
    let r = bench_ingest(&["--messages", "200", "--partitions", "2", "--rounds", "3"]);
    assert_eq!(r["samples"], 20_000, "{r}");
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{r}");
    let firsts: Vec<bool> = rounds
        .iter()
        .map(|x| x["raw_first"].as_bool().unwrap())
        .collect();
    assert_eq!(firsts, [true, false, true]);
    let mut ratios: Vec<f64> = rounds.iter().map(|x| f(x, "ratio")).collect();
    for x in rounds {
        // Each round's rate is its samples over its own time, and its ratio
        // the quotient of its rates.
        let (raw, vigil) = (
            f(x, "raw_consumer_samples_per_s"),
            f(x, "vigil_samples_per_s"),
        );
        assert!(raw > 0.0 && vigil > 0.0, "{x}");
        assert!(
            (f(x, "vigil_seconds") * vigil - 20_000.0).abs() < 1.0,
            "{x}"
        );
        assert!(
            (f(x, "ratio") - vigil / raw).abs() < 1e-6 * f(x, "ratio"),
            "{x}"
        );
        // Minor page faults per pass, read on Linux (a count, zero when a
        // pass this small is over before its timer starts).
        assert!(x["raw_minor_faults"].as_u64().is_some(), "{x}");
        assert!(x["vigil_minor_faults"].as_u64().is_some(), "{x}");
    }
    ratios.sort_by(f64::total_cmp);
    assert_eq!(f(&r, "ratio"), ratios[1], "{r}");
    assert_eq!(f(&r, "ratio_min"), ratios[0], "{r}");
    assert_eq!(f(&r, "ratio_max"), ratios[2], "{r}");
}

/// One round over 100 messages on 3 partitions, with `args` besides:
/// every sample was read, in the time its rate says. Its report.
fn one_small_round(args: &[&str]) -> Value {
    let common = ["--messages", "100", "--partitions", "3", "--rounds", "1"];
    let r = bench_ingest(&[&common[..], args].concat());
    assert_eq!(r["samples"], 10_000, "{r}");
    let round = &r["rounds"][0];
    assert!((f(round, "vigil_seconds") * f(round, "vigil_samples_per_s") - 10_000.0).abs() < 1.0);
    r
}

#[test]
fn ingest_keyed_by_service_reads_every_sample() {
    let r = one_small_round(&["--key", "service"]);
    assert_eq!(r["key"], "service", "{r}");
    assert_eq!(r["services"], 2, "{r}");
    // Many services, so that the keys reach every partition.
    let r = one_small_round(&["--key", "service", "--services", "12"]);
    assert_eq!(r["services"], 12, "{r}");
}

#[test]
fn ingest_with_one_worker_reads_every_sample() {
    let r = one_small_round(&["--workers", "1"]);
    assert_eq!(r["workers"], 1, "{r}");
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "ingest", "--workers", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--workers must be at least 1"),
        "{output:?}"
    );
}

/// In stream order, more messages than the store's window holds are
/// refused up front, with the largest count that fits; `--help` gives the
/// same count (written out there, so it must follow the store's default
/// window).
#[test]
fn ingest_refuses_a_stream_longer_than_the_window() {
    let help = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "ingest", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("35,800 for the default 30 minutes"), "{help}");
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "ingest", "--messages", "60000"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--messages 60000 span 3000 s")
            && stderr.contains("at most 35800 messages"),
        "{stderr}"
    );
}
