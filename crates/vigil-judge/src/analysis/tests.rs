//! Scenario tests: seeded synthetic streams through the real store and
//! judge, ticking every 10 s of stream time.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{
    AnalysisSpec, Labels, MetricName, MetricStatus, Observation, Sample, ServiceName, SpecFormat,
    Verdict, VerdictReport, Version,
};

use vigil_stats::sequential::EProcess;

use super::Analysis;

const T0: f64 = 1_763_900_000.0;

/// A traffic scenario: what each request of each arm looks like over time.
struct Scenario {
    rps: f64,
    canary_fraction: fn(f64) -> f64,
    /// Latency multiplier hitting both arms at time t (seconds since start).
    drift: fn(f64) -> f64,
    /// (latency multiplier, error rate) of a canary request at time t on
    /// an endpoint, given a uniform draw for tail effects.
    canary: fn(f64, &str, f64) -> (f64, f64),
    baseline_error: f64,
    seconds: f64,
}

fn spec(yaml_metrics: &str, extra: &str) -> AnalysisSpec {
    let text = format!(
        "service: payment\nbaseline_version: v7\ncanary_version: v8\nmetrics:\n{yaml_metrics}{extra}"
    );
    AnalysisSpec::parse(&text, SpecFormat::Yaml).unwrap()
}

const LATENCY_AND_ERRORS: &str = "  - {name: latency, kind: latency, tolerance: 0.1, quantiles: [0.5, 0.99]}\n  - {name: error_rate, kind: error_rate, tolerance: 0.0, tolerance_abs: 0.002}\n";

/// Runs the scenario, ticking every 10 s; returns the report at the first
/// terminal verdict (or the last one) and the stream seconds it took.
fn run(scenario: &Scenario, spec: AnalysisSpec, seed: u64) -> (VerdictReport, f64) {
    let store = Store::new(StoreConfig::default());
    let mut analysis = Analysis::new("a1", spec, T0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let latency = LogNormal::new(80f64.ln(), 0.5).unwrap();
    let service = ServiceName::new("payment").unwrap();
    let (v7, v8) = (Version::new("v7").unwrap(), Version::new("v8").unwrap());
    let (lat, err) = (
        MetricName::new("latency").unwrap(),
        MetricName::new("error_rate").unwrap(),
    );
    let endpoints = [
        Labels::from_pairs([("endpoint", "/charge")]),
        Labels::from_pairs([("endpoint", "/refund")]),
    ];
    let mut t = 0.0;
    let mut next_tick = 10.0;
    let mut last = None;
    while t < scenario.seconds {
        t += 1.0 / scenario.rps;
        let ep = usize::from(rng.random::<f64>() >= 0.6);
        let is_canary = rng.random::<f64>() < (scenario.canary_fraction)(t);
        let (mult, error_rate) = if is_canary {
            let endpoint = endpoints[ep].get("endpoint").unwrap_or("");
            (scenario.canary)(t, endpoint, rng.random())
        } else {
            (1.0, scenario.baseline_error)
        };
        let ms = (latency.sample(&mut rng) * mult * (scenario.drift)(t) * 10.0).round() / 10.0;
        let error = rng.random::<f64>() < error_rate;
        let version = if is_canary { v8.clone() } else { v7.clone() };
        let base = Sample {
            ts: T0 + t,
            service: service.clone(),
            version,
            metric: lat.clone(),
            labels: endpoints[ep].clone(),
            observation: Observation::Value(ms),
        };
        store.record(&base).unwrap();
        store
            .record(&Sample {
                metric: err.clone(),
                observation: Observation::Outcome { error },
                ..base
            })
            .unwrap();
        if t >= next_tick {
            let report = VerdictReport::clone(analysis.tick(&store, T0 + t));
            // Ticked again with no new slice, the analysis answers from
            // what it kept (results copied from the latest report, tracks
            // added by dimensions included): the same report.
            if !report.verdict.is_terminal() {
                assert_eq!(*analysis.tick(&store, T0 + t).as_ref(), report, "at {t}");
            }
            next_tick += 10.0;
            if report.verdict.is_terminal() {
                return (report, t);
            }
            last = Some(report);
        }
    }
    (
        last.unwrap_or_else(|| VerdictReport::clone(analysis.tick(&store, T0 + t))),
        t,
    )
}

fn healthy(_: f64, _: &str, _: f64) -> (f64, f64) {
    (1.0, 0.001)
}

/// The payment incident, `seconds` long: canary errors 0.1% -> 15% on
/// every endpoint from t = 300 s, at 100 rps with a 10% canary.
fn payment_incident(seconds: f64) -> Scenario {
    Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.1,
        drift: |_| 1.0,
        canary: |t, _, _| {
            if t >= 300.0 {
                (1.0, 0.15)
            } else {
                (1.0, 0.001)
            }
        },
        baseline_error: 0.001,
        seconds,
    }
}

