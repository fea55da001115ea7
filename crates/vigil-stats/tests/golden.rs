//! The statistics against reference implementations.
//!
//! Golden files in `tests/golden/` are written by `scripts/gen_golden.py`
//! (scipy 1.14.1, numpy 2.2.6, savvi 0.3.1, mpmath 1.3.0; versions and the
//! definition of every expected value are recorded in each file's
//! `generator` object). Tolerances, as stated there:
//! - Mann-Whitney U: exact; asymptotic p-values: 1e-9 relative;
//! - exact p-values with ties: 1e-10 absolute;
//! - Hodges-Lehmann shift: exact (recorded only where every value is the
//!   one its histogram bucket stands for);
//! - savvi log e-values: 1e-9 relative, or 1e-9 absolute when |log e| < 1;
//! - rank-shift log e-values (`scripts/gen_rank_shift_golden.py`, scipy
//!   midranks and quadrature, same versions): 1e-9 relative + 1e-6 absolute;
//! - the error-rate confidence sequence's ends
//!   (`scripts/gen_proportion_golden.py`, mpmath 1.3.0 at 60 digits): 1e-7
//!   relative (largest seen 2.6e-8, at 1 error in 10^7: ln B of arguments
//!   near 10^7 is a difference of log-gammas near 1.5e8, whose last bits
//!   are 2e-8 of ln E, and the slope there turns that into ~1e-8 of p).

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use vigil_stats::mann_whitney::{mann_whitney_with_exact_limit, Alternative};
use vigil_stats::sequential::counts::{DirichletMultinomial, ErrorShareTest, ShareAlternative};
use vigil_stats::sequential::EProcess;
use vigil_stats::{hodges_lehmann, BucketCounts, Histogram};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn histogram(pairs: &Value) -> Histogram {
    let mut h = Histogram::new();
    for p in pairs.as_array().unwrap() {
        h.record_n(p[0].as_u64().unwrap(), p[1].as_u64().unwrap())
            .unwrap();
    }
    h
}

fn close_relative(actual: f64, expected: f64, tol: f64) -> bool {
    if expected == 0.0 {
        return actual.abs() <= tol;
    }
    ((actual - expected) / expected).abs() <= tol
}

#[test]
fn mann_whitney_matches_scipy() {
    let golden = load("mann_whitney.json");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "at least 20 cases, got {}", cases.len());
    let mut exact_checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let canary = histogram(&case["canary"]);
        let baseline = histogram(&case["baseline"]);
        assert_eq!(canary.len(), case["n_canary"].as_u64().unwrap(), "{name}");
        assert_eq!(
            baseline.len(),
            case["n_baseline"].as_u64().unwrap(),
            "{name}"
        );
        // A generous budget so every small case gets its exact p-value.
        let r = mann_whitney_with_exact_limit(&canary, &baseline, 1e9).unwrap();
        assert_eq!(r.u, case["u"].as_f64().unwrap(), "{name}: U");
        for (key, alt) in [
            ("two-sided", Alternative::TwoSided),
            ("greater", Alternative::Greater),
            ("less", Alternative::Less),
        ] {
            let expected = case["p_asymptotic"][key].as_f64().unwrap();
            let actual = r.p.get(alt);
            assert!(
                close_relative(actual, expected, 1e-9),
                "{name}: asymptotic {key} p = {actual:e}, scipy {expected:e}"
            );
            if let Some(exact) = case["p_exact"].get(key).and_then(Value::as_f64) {
                let ours = r
                    .p_exact
                    .unwrap_or_else(|| panic!("{name}: no exact p computed"))
                    .get(alt);
                assert!(
                    (ours - exact).abs() <= 1e-10,
                    "{name}: exact {key} p = {ours:e}, reference {exact:e}"
                );
                exact_checked += 1;
            }
        }
        if let Some(shift) = case["hl_shift"].as_f64() {
            let hl = hodges_lehmann(&canary, &baseline, 0.95).unwrap();
            // The generator records the shift only where every value is the
            // one its bucket stands for, so the result must be exact.
            assert_eq!(hl.shift, shift, "{name}: Hodges-Lehmann shift");
        }
    }
    assert!(
        exact_checked >= 30,
        "exact p-values checked: {exact_checked}"
    );
}

