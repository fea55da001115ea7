//! End-to-end tests of `vigil simulate`: the real binary, and a replay of
//! a simulated stream reaching the same verdicts at the same times.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{json, vigil, Scratch};
use serde_json::Value;

/// A built-in scenario's TOML with some lines replaced.
fn builtin_toml(name: &str, replace: &[(&str, &str)]) -> String {
    let out = vigil(&["simulate", "--scenario", name, "--show"], None);
    assert!(out.status.success());
    let mut text = String::from_utf8(out.stdout).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from} not in {name}");
        text = text.replacen(from, to, 1);
    }
    text
}

/// Exports one replication as events, replays them, and checks that the
/// replay's timeline is the simulator's for that run.
fn simulate_then_replay(scratch: &Scratch, tag: &str, toml: &str, method: &str, run: u64) -> Value {
    let scenario = scratch.file(&format!("{tag}.toml"), toml.as_bytes());
    let events = scratch.0.join(format!("{tag}.jsonl"));
    let spec = scratch.0.join(format!("{tag}.json"));
    let run_text = run.to_string();
    let sim = json(
        &[
            "simulate",
            "--scenario-file",
            scenario.to_str().unwrap(),
            "--method",
            method,
            "--seed",
            "11",
            "--run",
            &run_text,
            "--export-events",
            events.to_str().unwrap(),
            "--export-spec",
            spec.to_str().unwrap(),
        ],
        None,
    );
    assert!(sim["events"].as_u64().unwrap() > 1000, "{sim}");
    let simulated = &sim["replication"]["methods"][0];
    assert_eq!(simulated["method"], method);
    let replay = json(
        &[
            "replay",
            "--spec",
            spec.to_str().unwrap(),
            "--input",
            events.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(replay["input"]["lines_rejected"], 0, "{}", replay["input"]);
    assert_eq!(
        replay["input"]["samples_rejected"], 0,
        "{}",
        replay["input"]
    );
    assert_eq!(replay["timeline"], simulated["timeline"], "{tag}");
    assert_eq!(replay["verdict"], simulated["verdict"], "{tag}");
    assert_eq!(replay["decided_at"], simulated["decided_at"], "{tag}");
    assert!(!replay["timeline"].as_array().unwrap().is_empty());
    simulated.clone()
}

#[test]
fn a_replay_of_a_simulated_stream_gives_the_simulators_timeline() {
    let scratch = Scratch::new("sim-replay");
    // The incident, judged per endpoint: rolled back after the change.
    let incident = builtin_toml(
        "payment-incident",
        &[("duration_s = 1800", "duration_s = 600")],
    );
    let r = simulate_then_replay(&scratch, "incident", &incident, "sequential", 3);
    assert_eq!(r["verdict"], "ROLLBACK");
    assert!(r["decision_s"].as_f64().unwrap() >= 0.0, "{r}");
    // Another method on another scenario.
    let slow = builtin_toml("latency-50", &[("duration_s = 1800", "duration_s = 300")]);
    simulate_then_replay(&scratch, "slow", &slow, "kayenta", 0);
    // A healthy canary over a whole (short) analysis, up to max_duration,
    // through a ramp and drift.
    let healthy = builtin_toml(
        "aa-ramp-drift",
        &[
            ("duration_s = 1800", "duration_s = 300"),
            ("max_duration = \"30m\"", "max_duration = \"5m\""),
            ("ramp_s = 900", "ramp_s = 200"),
        ],
    );
    let r = simulate_then_replay(&scratch, "healthy", &healthy, "fixed-horizon", 1);
    assert_ne!(r["verdict"], "CONTINUE", "{r}");
}

#[test]
fn json_output_has_the_issues_fields_per_method() {
    let toml = builtin_toml("latency-50", &[("duration_s = 1800", "duration_s = 200")]);
    let scratch = Scratch::new("sim-json");
    let file = scratch.file("s.toml", toml.as_bytes());
    let html = scratch.0.join("report.html");
    let all = json(
        &[
            "simulate",
            "--scenario-file",
            file.to_str().unwrap(),
            "--runs",
            "4",
            "--method",
            "all",
            "--html",
            html.to_str().unwrap(),
        ],
        None,
    );
    let all = all.as_array().unwrap();
    let methods: Vec<&str> = all.iter().map(|s| s["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["sequential", "fixed-horizon", "kayenta"]);
    for s in all {
        for key in [
            "scenario",
            "method",
            "runs",
            "rollback_rate",
            "promote_rate",
            "inconclusive_rate",
            "continue_rate",
            "median_decision_s",
            "p90_decision_s",
            "exposure_requests",
        ] {
            assert!(s.get(key).is_some(), "{key} missing in {s}");
        }
        assert_eq!(s["scenario"], "latency-50");
        assert_eq!(s["runs"], 4);
        let total: f64 = [
            "rollback_rate",
            "promote_rate",
            "inconclusive_rate",
            "continue_rate",
        ]
        .iter()
        .map(|k| s[k].as_f64().unwrap())
        .sum();
        assert!((total - 1.0).abs() < 1e-9, "{s}");
    }
    assert_eq!(all[0]["rollback_rate"], 1.0, "{}", all[0]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 4, "four plots");
    assert!(page.contains("fixed-horizon") && page.contains("ROLLBACK"));
    // One method: one object, not an array; the table names it.
    let one = json(
        &[
            "simulate",
            "--scenario-file",
            file.to_str().unwrap(),
            "--runs",
            "2",
        ],
        None,
    );
    assert_eq!(one["method"], "sequential");
    let out = vigil(
        &[
            "simulate",
            "--scenario-file",
            file.to_str().unwrap(),
            "--runs",
            "2",
        ],
        None,
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("sequential") && text.contains("ROLLBACK"),
        "{text}"
    );
}

#[test]
fn bad_scenarios_and_names_are_clear_errors() {
    let scratch = Scratch::new("sim-bad");
    let toml = builtin_toml("aa", &[("canary_fraction = 0.1", "canary_fraction = 2")]);
    let file = scratch.file("bad.toml", toml.as_bytes());
    let out = vigil(
        &["simulate", "--scenario-file", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("canary_fraction: must be in (0, 1), got 2"),
        "{err}"
    );
    let out = vigil(&["simulate", "--scenario", "nope"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no built-in scenario") && err.contains("payment-incident"),
        "{err}"
    );
    let out = vigil(&["simulate", "--list"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), vigil_sim::BUILTINS.len());
}