#[test]
fn payment_incident_is_rolled_back_within_a_minute() {
    let scenario = payment_incident(1800.0);
    let spec = spec(
        LATENCY_AND_ERRORS,
        "policy: {alpha: 0.01, max_duration: 30m}\ndimensions: [endpoint]\n",
    );
    let (report, t) = run(&scenario, spec, 7);
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    assert!(
        t - 300.0 <= 60.0,
        "rolled back {:.0} s after the change: {}",
        t - 300.0,
        report.reason
    );
    assert!(report.reason.starts_with("error rate"), "{}", report.reason);
    assert!(
        report.reason.contains("0.2-point tolerance") && report.reason.ends_with("roll back"),
        "{}",
        report.reason
    );
    assert!(report
        .metrics
        .iter()
        .any(|m| m.status == MetricStatus::Fail && m.name == "error_rate"));
}

#[test]
fn latency_plus_thirty_percent_is_rolled_back() {
    let scenario = Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.1,
        drift: |_| 1.0,
        canary: |_, _, _| (1.3, 0.001),
        baseline_error: 0.001,
        seconds: 1800.0,
    };
    let (report, t) = run(&scenario, spec(LATENCY_AND_ERRORS, ""), 11);
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    assert!(
        report.reason.contains("latency") && report.reason.contains("higher in v8"),
        "{}",
        report.reason
    );
    assert!(t <= 300.0, "took {t:.0} s: {}", report.reason);
}

#[test]
fn tail_only_regression_is_caught_at_p99() {
    // The slowest 2% of canary requests are 4x slower; the median is not.
    let scenario = Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.1,
        drift: |_| 1.0,
        canary: |_, _, u| if u < 0.02 { (4.0, 0.001) } else { (1.0, 0.001) },
        baseline_error: 0.001,
        seconds: 1800.0,
    };
    let (report, _) = run(&scenario, spec(LATENCY_AND_ERRORS, ""), 13);
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    assert!(
        report.reason.starts_with("p99 latency"),
        "{}",
        report.reason
    );
}

#[test]
fn healthy_canary_under_ramp_and_drift_is_promoted_not_rolled_back() {
    for seed in 0..4 {
        let scenario = Scenario {
            rps: 100.0,
            canary_fraction: |t| (0.05 + 0.45 * t / 900.0).min(0.5),
            drift: |t| 1.0 + 0.35 * (2.0 * std::f64::consts::PI * t / 700.0).sin(),
            canary: healthy,
            baseline_error: 0.001,
            seconds: 1800.0,
        };
        let (report, _) = run(
            &scenario,
            spec(LATENCY_AND_ERRORS, "policy: {max_duration: 30m}\n"),
            100 + seed,
        );
        assert_eq!(
            report.verdict,
            Verdict::Promote,
            "seed {seed}: {}",
            report.reason
        );
        assert!(report.reason.ends_with("promote"));
    }
}

#[test]
fn worst_endpoint_is_named() {
    let scenario = Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.2,
        drift: |_| 1.0,
        canary: |_, endpoint, _| {
            if endpoint == "/charge" {
                (1.0, 0.2)
            } else {
                (1.0, 0.001)
            }
        },
        baseline_error: 0.001,
        seconds: 600.0,
    };
    let (report, _) = run(
        &scenario,
        spec(LATENCY_AND_ERRORS, "dimensions: [endpoint]\n"),
        3,
    );
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    assert_eq!(
        report.worst_dimension.as_deref(),
        Some("endpoint=/charge"),
        "{}",
        report.reason
    );
    assert!(report.reason.contains("of /charge"), "{}", report.reason);
}

#[test]
fn too_little_traffic_ends_inconclusive() {
    let scenario = Scenario {
        rps: 0.5,
        canary_fraction: |_| 0.05,
        drift: |_| 1.0,
        canary: healthy,
        baseline_error: 0.001,
        seconds: 700.0,
    };
    let (report, _) = run(
        &scenario,
        spec(
            LATENCY_AND_ERRORS,
            "policy: {max_duration: 10m, min_samples: 50}\n",
        ),
        5,
    );
    assert_eq!(report.verdict, Verdict::Inconclusive, "{}", report.reason);
    assert!(report.reason.contains("samples"), "{}", report.reason);
}

#[test]
fn slo_mode_judges_against_absolute_targets() {
    let slow = Scenario {
        rps: 50.0,
        canary_fraction: |_| 1.0,
        drift: |_| 1.0,
        canary: |_, _, _| (3.0, 0.001),
        baseline_error: 0.001,
        seconds: 1200.0,
    };
    let text = "service: payment\ncanary_version: v8\nmetrics:\n  - {name: latency, kind: latency, slo: {quantile: 0.99, max: 300}}\n";
    let (report, _) = run(
        &slow,
        AnalysisSpec::parse(text, SpecFormat::Yaml).unwrap(),
        9,
    );
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    assert!(
        report.reason.contains("over the SLO of 300 ms"),
        "{}",
        report.reason
    );
    let fine = Scenario {
        canary: healthy,
        ..slow
    };
    let (report, _) = run(
        &fine,
        AnalysisSpec::parse(text, SpecFormat::Yaml).unwrap(),
        9,
    );
    assert_eq!(report.verdict, Verdict::Promote, "{}", report.reason);
}

