//! The simulator: scenario validation, determinism, both feeds agreeing,
//! and every built-in scenario running.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_core::store::Store;
use vigil_core::{Method, Verdict};
use vigil_sim::run::store_config;
use vigil_sim::{
    builtin, replicate, simulate, summarize, Feed, Generator, Names, Plan, Scenario, BUILTINS,
};

fn scenario(name: &str) -> Scenario {
    builtin(name).unwrap().scenario().unwrap()
}

/// A shorter copy, so debug-mode tests stay in seconds.
fn short(name: &str, duration_s: f64) -> Scenario {
    let mut s = scenario(name);
    s.duration_s = duration_s;
    s
}

const ISSUE_EXAMPLE: &str = r#"
name = "latency +15% on a 10% canary"
duration_s = 1800          # stream time the analysis runs
rps = 100.0                # total requests per second, both arms
canary_fraction = 0.1
[ramp]
start_fraction = 0.15
ramp_s = 900
[drift]
amplitude = 0.35
period_s = 700
[baseline]
latency_median_ms = 150.0  # lognormal latency
latency_sigma = 0.6
error_rate = 0.001
[canary]
change_at_s = 0
latency_multiplier = 1.15
tail_fraction = 0.0
tail_multiplier = 1.0
error_rate = 0.001
[analysis.policy]
method = "sequential"
alpha = 0.01
max_duration = "30m"
[[analysis.metrics]]
name = "latency"
kind = "latency"
direction = "increase"
tolerance = 0.05
quantiles = [0.5, 0.99]
critical = true
"#;

#[test]
fn the_issue_example_parses_with_names_filled_in() {
    let s = Scenario::parse(ISSUE_EXAMPLE).unwrap();
    assert_eq!(s.name, "latency +15% on a 10% canary");
    assert_eq!(s.analysis.service.as_str(), "sim");
    assert_eq!(
        s.analysis.baseline_version.as_ref().unwrap().as_str(),
        "baseline"
    );
    assert_eq!(s.analysis.canary_version.as_str(), "canary");
    assert_eq!(s.analysis.policy.max_duration.as_secs(), 1800);
    assert_eq!(s.canary.latency_multiplier, 1.15);
    assert_eq!(s.ramp.as_ref().unwrap().ramp_s, 900.0);
}

#[test]
fn invalid_scenarios_are_rejected_naming_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "canary_fraction = 0.1",
            "canary_fraction = 1.5",
            "canary_fraction",
        ),
        ("rps = 100.0", "rps = -1.0", "rps"),
        ("duration_s = 1800", "duration_s = 0", "duration_s"),
        (
            "latency_sigma = 0.6",
            "latency_sigma = -0.6",
            "baseline.latency_sigma",
        ),
        (
            "tail_fraction = 0.0",
            "tail_fraction = 1.5",
            "canary.tail_fraction",
        ),
        (
            "change_at_s = 0",
            "change_at_s = 1800",
            "canary.change_at_s",
        ),
        ("amplitude = 0.35", "amplitude = 1.0", "drift.amplitude"),
        (
            "start_fraction = 0.15",
            "start_fraction = 0",
            "ramp.start_fraction",
        ),
        ("alpha = 0.01", "alpha = 0.7", "analysis.policy.alpha"),
        (
            "tolerance = 0.05",
            "tolerance = -0.05",
            "analysis.metrics[0].tolerance",
        ),
        (
            "name = \"latency\"\nkind",
            "name = \"cpu\"\nkind",
            "analysis.metrics[0].name",
        ),
        (
            "kind = \"latency\"",
            "kind = \"gauge\"",
            "analysis.metrics[0].kind",
        ),
    ];
    for (from, to, field) in cases {
        let text = ISSUE_EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, ISSUE_EXAMPLE, "{from} not found");
        let err = Scenario::parse(&text).unwrap_err();
        assert_eq!(&err.field, field, "{to}: {err}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
    // Unknown keys and syntax errors are reported, not ignored.
    let err = Scenario::parse(&ISSUE_EXAMPLE.replace("rps =", "rsp =")).unwrap_err();
    assert!(err.to_string().contains("rsp"), "{err}");
    let err = Scenario::parse("name = ").unwrap_err();
    assert!(!err.to_string().is_empty());
    let err =
        Scenario::parse(&format!("{ISSUE_EXAMPLE}\n[[endpoints]]\nname = \"\"\n")).unwrap_err();
    assert_eq!(err.field, "endpoints[0].name");
    let err = Scenario::parse(&ISSUE_EXAMPLE.replace(
        "[analysis.policy]",
        "[analysis]\ndimensions = [\"region\"]\n[analysis.policy]",
    ))
    .unwrap_err();
    assert_eq!(err.field, "analysis.dimensions[0]");
}