#[test]
fn dirichlet_multinomial_matches_savvi() {
    let golden = load("savvi.json");
    let cases = golden["cases"].as_array().unwrap();
    let mut stops = Vec::new();
    let savvi_doc_stops = [
        ("savvi_doc_multinomial_n402", 402u64),
        ("savvi_doc_poisson_process_n210", 210),
    ];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let theta0: Vec<f64> = case["theta_0"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let k = case["k"].as_f64().unwrap();
        let mut test = DirichletMultinomial::new(&theta0, k).unwrap();
        // The two-outcome case through the canary-facing type as well.
        let mut share = (theta0.len() == 2)
            .then(|| ErrorShareTest::new(theta0[0], k, ShareAlternative::Differs).unwrap());
        let updates = case["updates"].as_array().unwrap();
        let expected = case["log_e"].as_array().unwrap();
        let p_expected = case["p_value"].as_array().unwrap();
        let mut n = 0u64;
        let mut first_stop = None;
        for (i, (x, e)) in updates.iter().zip(expected).enumerate() {
            let x: Vec<u64> = x
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            n += x.iter().sum::<u64>();
            test.update(&x).unwrap();
            let e = e.as_f64().unwrap();
            let tol = if e.abs() < 1.0 { 1e-9 } else { 1e-9 * e.abs() };
            assert!(
                (test.ln_e_value() - e).abs() <= tol,
                "{name} update {i}: ln e {} vs savvi {e}",
                test.ln_e_value()
            );
            // savvi's anytime p-value: running minimum of 1 / e.
            let p = p_expected[i].as_f64().unwrap();
            assert!(
                close_relative(test.p_value(), p, 1e-9),
                "{name} update {i}: p {} vs {p}",
                test.p_value()
            );
            if first_stop.is_none() && test.rejects(0.05) {
                first_stop = Some(n);
            }
            if let Some(s) = share.as_mut() {
                s.update(x[0], x[1]);
                assert!(
                    (s.ln_e_value() - e).abs() <= tol,
                    "{name} update {i} (error share)"
                );
            }
        }
        if let Some(&(_, stop)) = savvi_doc_stops.iter().find(|(doc, _)| *doc == name) {
            assert_eq!(
                first_stop,
                Some(stop),
                "{name}: first rejection at alpha 0.05"
            );
            stops.push(stop);
        }
    }
    // savvi's own documented stopping points, n = 402 and n = 210, both
    // reproduced: the test rejects at exactly the same observation.
    assert_eq!(stops, vec![402, 210]);
}

#[test]
fn one_sided_error_share_matches_mpmath() {
    let golden = load("savvi.json");
    for case in golden["one_sided"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rho = case["rho"].as_f64().unwrap();
        let k = case["k"].as_f64().unwrap();
        let mut t = ErrorShareTest::new(rho, k, ShareAlternative::Exceeds).unwrap();
        t.update(case["x"].as_u64().unwrap(), case["y"].as_u64().unwrap());
        let e = case["log_e"].as_f64().unwrap();
        let tol = if e.abs() < 1.0 { 1e-9 } else { 1e-9 * e.abs() };
        assert!(
            (t.ln_e_value() - e).abs() <= tol,
            "{name}: ln e {} vs {e}",
            t.ln_e_value()
        );
    }
}

/// `scripts/gen_rank_shift_golden.py`: the rank e-process recomputed from
/// its definition with scipy's normal quantile and quadrature, slice by slice.
#[test]
fn rank_shift_matches_its_reference() {
    use vigil_stats::sequential::quantile::Direction;
    use vigil_stats::sequential::rank_shift::RankShiftTest;
    let doc = load("rank_shift.json");
    let values = |v: &Value| {
        let mut h = Histogram::new();
        for x in v.as_array().unwrap() {
            h.record(x.as_u64().unwrap()).unwrap();
        }
        h
    };
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let direction = match case["direction"].as_str().unwrap() {
            "increase" => Direction::Increase,
            _ => Direction::Decrease,
        };
        let mut test = match case["kind"].as_str().unwrap() {
            "body" => RankShiftTest::new(direction, 0.0, 0.0).unwrap(),
            _ => RankShiftTest::tail(case["quantile"].as_f64().unwrap(), direction, 0.0, 0.0)
                .unwrap(),
        };
        let expected = case["ln_e"].as_array().unwrap();
        for (i, (slice, want)) in case["slices"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected)
            .enumerate()
        {
            assert!(test.update(&values(&slice["canary"]), &values(&slice["baseline"])));
            let want = want.as_f64().unwrap();
            let got = test.ln_e_value();
            assert!(
                (got - want).abs() <= 1e-9 * want.abs() + 1e-6,
                "{name}, slice {i}: ln e {got} vs reference {want}"
            );
        }
    }
}

#[test]
fn proportion_cs_matches_mpmath() {
    use vigil_stats::sequential::proportion::proportion_cs;
    let golden = load("proportion_cs.json");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "got {}", cases.len());
    let mut worst = 0.0_f64;
    for case in cases {
        let x = case["successes"].as_u64().unwrap();
        let n = case["n"].as_u64().unwrap();
        let alpha = case["alpha"].as_f64().unwrap();
        let (low, high) = proportion_cs(x, n, alpha).unwrap();
        for (got, want) in [
            (low, case["low"].as_f64().unwrap()),
            (high, case["high"].as_f64().unwrap()),
        ] {
            worst = worst.max(if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            });
            assert!(
                close_relative(got, want, 1e-7),
                "{x}/{n} at {alpha}: {got} vs {want}"
            );
        }
    }
    eprintln!("proportion_cs: largest relative difference {worst:e}");
}
