//! The Hodges-Lehmann shift estimate and its distribution-free interval.
//!
//! The estimate is the median of all n_canary x n_baseline differences
//! (canary - baseline); the interval at level 1 - a is [D_(C), D_(N+1-C)]
//! with D_(k) the k-th smallest difference, N = n_canary n_baseline and
//! C = floor(N/2 - z_{1-a/2} sigma_U) (Lehmann 1963; Hollander & Wolfe,
//! ch. 4), sigma_U = sqrt(n_canary n_baseline (n + 1) / 12), the standard
//! deviation of U without ties. Not the tie-corrected one: which values tie
//! across the arms changes as the canary is shifted, so a tie-corrected C
//! would make the interval move differently from the data (a shift of the
//! canary must shift the interval by exactly as much, a property test). Ties
//! only shrink the true variance, so the untied C is conservative.
//!
//! No difference is ever materialised: the k-th smallest one is found by
//! bisection over integer candidates, each step counting pairs with
//! difference <= d in one two-pointer walk over the buckets. That is
//! O(buckets x 64) for any sample size; with buckets of width one (integers
//! below 2048) the result equals the brute-force median of raw differences.

use serde::Serialize;

use crate::histogram::BucketCounts;
use crate::mann_whitney::{check_sizes, sigma_u};
use crate::{normal, StatsError};

/// The shift estimate with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HodgesLehmann {
    /// Median of canary - baseline differences, in the histograms' unit.
    pub shift: f64,
    /// Lower end of the interval; `None` when the samples are too small to
    /// reach the requested confidence with any pair of differences.
    pub ci_low: Option<f64>,
    /// Upper end of the interval (see `ci_low`).
    pub ci_high: Option<f64>,
    /// Confidence level of the interval.
    pub confidence: f64,
    /// `shift` relative to the baseline median (0.1 = 10% higher); `None`
    /// when the baseline median is 0.
    pub relative_shift: Option<f64>,
    /// Interval relative to the baseline median.
    pub relative_ci_low: Option<f64>,
    /// Interval relative to the baseline median.
    pub relative_ci_high: Option<f64>,
}

/// Sorted (value, count) pairs of one arm's buckets.
fn points<H: BucketCounts + ?Sized>(h: &H) -> Vec<(i128, u64)> {
    h.buckets()
        .map(|b| (i128::from(b.value()), b.count))
        .collect()
}

/// Number of pairs with canary - baseline <= d.
fn count_le(canary: &[(i128, u64)], baseline: &[(i128, u64)], d: i128) -> u128 {
    // For canary value x, count baseline values y >= x - d. The threshold
    // grows with x, so the pointer over baseline only moves forward.
    let total_b: u128 = baseline.iter().map(|&(_, c)| u128::from(c)).sum();
    let mut below: u128 = 0; // baseline samples with y < threshold
    let mut j = 0;
    let mut pairs: u128 = 0;
    for &(x, cx) in canary {
        let threshold = x - d;
        while j < baseline.len() && baseline[j].0 < threshold {
            below += u128::from(baseline[j].1);
            j += 1;
        }
        pairs += u128::from(cx) * (total_b - below);
    }
    pairs
}