#[test]
fn every_builtin_parses_and_the_issue_list_is_covered() {
    for b in BUILTINS {
        let s = b.scenario().unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!(s.name, b.name);
        assert!(!s.description.is_empty(), "{}", b.name);
    }
    for name in [
        "aa",
        "aa-ramp-drift",
        "aa-ties",
        "aa-low-traffic",
        "latency-5",
        "latency-10",
        "latency-50",
        "tail",
        "errors-0.5",
        "payment-incident",
        "bimodal-shift",
        "better-canary",
    ] {
        assert!(builtin(name).is_some(), "{name} missing");
    }
}

#[test]
fn the_generator_is_deterministic_and_seeds_differ() {
    let s = scenario("aa-endpoints");
    let draws = |seed, run| {
        let mut g = Generator::new(&s, seed, run, 10);
        std::iter::from_fn(|| g.next_slice())
            .take(20)
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(7, 3), draws(7, 3));
    assert_ne!(draws(7, 3), draws(7, 4));
    assert_ne!(draws(7, 3), draws(8, 3));
}

#[test]
fn traffic_latency_and_errors_follow_the_scenario() {
    // 1.5x latency from t = 100 s on, 20% errors: compare the canary's
    // before and after with the baseline's.
    let text = ISSUE_EXAMPLE
        .replace("latency_multiplier = 1.15", "latency_multiplier = 1.5")
        .replace("change_at_s = 0", "change_at_s = 105")
        .replace(
            "error_rate = 0.001\n[analysis",
            "error_rate = 0.2\n[analysis",
        )
        .replace("[ramp]\nstart_fraction = 0.15\nramp_s = 900\n", "")
        .replace("amplitude = 0.35", "amplitude = 0.0");
    let s = Scenario::parse(&text).unwrap();
    let mut g = Generator::new(&s, 1, 0, 10);
    let (mut requests, mut errors, mut before, mut after) = (0u64, 0u64, Vec::new(), Vec::new());
    let mut base = Vec::new();
    while let Some(d) = g.next_slice() {
        for p in &d.parts {
            requests += p.requests;
            let values = p
                .latencies
                .iter()
                .flat_map(|&(u, c)| std::iter::repeat_n(g.latency_ms(u), c as usize));
            match (p.arm, p.changed) {
                (vigil_sim::Arm::Baseline, _) => base.extend(values),
                (vigil_sim::Arm::Canary, false) => before.extend(values),
                (vigil_sim::Arm::Canary, true) => {
                    errors += p.errors;
                    after.extend(values);
                    assert!(p.from_s >= 105.0);
                }
            }
        }
    }
    // 100 rps for 1800 s, Poisson: within 1% (6 sd is 0.3%).
    assert!((requests as f64 - 180_000.0).abs() < 1_800.0, "{requests}");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mb, mbefore, mafter) = (median(&mut base), median(&mut before), median(&mut after));
    assert!((mb / 150.0 - 1.0).abs() < 0.02, "baseline median {mb}");
    assert!(
        (mbefore / 150.0 - 1.0).abs() < 0.15,
        "canary before {mbefore}"
    );
    assert!((mafter / 225.0 - 1.0).abs() < 0.03, "canary after {mafter}");
    let rate = errors as f64 / after.len() as f64;
    assert!((rate - 0.2).abs() < 0.02, "canary error rate {rate}");
}

