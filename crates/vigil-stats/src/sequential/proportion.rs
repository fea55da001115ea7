//! A confidence sequence for a proportion (an error rate), valid at every
//! sample size at once: Robbins' beta-binomial mixture.
//!
//! For a candidate rate p, E_n(p) = B(a + x, b + n - x) / B(a, b) /
//! (p^x (1 - p)^(n - x)) is a test martingale when p is the true rate, so
//! {p : E_n(p) < 1/alpha} covers it at all n with probability 1 - alpha.
//! -ln E_n(p) is concave in p, so the set is an interval around x/n; its
//! ends are found by bisection. Unlike a normal-approximation interval it is
//! sensible at 0 or 3 errors out of thousands, where canary error rates live.

use crate::special::ln_beta;
use crate::{check_alpha, StatsError};

/// Jeffreys prior Beta(1/2, 1/2): no preference between rare and common.
const PRIOR: f64 = 0.5;

/// Time-uniform confidence interval for a proportion after `successes` out
/// of `n` trials, at level 1 - `alpha`. (0, 1) when `n` is 0.
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
    // ln E(p) - threshold: negative inside the interval.
    let f = |p: f64| ln_mix - x * p.ln() - m * (1.0 - p).ln() - threshold;
    // Its derivative.
    let df = |p: f64| m / (1.0 - p) - x / p;
    let centre = x / n as f64;
    let low = if successes == 0 || f(0.0_f64.max(f64::MIN_POSITIVE)) < 0.0 {
        0.0
    } else {
        boundary(f, df, centre, 0.0)
    };
    let high = if successes == n || f(1.0 - f64::EPSILON) < 0.0 {
        1.0
    } else {
        boundary(f, df, centre, 1.0)
    };
    Ok((low, high))
}

/// Whether no double lies strictly between `a` and `b`.
fn adjacent(a: f64, b: f64) -> bool {
    if a < b {
        a.next_up() >= b
    } else {
        a.next_down() <= b
    }
}

/// The end of {p : f(p) < 0} between `inside` (f < 0 there) and `outside`:
/// the inside one of the two adjacent doubles where f changes sign, which is
/// where bisection to adjacent ends stops. `f` is convex, so a Newton step
/// from a point outside the interval lands between the root and that point;
/// once the steps are within rounding, a probe just past the root brings the
/// inside end up and a few halvings finish. About 15 evaluations of `f`
/// instead of bisection's 60.
fn boundary(
    f: impl Fn(f64) -> f64,
    df: impl Fn(f64) -> f64,
    mut inside: f64,
    mut outside: f64,
) -> f64 {
    // The latest outside point and f there, for the next Newton step.
    let mut last: Option<(f64, f64)> = None;
    for step in 0..200 {
        if adjacent(inside, outside) {
            break;
        }
        let mid = 0.5 * (inside + outside);
        let newton = last.filter(|_| step < 60).and_then(|(p, fp)| {
            let d = fp / df(p);
            if !d.is_finite() {
                return None;
            }
            let toward = (inside - p).signum();
            // The root lies |d| or less from p (convexity); past 1e-10 of
            // p the step is within f's rounding: probe beyond the root.
            let c = if d.abs() > 1e-10 * p.abs() {
                p - d
            } else {
                p + toward * (2.0 * d.abs() + 4.0 * (p.next_up() - p).abs())
            };
            let between = if inside < outside {
                inside < c && c < outside
            } else {
                outside < c && c < inside
            };
            between.then_some(c)
        });
        let c = newton.unwrap_or(mid);
        let fc = f(c);
        if fc < 0.0 {
            inside = c;
            // The outside end is a root's breadth away: halve from here.
            last = None;
        } else {
            outside = c;
            last = Some((c, fc));
        }
    }
    inside
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
    fn newton_finds_the_ends_bisection_finds() {
        let mut exact = 0;
        let mut cases = 0;
        for n in [1u64, 2, 7, 50, 333, 1000, 4_567, 100_000, 10_000_000] {
            for successes in [0, 1, 2, 3, n / 1000, n / 100, n / 7, n / 2, n - 1, n] {
                if successes > n {
                    continue;
                }
                for alpha in [0.001, 0.005, 0.05, 0.3] {
                    let got = proportion_cs(successes, n, alpha).unwrap();
                    let want = bisected(successes, n, alpha);
                    cases += 2;
                    exact += usize::from(got.0 == want.0) + usize::from(got.1 == want.1);
                    for (g, w) in [(got.0, want.0), (got.1, want.1)] {
                        assert!(
                            (g - w).abs() <= 1e-15 + 1e-12 * w.abs(),
                            "{successes}/{n} at {alpha}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
        // f is monotone down to the last bit except where `(1 - p).ln()`
        // is a staircase (1 - p moves in steps of 1.1e-16 while p keeps its
        // precision): there both ends are sign changes of f within a few
        // of those steps. Elsewhere they are the same double.
        assert!(exact * 4 >= cases * 3, "{exact} of {cases} identical");
    }

    #[test]
    fn newton_needs_few_evaluations() {
        let calls = std::cell::Cell::new(0u32);
        let (x, m, threshold) = (12.0_f64, 9_988.0_f64, (1.0_f64 / 0.005).ln());
        let ln_mix = ln_beta(PRIOR + x, PRIOR + m) - ln_beta(PRIOR, PRIOR);
        let f = |p: f64| {
            calls.set(calls.get() + 1);
            ln_mix - x * p.ln() - m * (1.0 - p).ln() - threshold
        };
        let df = |p: f64| m / (1.0 - p) - x / p;
        let centre = x / (x + m);
        for outside in [0.0, 1.0] {
            calls.set(0);
            let end = boundary(f, df, centre, outside);
            assert!(
                f(end) < 0.0
                    && f(if outside > end {
                        end.next_up()
                    } else {
                        end.next_down()
                    }) >= 0.0
            );
            assert!(calls.get() < 30, "{} evaluations", calls.get());
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
