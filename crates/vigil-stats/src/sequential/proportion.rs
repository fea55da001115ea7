//! A confidence sequence for a proportion (an error rate), valid at every
//! sample size at once: Robbins' beta-binomial mixture.
//!
//! For a candidate rate p, E_n(p) = B(a + x, b + n - x) / B(a, b) /
//! (p^x (1 - p)^(n - x)) is a test martingale when p is the true rate, so
//! {p : E_n(p) < 1/alpha} covers it at all n with probability 1 - alpha.
//! -ln E_n(p) is concave in p, so the set is an interval around x/n; its
//! ends are found by Newton steps in ln p (and ln(1 - p)). Unlike a
//! normal-approximation interval it is sensible at 0 or 3 errors out of
//! thousands, where canary error rates live.

use crate::special::ln_beta;
use crate::{check_alpha, StatsError};

/// Jeffreys prior Beta(1/2, 1/2): no preference between rare and common.
const PRIOR: f64 = 0.5;

/// Time-uniform confidence interval for a proportion after `successes` out
/// of `n` trials, at level 1 - `alpha`. (0, 1) when `n` is 0.
///
/// Each end is found to within [`END_PRECISION`] of itself, on the
/// outside: the interval holds the exact set (a judge tick computes two of
/// these per error-rate metric, and the search to the last double took a
/// tenth of the tick, docs/BENCHMARKS.md).
pub fn proportion_cs(successes: u64, n: u64, alpha: f64) -> Result<(f64, f64), StatsError> {
    check_alpha("alpha", alpha)?;
    if successes > n {
        return Err(StatsError::InvalidParameter {
            name: "successes",
            reason: format!("{successes} exceeds {n} trials"),
        });
    }
    if n == 0 {
        return Ok((0.0, 1.0));
    }
    let (x, m) = (successes as f64, (n - successes) as f64);
    let ln_mix = ln_beta(PRIOR + x, PRIOR + m) - ln_beta(PRIOR, PRIOR);
    let threshold = (1.0 / alpha).ln();
    let (low, _) = low_end(x, m, ln_mix - threshold);
    // The high end of p is one minus the low end of 1 - p, the failures'
    // proportion (E_n is symmetric in the two counts).
    let (failures_low, _) = low_end(m, x, ln_mix - threshold);
    Ok((low, 1.0 - failures_low))
}

/// Relative precision of an end of [`proportion_cs`].
pub const END_PRECISION: f64 = 1e-12;

