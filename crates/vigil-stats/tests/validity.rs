//! Deterministic A/A validity: over many seeded runs in which canary and
//! baseline are the same, each sequential test, looked at after every one
//! of 100 batches, rejects at most alpha plus a Monte Carlo margin; a
//! fixed-horizon Mann-Whitney test looked at just as often does not. This
//! is the measured reason Vigil judges with anytime-valid tests.
//!
//! Margin: with R runs, the rejection rate's standard error under a true
//! rate alpha is sqrt(alpha (1 - alpha) / R); we allow three of them.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_stats::mann_whitney::{mann_whitney_with_exact_limit, Alternative};
use vigil_stats::sequential::batch_rank::BatchRankTest;
use vigil_stats::sequential::counts::{ErrorRateTest, ErrorShareTest, ShareAlternative};
use vigil_stats::sequential::exceedance::QuantileExceedanceTest;
use vigil_stats::sequential::quantile::{Direction, QuantileShiftTest};
use vigil_stats::sequential::rank_shift::RankShiftTest;
use vigil_stats::sequential::EProcess;
use vigil_stats::{BucketCounts, Histogram};

const ALPHA: f64 = 0.05;
const RUNS: u64 = 400;
const LOOKS: usize = 100;

fn margin() -> f64 {
    3.0 * (ALPHA * (1.0 - ALPHA) / RUNS as f64).sqrt()
}

/// How often each test rejected, over all runs.
#[derive(Debug, Default)]
struct Rejections {
    quantile: u64,
    exceed_p50: u64,
    exceed_p99: u64,
    rank_two_sided: u64,
    rank_greater: u64,
    rank_shift: u64,
    tail_rank: u64,
    /// Only counted with a constant traffic split, the test's assumption.
    errors_differ: u64,
    errors_exceed: u64,
    error_rate_differs: u64,
    error_rate_exceeds: u64,
    fixed_horizon: u64,
}

/// A traffic shape: per look, the canary's share of requests and a latency
/// multiplier that hits both arms alike.
struct Shape {
    canary_share: fn(usize) -> f64,
    drift: fn(usize) -> f64,
    requests_per_look: usize,
    /// Canary latency multiplier and error rate (1.0 and 0.02 for A/A).
    canary_latency: f64,
    canary_error_rate: f64,
}

const A_A: (f64, f64) = (1.0, 0.02);

fn run(shape: &Shape, seed_base: u64, runs: u64) -> Rejections {
    let latency = LogNormal::new((150_000f64).ln(), 0.6).unwrap(); // microseconds
    let mut out = Rejections::default();
    for run in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed_base + run);
        let mut quantile =
            QuantileShiftTest::new(&[0.5, 0.99], ALPHA, 0.0, 0.0, Direction::Increase).unwrap();
        let mut rank2 = BatchRankTest::new(Alternative::TwoSided, 0.0).unwrap();
        let mut ex50 = QuantileExceedanceTest::new(0.5, Direction::Increase, 0.0, 0.0).unwrap();
        let mut ex99 = QuantileExceedanceTest::new(0.99, Direction::Increase, 0.0, 0.0).unwrap();
        let mut rank1 = BatchRankTest::new(Alternative::Greater, 0.0).unwrap();
        let mut shift = RankShiftTest::new(Direction::Increase, 0.0, 0.0).unwrap();
        let mut tail = RankShiftTest::tail(0.99, Direction::Increase, 0.0, 0.0).unwrap();
        // The canary's traffic share is known to the error test only as the
        // configured split; use a constant-share shape for it.
        let rho = (shape.canary_share)(0);
        let mut err2 = ErrorShareTest::new(rho, 100.0, ShareAlternative::Differs).unwrap();
        let mut err1 = ErrorShareTest::new(rho, 100.0, ShareAlternative::Exceeds).unwrap();
        let mut rate2 = ErrorRateTest::new(0.0, ShareAlternative::Differs).unwrap();
        let mut rate1 = ErrorRateTest::new(0.0, ShareAlternative::Exceeds).unwrap();
        let constant_share = (0..LOOKS).all(|l| (shape.canary_share)(l) == rho);
        let (mut cum_c, mut cum_b) = (Histogram::new(), Histogram::new());
        let mut fixed_rejected = false;
        for look in 0..LOOKS {
            let (mut c, mut b) = (Histogram::new(), Histogram::new());
            let (mut ec, mut eb) = (0u64, 0u64);
            let (mut nc, mut nb) = (0u64, 0u64);
            let share = (shape.canary_share)(look);
            let drift = (shape.drift)(look);
            for _ in 0..shape.requests_per_look {
                let v = latency.sample(&mut rng) * drift;
                let u = rng.random::<f64>();
                if rng.random::<f64>() < share {
                    c.record((v * shape.canary_latency) as u64).unwrap();
                    ec += u64::from(u < shape.canary_error_rate);
                    nc += 1;
                } else {
                    b.record(v as u64).unwrap();
                    eb += u64::from(u < 0.02);
                    nb += 1;
                }
            }
            quantile.update(&c, &b);
            rank2.update(&c, &b);
            ex50.update(&c, &b);
            ex99.update(&c, &b);
            rank1.update(&c, &b);
            shift.update(&c, &b);
            tail.update(&c, &b);
            err2.update(ec, eb);
            err1.update(ec, eb);
            rate2.update(nc, ec, nb, eb);
            rate1.update(nc, ec, nb, eb);
            cum_c.merge(&c).unwrap();
            cum_b.merge(&b).unwrap();
            if !cum_c.is_empty() && !cum_b.is_empty() {
                let mw = mann_whitney_with_exact_limit(&cum_c, &cum_b, 0.0).unwrap();
                fixed_rejected |= mw.p.two_sided <= ALPHA;
            }
        }
        out.quantile += u64::from(quantile.rejects());
        out.exceed_p50 += u64::from(ex50.rejects(ALPHA));
        out.exceed_p99 += u64::from(ex99.rejects(ALPHA));
        out.rank_two_sided += u64::from(rank2.rejects(ALPHA));
        out.rank_greater += u64::from(rank1.rejects(ALPHA));
        out.rank_shift += u64::from(shift.rejects(ALPHA));
        out.tail_rank += u64::from(tail.rejects(ALPHA));
        if constant_share {
            out.errors_differ += u64::from(err2.rejects(ALPHA));
            out.errors_exceed += u64::from(err1.rejects(ALPHA));
        }
        out.error_rate_differs += u64::from(rate2.rejects(ALPHA));
        out.error_rate_exceeds += u64::from(rate1.rejects(ALPHA));
        out.fixed_horizon += u64::from(fixed_rejected);
    }
    out
}

