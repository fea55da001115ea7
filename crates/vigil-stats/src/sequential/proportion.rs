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
            // Each step is a function of (inside, outside) alone: once a
            // step changes neither (the ends are adjacent doubles, after
            // about 60 steps), the remaining ones would not either.
            if (inside.to_bits(), outside.to_bits()) == before {
                break;
            }
        }
        inside
    };
    let low = if successes == 0 || f(0.0_f64.max(f64::MIN_POSITIVE)) < 0.0 {
        0.0
    } else {
        bisect(centre, 0.0)
    };
    let high = if successes == n || f(1.0 - f64::EPSILON) < 0.0 {
        1.0
    } else {
        bisect(centre, 1.0)
    };
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

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