#[test]
fn fixed_horizon_is_available_and_rolls_back_a_clear_regression() {
    let scenario = Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.1,
        drift: |_| 1.0,
        canary: |_, _, _| (1.5, 0.001),
        baseline_error: 0.001,
        seconds: 600.0,
    };
    let (report, _) = run(
        &scenario,
        spec(LATENCY_AND_ERRORS, "policy: {method: fixed-horizon}\n"),
        21,
    );
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
}

#[test]
fn kayenta_method_fails_a_clear_regression_and_passes_a_healthy_canary() {
    let bad = Scenario {
        rps: 100.0,
        canary_fraction: |_| 0.2,
        drift: |_| 1.0,
        canary: |_, _, _| (1.6, 0.001),
        baseline_error: 0.001,
        seconds: 900.0,
    };
    let (report, _) = run(
        &bad,
        spec(
            LATENCY_AND_ERRORS,
            "policy: {method: kayenta, max_duration: 10m}\n",
        ),
        31,
    );
    assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
    let good = Scenario {
        canary: healthy,
        ..bad
    };
    let (report, _) = run(
        &good,
        spec(
            LATENCY_AND_ERRORS,
            "policy: {method: kayenta, max_duration: 10m}\n",
        ),
        31,
    );
    assert_eq!(report.verdict, Verdict::Promote, "{}", report.reason);
    assert!(report.reason.contains("Kayenta score"), "{}", report.reason);
}

/// One request of `payment` at stream second `t`: its latency (ms) and
/// its outcome, in the canary (v8) or the baseline (v7).
fn record_request(store: &Store, t: f64, canary: bool, labels: Labels, ms: f64, error: bool) {
    let base = Sample {
        ts: T0 + t,
        service: ServiceName::new("payment").unwrap(),
        version: Version::new(if canary { "v8" } else { "v7" }).unwrap(),
        metric: MetricName::new("latency").unwrap(),
        labels,
        observation: Observation::Value(ms),
    };
    store.record(&base).unwrap();
    store
        .record(&Sample {
            metric: MetricName::new("error_rate").unwrap(),
            observation: Observation::Outcome { error },
            ..base
        })
        .unwrap();
}

/// A tick that catches up on many slices (a server restarted, a replay
/// decoding ahead) gives the combined evidence the same running maximum as
/// ticking at every slice: each slice is fed to every track before the
/// next, so a peak between two ticks is not missed.
#[test]
fn catching_up_sees_every_slice_of_the_combined_evidence() {
    let store = Store::new(StoreConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let latency = LogNormal::new(80f64.ln(), 0.5).unwrap();
    let mut each = Analysis::new("each", spec(LATENCY_AND_ERRORS, ""), T0).unwrap();
    let mut once = Analysis::new("once", spec(LATENCY_AND_ERRORS, ""), T0).unwrap();
    each.stop_at_terminal = false;
    once.stop_at_terminal = false;
    let mut t = 0.0;
    let mut next_tick = 10.0;
    while t < 900.0 {
        t += 0.01;
        let is_canary = rng.random::<f64>() < 0.2;
        // The canary is 40% slower for its first two minutes only: the
        // evidence peaks, then the healthy stretch wears it down.
        let mult = if is_canary && t < 120.0 { 1.4 } else { 1.0 };
        let ms = (latency.sample(&mut rng) * mult).round();
        let error = rng.random::<f64>() < 0.001;
        record_request(&store, t, is_canary, Labels::default(), ms, error);
        if t >= next_tick {
            each.tick(&store, T0 + t);
            next_tick += 10.0;
        }
    }
    once.tick(&store, T0 + t);
    each.tick(&store, T0 + t);
    assert!(each.overall.p_value() < 1e-6, "{}", each.overall.p_value());
    assert_eq!(once.overall.p_value(), each.overall.p_value());
    // The tracks' current evidence agrees too.
    for (a, b) in once.tracks.iter().zip(&each.tracks) {
        assert_eq!(a.e_value(), b.e_value());
    }
}

#[test]
fn a_rollback_names_an_endpoint_when_endpoints_are_judged() {
    // The payment incident on every endpoint: the metric as a whole often
    // has the evidence before any one endpoint does; the reason still says
    // where to look.
    let scenario = payment_incident(600.0);
    for seed in 1..=12 {
        let spec = spec(
            LATENCY_AND_ERRORS,
            "policy: {alpha: 0.01, max_duration: 30m}\ndimensions: [endpoint]\n",
        );
        let (report, _) = run(&scenario, spec, seed);
        assert_eq!(report.verdict, Verdict::Rollback, "{}", report.reason);
        assert!(
            report.reason.starts_with("error rate of /"),
            "seed {seed}: {}",
            report.reason
        );
        assert!(report.worst_dimension.is_some(), "seed {seed}");
    }
}