/// The k-th smallest difference (1-based).
fn kth_difference(canary: &[(i128, u64)], baseline: &[(i128, u64)], k: u128) -> i128 {
    let (Some(c_first), Some(c_last), Some(b_first), Some(b_last)) = (
        canary.first(),
        canary.last(),
        baseline.first(),
        baseline.last(),
    ) else {
        return 0;
    };
    // Invariant: count_le(lo) < k <= count_le(hi).
    let mut lo = c_first.0 - b_last.0 - 1;
    let mut hi = c_last.0 - b_first.0;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if count_le(canary, baseline, mid) >= k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// Hodges-Lehmann shift of `canary` against `baseline` with an interval at
/// `confidence` (e.g. 0.95).
pub fn hodges_lehmann<C, B>(
    canary: &C,
    baseline: &B,
    confidence: f64,
) -> Result<HodgesLehmann, StatsError>
where
    C: BucketCounts + ?Sized,
    B: BucketCounts + ?Sized,
{
    crate::error::check_alpha("confidence", confidence)?;
    let (n1, n2) = (canary.len(), baseline.len());
    check_sizes(n1, n2)?;
    let c = points(canary);
    let b = points(baseline);
    let big_n = u128::from(n1) * u128::from(n2);

    let shift = if big_n % 2 == 1 {
        kth_difference(&c, &b, big_n.div_ceil(2)) as f64
    } else {
        let lo = kth_difference(&c, &b, big_n / 2);
        let hi = kth_difference(&c, &b, big_n / 2 + 1);
        (lo as f64 + hi as f64) / 2.0
    };

    let z = normal::quantile(1.0 - (1.0 - confidence) / 2.0);
    let sigma = sigma_u(0, n1, n2);
    let c_alpha = (big_n as f64 / 2.0 - z * sigma).floor();
    let (ci_low, ci_high) = if c_alpha >= 1.0 {
        let k = c_alpha as u128;
        (
            Some(kth_difference(&c, &b, k) as f64),
            Some(kth_difference(&c, &b, big_n + 1 - k) as f64),
        )
    } else {
        (None, None)
    };

    let base_median = baseline
        .quantile(0.5)
        .map(|m| m as f64)
        .filter(|&m| m > 0.0);
    let rel = |x: Option<f64>| -> Option<f64> { Some(x? / base_median?) };
    Ok(HodgesLehmann {
        shift,
        ci_low,
        ci_high,
        confidence,
        relative_shift: rel(Some(shift)),
        relative_ci_low: rel(ci_low),
        relative_ci_high: rel(ci_high),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;

    fn h(values: &[u64]) -> Histogram {
        Histogram::from_values(values.iter().copied()).unwrap()
    }

    fn brute(canary: &[u64], baseline: &[u64]) -> Vec<i128> {
        let mut d: Vec<i128> = canary
            .iter()
            .flat_map(|&x| baseline.iter().map(move |&y| i128::from(x) - i128::from(y)))
            .collect();
        d.sort_unstable();
        d
    }

    #[test]
    fn matches_brute_force_on_small_samples() {
        let canary = [3, 9, 9, 12, 40, 41, 100];
        let baseline = [1, 2, 9, 10, 11, 30];
        let d = brute(&canary, &baseline);
        let r = hodges_lehmann(&h(&canary), &h(&baseline), 0.95).unwrap();
        // 42 differences: median is the mean of the 21st and 22nd.
        assert_eq!(r.shift, (d[20] + d[21]) as f64 / 2.0);
        let (c, b) = (points(&h(&canary)), points(&h(&baseline)));
        for k in 1..=d.len() {
            assert_eq!(kth_difference(&c, &b, k as u128), d[k - 1], "k={k}");
        }
    }

    #[test]
    fn interval_moves_with_the_canary_even_when_cross_arm_ties_change() {
        // Shifting the canary by 100 removes every tie with the baseline; a
        // tie-corrected interval would change width, this one must not.
        let canary = [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11];
        let baseline = [3, 4, 5, 5, 6, 7, 7, 8, 12, 13, 14, 15];
        let before = hodges_lehmann(&h(&canary), &h(&baseline), 0.9).unwrap();
        let moved: Vec<u64> = canary.iter().map(|x| x + 100).collect();
        let after = hodges_lehmann(&h(&moved), &h(&baseline), 0.9).unwrap();
        assert_eq!(after.shift, before.shift + 100.0);
        assert_eq!(after.ci_low, before.ci_low.map(|x| x + 100.0));
        assert_eq!(after.ci_high, before.ci_high.map(|x| x + 100.0));
    }

    #[test]
    fn tiny_samples_have_no_interval() {
        let r = hodges_lehmann(&h(&[5]), &h(&[3]), 0.95).unwrap();
        assert_eq!(r.shift, 2.0);
        assert_eq!(r.ci_low, None);
    }
}