#[test]
fn both_feeds_leave_the_same_store_and_the_same_verdicts() {
    for name in ["payment-incident", "aa-ties"] {
        let s = short(name, 400.0);
        let names = Names::new(&s).unwrap();
        let aggregated = Store::new(store_config(&s.analysis));
        let events = Store::new(store_config(&s.analysis));
        let mut g = Generator::new(&s, 5, 2, 10);
        let mut rng = vigil_sim::generate::event_rng(5, 2);
        while let Some(d) = g.next_slice() {
            for sample in g.aggregated_samples(&d, &names) {
                aggregated.record(&sample).unwrap();
            }
            for e in g.expand_events(&d, &mut rng) {
                for sample in e.samples(&names) {
                    events.record(&sample).unwrap();
                }
            }
        }
        assert!(aggregated.same_data(&events), "{name}");
        let methods = [Method::Sequential, Method::FixedHorizon];
        let a = replicate(&s, 5, 2, &methods, Feed::Aggregated).unwrap();
        let e = replicate(&s, 5, 2, &methods, Feed::Events).unwrap();
        assert_eq!(a, e, "{name}");
    }
}

#[test]
fn a_simulation_is_deterministic_whatever_the_thread_count() {
    let s = short("latency-50", 300.0);
    let plan = |threads| Plan {
        runs: 6,
        seed: 42,
        methods: vec![Method::Sequential, Method::Kayenta],
        threads: Some(threads),
    };
    let one = simulate(&s, &plan(1)).unwrap();
    let two = simulate(&s, &plan(2)).unwrap();
    let again = simulate(&s, &plan(2)).unwrap();
    assert_eq!(one, two);
    assert_eq!(two, again);
    assert_eq!(summarize(&s, 42, &one, 0), summarize(&s, 42, &two, 0));
    // Another seed, other streams.
    let other = simulate(
        &s,
        &Plan {
            seed: 43,
            ..plan(2)
        },
    )
    .unwrap();
    assert_ne!(one, other);
}

#[test]
fn every_builtin_runs_and_the_clear_cases_come_out_right() {
    for b in BUILTINS {
        let s = short(b.name, 600.0);
        let plan = Plan {
            runs: 2,
            seed: 1,
            methods: vec![Method::Sequential, Method::FixedHorizon, Method::Kayenta],
            threads: None,
        };
        let reps = simulate(&s, &plan).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!(reps.len(), 2);
        for (i, _) in plan.methods.iter().enumerate() {
            let sum = summarize(&s, 1, &reps, i);
            assert_eq!(sum.runs, 2);
            let total =
                sum.rollback_rate + sum.promote_rate + sum.inconclusive_rate + sum.continue_rate;
            assert!((total - 1.0).abs() < 1e-9, "{}: {sum:?}", b.name);
        }
        let seq: Vec<_> = reps.iter().map(|r| &r.methods[0]).collect();
        match b.name {
            // Decided in every run, by the sequential method, within the
            // first minutes of the change.
            "payment-incident" | "latency-50" => {
                for r in &seq {
                    assert_eq!(r.verdict, Verdict::Rollback, "{}: {}", b.name, r.reason);
                    assert!(r.exposure_requests.unwrap() > 0);
                    assert!(r.decision_s.unwrap() <= 300.0, "{}: {r:?}", b.name);
                }
            }
            name if b.healthy => {
                for r in &seq {
                    assert_ne!(r.verdict, Verdict::Rollback, "{name}: {}", r.reason);
                }
            }
            _ => {}
        }
    }
}