fn rate(n: u64) -> f64 {
    n as f64 / RUNS as f64
}

/// Every named test's rejection rate is at most `bound`.
fn within_bound(bound: f64, rejections: &[(&str, u64)]) {
    for &(name, n) in rejections {
        assert!(rate(n) <= bound, "{name}: {}", rate(n));
    }
}

#[test]
fn sequential_tests_hold_alpha_under_repeated_looks_and_fixed_horizon_does_not() {
    let shape = Shape {
        canary_share: |_| 0.2,
        drift: |_| 1.0,
        requests_per_look: 100,
        canary_latency: A_A.0,
        canary_error_rate: A_A.1,
    };
    let r = run(&shape, 1_000, RUNS);
    let bound = ALPHA + margin();
    eprintln!("A/A, 100 looks, alpha {ALPHA}, {RUNS} runs: {r:?} (bound {bound:.4})");
    within_bound(
        bound,
        &[
            ("quantile bands", r.quantile),
            ("batch rank two-sided", r.rank_two_sided),
            ("batch rank greater", r.rank_greater),
            ("rank shift", r.rank_shift),
            ("tail rank", r.tail_rank),
            ("error share differs", r.errors_differ),
            ("error share exceeds", r.errors_exceed),
            ("error rate differs", r.error_rate_differs),
            ("error rate exceeds", r.error_rate_exceeds),
        ],
    );
    // The peeking problem: the same data, the same looks, a fixed-horizon
    // test. Measured around a quarter of runs; alpha + margin is far below.
    assert!(
        rate(r.fixed_horizon) > 2.0 * bound,
        "fixed horizon: {}",
        rate(r.fixed_horizon)
    );
}

#[test]
fn batch_rank_test_holds_alpha_under_ramp_and_drift() {
    // The canary ramps from 5% to 50% of traffic while load, and latency
    // with it, grows by 60% for both arms: pooled tests see a slower canary
    // because more of its samples come from the slow end of the run.
    let shape = Shape {
        canary_share: |look| 0.05 + 0.45 * look as f64 / LOOKS as f64,
        drift: |look| 1.0 + 0.6 * look as f64 / LOOKS as f64,
        requests_per_look: 100,
        canary_latency: A_A.0,
        canary_error_rate: A_A.1,
    };
    let r = run(&shape, 50_000, RUNS);
    let bound = ALPHA + margin();
    eprintln!("A/A with ramp and drift: {r:?} (bound {bound:.4})");
    within_bound(
        bound,
        &[
            ("batch rank two-sided", r.rank_two_sided),
            ("batch rank greater", r.rank_greater),
            ("rank shift", r.rank_shift),
            ("tail rank", r.tail_rank),
            ("error rate differs", r.error_rate_differs),
            ("error rate exceeds", r.error_rate_exceeds),
        ],
    );
    // Pooled comparisons are fooled by the confounding.
    assert!(
        rate(r.fixed_horizon) > 0.5,
        "pooled fixed horizon: {}",
        rate(r.fixed_horizon)
    );
}

/// The tests are not valid by never rejecting: each detects a clear
/// regression within the same 100 looks in nearly every run.
#[test]
fn sequential_tests_detect_clear_regressions() {
    let shape = Shape {
        canary_share: |_| 0.2,
        drift: |_| 1.0,
        requests_per_look: 100,
        canary_latency: 1.3,
        canary_error_rate: 0.06,
    };
    const POWER_RUNS: u64 = 100;
    let r = run(&shape, 90_000, POWER_RUNS);
    eprintln!("latency +30%, errors 2% -> 6%, {POWER_RUNS} runs: {r:?}");
    for (name, n) in [
        ("quantile", r.quantile),
        ("exceedance p50", r.exceed_p50),
        ("batch rank greater", r.rank_greater),
        ("rank shift", r.rank_shift),
        ("error share exceeds", r.errors_exceed),
        ("error rate exceeds", r.error_rate_exceeds),
    ] {
        let share = n as f64 / POWER_RUNS as f64;
        assert!(share >= 0.9, "{name} detected only {share}");
    }
}