/// The low end of {p : E_n(p) < 1/alpha} after `x` successes and `m`
/// failures, where `c` is ln(mixture) - ln(1/alpha): 0 when `x` is 0 or
/// the set reaches the smallest double.
///
/// In u = ln p the condition reads g(u) = c - x u - m ln(1 - e^u) < 0,
/// with g convex and decreasing up to x / (x + m): a Newton step from a
/// point outside the set lands between the end and that point. From the
/// root of g's linear part, 3-11 evaluations of g at a judge's counts (16
/// at one error in 10^7) instead of the 13-43 of the search to the last
/// double this replaced. Returns the end and the evaluations of g it took.
fn low_end(x: f64, m: f64, c: f64) -> (f64, u32) {
    if x == 0.0 {
        return (0.0, 0);
    }
    let mut calls = 0;
    // g and dg/du at u, from p = e^u.
    let mut g = |u: f64| {
        calls += 1;
        let p = u.exp();
        let value = c - x * u - m * (-p).ln_1p();
        let slope = m * p / (1.0 - p) - x;
        (value, slope)
    };
    // -m ln(1 - e^u) >= 0, so g(u) >= c - x u, whose root c / x (below 0:
    // the mixture is at most 1, 1/alpha above it) is outside the set, and
    // the end when there are no failures.
    let mut u = c / x;
    let (mut value, mut slope) = g(u);
    // A step of d in u moves p by a factor e^d, and 1 - p (the end this
    // is for in [`proportion_cs`]'s high end) by about d p / (1 - p).
    let precision = |u: f64| 0.1 * END_PRECISION * (-u.exp_m1()).min(1.0);
    for _ in 0..100 {
        // (NaN slopes and values stop here too.)
        if slope.partial_cmp(&0.0) != Some(std::cmp::Ordering::Less) || !value.is_finite() {
            break;
        }
        let step = value / slope;
        let next = u - step;
        if next.partial_cmp(&u) != Some(std::cmp::Ordering::Greater) {
            break;
        }
        let (v, s) = g(next);
        if v >= 0.0 {
            (u, value, slope) = (next, v, s);
            // The next step would be about step^2.
            if -step <= precision(u) {
                break;
            }
            continue;
        }
        // In exact arithmetic the step ends outside; rounding (of a step
        // from far away, or near the end) put it just past the end. Go on
        // from the first point found outside, stepping back from it.
        let mut back = (f64::EPSILON * next.abs()).max(f64::MIN_POSITIVE);
        let mut outside = None;
        for _ in 0..600 {
            let w = next - back;
            if w <= u {
                break;
            }
            let (vw, sw) = g(w);
            if vw >= 0.0 {
                outside = Some((w, vw, sw));
                break;
            }
            back *= 4.0;
        }
        match outside {
            Some(point) => {
                (u, value, slope) = point;
                if back <= precision(u) {
                    break;
                }
            }
            None => break,
        }
    }
    (u.exp(), calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bisection the Newton steps replaced, kept as the reference.
    fn bisected(successes: u64, n: u64, alpha: f64) -> (f64, f64) {
        let (x, m) = (successes as f64, (n - successes) as f64);
        let ln_mix = ln_beta(PRIOR + x, PRIOR + m) - ln_beta(PRIOR, PRIOR);
        let threshold = (1.0 / alpha).ln();
        let f = |p: f64| ln_mix - x * p.ln() - m * (1.0 - p).ln() - threshold;
        let centre = x / n as f64;
        let bisect = |mut inside: f64, mut outside: f64| {
            for _ in 0..100 {
                let mid = 0.5 * (inside + outside);
                let before = (inside.to_bits(), outside.to_bits());
                if f(mid) < 0.0 {
                    inside = mid;
                } else {
                    outside = mid;
                }
                if (inside.to_bits(), outside.to_bits()) == before {
                    break;
                }
            }
            inside
        };
        let low = if successes == 0 || f(f64::MIN_POSITIVE) < 0.0 {
            0.0
        } else {
            bisect(centre, 0.0)
        };
        let high = if successes == n || f(1.0 - f64::EPSILON) < 0.0 {
            1.0
        } else {
            bisect(centre, 1.0)
        };
        (low, high)
    }

    #[test]
    fn newton_finds_the_ends_bisection_finds_on_their_outside() {
        for n in [1u64, 2, 7, 50, 333, 1000, 4_567, 100_000, 10_000_000] {
            for successes in [0, 1, 2, 3, n / 1000, n / 100, n / 7, n / 2, n - 1, n] {
                if successes > n {
                    continue;
                }
                for alpha in [0.001, 0.005, 0.05, 0.3] {
                    let got = proportion_cs(successes, n, alpha).unwrap();
                    let want = bisected(successes, n, alpha);
                    let what = format!("{successes}/{n} at {alpha}: {got:?} vs {want:?}");
                    // The reference's own rounding: it computes ln(1 - p) as
                    // written, and 1 - p moves in steps of 1.1e-16, which
                    // is up to n 1.1e-16 of f and of p's relative position
                    // (near 1, 1.1e-16 of p itself).
                    let slack = END_PRECISION + n as f64 * 1.2e-16;
                    for (g, w) in [(got.0, want.0), (got.1, want.1)] {
                        assert!((g - w).abs() <= 2.3e-16 + slack * w.abs(), "{what}");
                    }
                    // On the outside: the interval holds the exact set.
                    assert!(got.0 <= want.0 * (1.0 + slack), "{what}");
                    assert!(got.1 >= want.1 * (1.0 - slack) - 2.3e-16, "{what}");
                }
            }
        }
    }

    #[test]
    fn newton_needs_few_evaluations() {
        let threshold = (1.0_f64 / 0.005).ln();
        // Error counts as a judge sees them (a few in thousands), half, and
        // one in ten million; each end (the high end is the low end of
        // the failures' proportion).
        for (x, n) in [
            (1u64, 600u64),
            (3, 2_400),
            (12, 14_400),
            (40, 40_000),
            (500, 1_000),
            (1, 10_000_000),
        ] {
            let (x, m) = (x as f64, (n - x) as f64);
            let c = ln_beta(PRIOR + x, PRIOR + m) - ln_beta(PRIOR, PRIOR) - threshold;
            for (a, b) in [(x, m), (m, x)] {
                let (end, calls) = low_end(a, b, c);
                assert!(end > 0.0 && end < a / (a + b), "{a} {b}: {end}");
                // The bisection took 13-43 (more for the lower end).
                let most = if a.min(b) < 2.0 && a.max(b) > 1e6 {
                    20
                } else {
                    12
                };
                assert!(calls <= most, "{a} {b}: {calls} evaluations");
            }
        }
    }

    #[test]
    fn interval_contains_the_estimate_and_narrows() {
        let (lo, hi) = proportion_cs(10, 1000, 0.05).unwrap();
        assert!(lo < 0.01 && 0.01 < hi, "{lo} {hi}");
        let (lo2, hi2) = proportion_cs(100, 10_000, 0.05).unwrap();
        assert!(hi2 - lo2 < hi - lo);
        let (lo0, hi0) = proportion_cs(0, 5000, 0.01).unwrap();
        assert_eq!(lo0, 0.0);
        assert!(hi0 < 0.003, "{hi0}");
        assert_eq!(proportion_cs(0, 0, 0.05).unwrap(), (0.0, 1.0));
        assert!(proportion_cs(3, 2, 0.05).is_err());
    }

    #[test]
    fn covers_at_every_look_in_simulation() {
        // Deterministic pseudo-random Bernoulli(0.02) streams; the interval
        // must miss the truth at some look in at most about alpha of runs.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (runs, mut missed) = (300, 0);
        for _ in 0..runs {
            let (mut x, mut n) = (0u64, 0u64);
            let mut miss = false;
            for _ in 0..200 {
                for _ in 0..20 {
                    n += 1;
                    x += u64::from(next() < 0.02);
                }
                let (lo, hi) = proportion_cs(x, n, 0.05).unwrap();
                miss |= !(lo <= 0.02 && 0.02 <= hi);
            }
            missed += u64::from(miss);
        }
        assert!(
            missed as f64 / runs as f64 <= 0.05 + 3.0 * (0.05f64 * 0.95 / 300.0).sqrt(),
            "missed {missed}"
        );
    }
}
