//! Anytime-valid comparison of quantiles through time-uniform confidence
//! bands on each arm's distribution function (Howard & Ramdas, "Sequential
//! estimation of quantiles with applications to A/B-testing and best-arm
//! identification", Bernoulli 2022, Theorem 2):
//!
//!   P(exists t >= 1: sup_x |F_t(x) - F(x)| > eps_t) <= alpha,
//!   eps_t = 0.85 sqrt((ln ln(e t) + 0.8 ln(1612 / alpha)) / t),
//!
//! a time-uniform Dvoretzky-Kiefer-Wolfowitz inequality. Inverting the band
//! gives, for every quantile q at once and at every sample size,
//! Q(q) in [Q_t(q - eps_t), Q_t(q + eps_t)], with Q_t the empirical
//! quantile function. From histograms the lower end is read at its bucket's
//! low bound and the upper end at its bucket's high bound, so binning only
//! widens the band.
//!
//! For one fixed quantile, [`fixed_quantile_bound`] is much tighter in the
//! tails (its width scales with sqrt(q (1 - q))): at p99 the uniform band
//! needs ~75,000 samples before it bounds the quantile from above at alpha
//! 0.01 at all.
//!
//! [`QuantileShiftTest`] compares canary and baseline quantiles with the
//! fixed-quantile bounds, each arm and quantile at alpha / (2 m), so with
//! probability 1 - alpha all hold at all times; it declares a regression when the canary's
//! lower bound exceeds the tolerated multiple of the baseline's upper bound,
//! and declares the canary within tolerance when the canary's upper bound
//! lies below the tolerated multiple of the baseline's lower bound. Both
//! statements are safe to read at every look.

use serde::Serialize;

use crate::error::check_tolerance;
use crate::histogram::{BucketCounts, RankIndex};
use crate::sparse::SparseHistogram;
use crate::{check_alpha, StatsError};

/// Half-width, in probability, of the time-uniform band after `t` samples.
pub fn band_radius(t: u64, alpha: f64) -> f64 {
    if t == 0 {
        return f64::INFINITY;
    }
    let t = t as f64;
    0.85 * (((std::f64::consts::E * t).ln().ln() + 0.8 * (1612.0 / alpha).ln()) / t).sqrt()
}

/// A confidence interval for one quantile, valid at all times at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuantileBound {
    /// The quantile (0.99 = p99).
    pub quantile: f64,
    /// Point estimate (the empirical quantile), `None` when empty.
    pub estimate: Option<u64>,
    /// Lower confidence bound (0 when the band reaches below every sample).
    pub low: u64,
    /// Upper confidence bound; `None` when the band reaches above every
    /// sample (the quantile is not yet bounded).
    pub high: Option<u64>,
}

/// Time-uniform confidence interval for quantile `q` of `hist` at level
/// 1 - `alpha` (simultaneous over all quantiles and all sample sizes).
pub fn quantile_bound<H: BucketCounts + ?Sized>(hist: &H, q: f64, alpha: f64) -> QuantileBound {
    quantile_bound_indexed(&hist.rank_index(), q, alpha)
}

/// As [`quantile_bound`], on a prepared [`RankIndex`].
pub fn quantile_bound_indexed(index: &RankIndex, q: f64, alpha: f64) -> QuantileBound {
    let t = index.len();
    let eps = band_radius(t, alpha);
    let tf = t as f64;
    let lower_rank = (tf * (q - eps)).ceil();
    let upper_rank = (tf * (q + eps)).ceil();
    let low = if lower_rank >= 1.0 {
        index.at_rank(lower_rank as u64).map_or(0, |b| b.low)
    } else {
        0
    };
    let high = if upper_rank <= tf {
        index.at_rank(upper_rank.max(1.0) as u64).map(|b| b.high)
    } else {
        None
    };
    let estimate = if t == 0 {
        None
    } else {
        index
            .at_rank(((q * tf).ceil() as u64).clamp(1, t))
            .map(|b| b.value())
    };
    QuantileBound {
        quantile: q,
        estimate,
        low,
        high,
    }
}

/// Prior concentration of the count boundaries behind
/// [`fixed_quantile_bound`].
const COUNT_PRIOR: f64 = 100.0;

/// Time-uniform confidence interval for the single quantile `q` at level
/// 1 - `alpha`: much tighter in the tails than [`quantile_bound`], which
/// holds for all quantiles at once.
///
/// With x_q the true quantile, a Binomial(n, q) count B_n can be coupled so
/// that (samples below x_q) <= B_n <= (samples at or below x_q). A
/// two-sided beta-binomial mixture e-process on B_n (Robbins; the mixture
/// of Howard & Ramdas 2022, Theorem 1) keeps it in [s_min, s_max] at every n
/// with probability 1 - alpha. Then x_q <= X_(s_max + 1) and
/// x_q >= X_(s_min), read at the conservative bucket bound.
pub fn fixed_quantile_bound<H: BucketCounts + ?Sized>(
    hist: &H,
    q: f64,
    alpha: f64,
) -> QuantileBound {
    fixed_quantile_bound_indexed(&hist.rank_index(), q, alpha)
}

/// As [`fixed_quantile_bound`], on a prepared [`RankIndex`].
pub fn fixed_quantile_bound_indexed(index: &RankIndex, q: f64, alpha: f64) -> QuantileBound {
    use super::counts::{ln_share_e_value, ShareAlternative};
    let n = index.len();
    let estimate = if n == 0 {
        None
    } else {
        index
            .at_rank(((q * n as f64).ceil() as u64).clamp(1, n))
            .map(|b| b.value())
    };
    if n == 0 {
        return QuantileBound {
            quantile: q,
            estimate,
            low: 0,
            high: None,
        };
    }
    let threshold = (1.0 / alpha).ln();
    // Convex in s with its minimum (below 0) near n q.
    let e = |s: u64| {
        ln_share_e_value(
            q,
            COUNT_PRIOR * q,
            COUNT_PRIOR * (1.0 - q),
            ShareAlternative::Differs,
            s,
            n - s,
        )
    };
    let centre = ((q * n as f64).round() as u64).min(n);
    // s_max: the last s >= centre still inside.
    let s_max = if e(n) < threshold {
        n
    } else {
        let (mut ok, mut bad) = (centre, n);
        while bad - ok > 1 {
            let mid = ok + (bad - ok) / 2;
            if e(mid) < threshold {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        ok
    };
    // s_min: the first s <= centre still inside.
    let s_min = if e(0) < threshold {
        0
    } else {
        let (mut bad, mut ok) = (0u64, centre);
        while ok - bad > 1 {
            let mid = bad + (ok - bad) / 2;
            if e(mid) < threshold {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        ok
    };
    let high = if s_max < n {
        index.at_rank(s_max + 1).map(|b| b.high)
    } else {
        None
    };
    let low = if s_min >= 1 {
        index.at_rank(s_min).map_or(0, |b| b.low)
    } else {
        0
    };
    QuantileBound {
        quantile: q,
        estimate,
        low,
        high,
    }
}

/// Which direction of change is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Higher is worse (latency, CPU).
    Increase,
    /// Lower is worse (throughput, hit rate).
    Decrease,
}

/// What the bands say about one quantile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantileDecision {
    /// The canary is worse than tolerated (with confidence 1 - alpha).
    Regressed,
    /// The canary is within tolerance (with confidence 1 - alpha).
    WithinTolerance,
    /// Not enough evidence either way yet.
    Pending,
}

/// Per-quantile outcome of a [`QuantileShiftTest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuantileComparison {
    /// Canary's bound.
    pub canary: QuantileBound,
    /// Baseline's bound.
    pub baseline: QuantileBound,
    /// The decision.
    pub decision: QuantileDecision,
}

/// Sequential test of "canary's quantile q is worse than the baseline's by
/// more than the tolerance", for several quantiles, from cumulative
/// histograms of each arm.
#[derive(Debug, Clone)]
pub struct QuantileShiftTest {
    quantiles: Vec<f64>,
    alpha: f64,
    tolerance: f64,
    tolerance_abs: f64,
    direction: Direction,
    canary: SparseHistogram,
    baseline: SparseHistogram,
    canary_index: RankIndex,
    baseline_index: RankIndex,
    ever_regressed: bool,
}

impl QuantileShiftTest {
    /// A test of `quantiles` at level `alpha`; the canary may be worse by a
    /// factor `tolerance` (0.1 = 10%) plus `tolerance_abs` (histogram units)
    /// before it counts as a regression.
    pub fn new(
        quantiles: &[f64],
        alpha: f64,
        tolerance: f64,
        tolerance_abs: f64,
        direction: Direction,
    ) -> Result<Self, StatsError> {
        check_alpha("alpha", alpha)?;
        if quantiles.is_empty() || quantiles.iter().any(|&q| !(q > 0.0 && q < 1.0)) {
            return Err(StatsError::InvalidParameter {
                name: "quantiles",
                reason: "each must be in (0, 1)".into(),
            });
        }
        check_tolerance("tolerance", tolerance)?;
        check_tolerance("tolerance_abs", tolerance_abs)?;
        Ok(Self {
            quantiles: quantiles.to_vec(),
            alpha,
            tolerance,
            tolerance_abs,
            direction,
            canary: SparseHistogram::new(),
            baseline: SparseHistogram::new(),
            canary_index: RankIndex::default(),
            baseline_index: RankIndex::default(),
            ever_regressed: false,
        })
    }

    /// Adds new samples of each arm.
    pub fn update<C, B>(&mut self, canary: &C, baseline: &B)
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        for b in canary.buckets() {
            self.canary.record_n(b.low, b.count);
        }
        for b in baseline.buckets() {
            self.baseline.record_n(b.low, b.count);
        }
        self.canary_index = self.canary.rank_index();
        self.baseline_index = self.baseline.rank_index();
        let alpha = self.alpha;
        self.ever_regressed |= self
            .quantiles
            .iter()
            .any(|&q| self.decide(q, alpha).decision == QuantileDecision::Regressed);
    }

    /// The samples seen so far, canary then baseline.
    pub fn arms(&self) -> (&SparseHistogram, &SparseHistogram) {
        (&self.canary, &self.baseline)
    }

    /// Whether the bands at level `alpha` separate for quantile `q`.
    fn decide(&self, q: f64, alpha: f64) -> QuantileComparison {
        // Each arm and quantile gets alpha / (2 m): a union bound over the
        // 2 m statements, each holding at every look.
        let share = alpha / (2.0 * self.quantiles.len() as f64);
        let c = fixed_quantile_bound_indexed(&self.canary_index, q, share);
        let b = fixed_quantile_bound_indexed(&self.baseline_index, q, share);
        let (k, abs) = (1.0 + self.tolerance, self.tolerance_abs);
        let decision = match self.direction {
            Direction::Increase => {
                if b.high.is_some_and(|bh| c.low as f64 > k * bh as f64 + abs) {
                    QuantileDecision::Regressed
                } else if c.high.is_some_and(|ch| ch as f64 <= k * b.low as f64 + abs) {
                    QuantileDecision::WithinTolerance
                } else {
                    QuantileDecision::Pending
                }
            }
            Direction::Decrease => {
                // Worse means lower: regression when the canary's upper bound
                // is below the baseline's lower bound divided by the factor.
                if c.high
                    .is_some_and(|ch| (ch as f64) < (b.low as f64 - abs) / k)
                {
                    QuantileDecision::Regressed
                } else if b
                    .high
                    .is_some_and(|bh| c.low as f64 >= (bh as f64 - abs) / k)
                {
                    QuantileDecision::WithinTolerance
                } else {
                    QuantileDecision::Pending
                }
            }
        };
        QuantileComparison {
            canary: c,
            baseline: b,
            decision,
        }
    }

    /// The comparison of every quantile at the test's alpha.
    pub fn comparisons(&self) -> Vec<QuantileComparison> {
        self.quantiles
            .iter()
            .map(|&q| self.decide(q, self.alpha))
            .collect()
    }

    /// Whether some quantile regressed at the test's alpha, now or at an
    /// earlier look: the decision that is valid at every look.
    pub fn rejects(&self) -> bool {
        self.ever_regressed
    }

    /// The smallest level at which some quantile regresses on the data seen
    /// so far (bounds widen as alpha shrinks, so it is found by bisection on
    /// ln alpha). A summary of the current look; decide with [`Self::rejects`].
    pub fn p_value(&self) -> f64 {
        let regressed_at = |a: f64| {
            self.quantiles
                .iter()
                .any(|&q| self.decide(q, a).decision == QuantileDecision::Regressed)
        };
        // The largest alpha the radius formula accepts; beyond it the bands
        // no longer shrink with alpha.
        let top = 0.999;
        if !regressed_at(top) {
            return 1.0;
        }
        let (mut lo, mut hi) = ((1e-300f64).ln(), top.ln());
        if regressed_at(lo.exp()) {
            return 1e-300;
        }
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if regressed_at(mid.exp()) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;

    #[test]
    fn fixed_quantile_bound_covers_at_every_look() {
        // Uniform integers 0..10_000 (exact buckets below 2048 and within
        // 0.1% above): the true p90 is 9_000. Misses at any of 100 looks
        // must stay near alpha.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 10_000
        };
        let (runs, alpha) = (200u32, 0.05);
        let mut missed = 0u32;
        for _ in 0..runs {
            let mut h = Histogram::new();
            let mut miss = false;
            for _ in 0..100 {
                for _ in 0..50 {
                    h.record(next()).unwrap();
                }
                let b = fixed_quantile_bound(&h, 0.9, alpha);
                miss |= b.low > 9_000 || b.high.is_some_and(|hi| hi < 8_990);
            }
            missed += u32::from(miss);
        }
        let bound = alpha + 3.0 * (alpha * (1.0 - alpha) / f64::from(runs)).sqrt();
        assert!(
            f64::from(missed) / f64::from(runs) <= bound,
            "missed in {missed} of {runs} runs"
        );
        // And it is much tighter than the all-quantile band at p99.
        let h = Histogram::from_values(0..20_000).unwrap();
        let fixed = fixed_quantile_bound(&h, 0.99, 0.01);
        assert!(fixed.high.is_some(), "{fixed:?}");
        assert!(quantile_bound(&h, 0.99, 0.01).high.is_none());
    }

    #[test]
    fn band_shrinks_with_samples() {
        assert!(band_radius(100, 0.05) > band_radius(10_000, 0.05));
        assert!(band_radius(10_000, 0.01) > band_radius(10_000, 0.05));
        assert!(band_radius(0, 0.05).is_infinite());
    }

    #[test]
    fn bound_contains_estimate() {
        let h = Histogram::from_values(0..10_000).unwrap();
        let b = quantile_bound(&h, 0.5, 0.05);
        let est = b.estimate.unwrap();
        assert!(b.low <= est && est <= b.high.unwrap());
        // Radius at 10k samples, alpha 0.05 is about 0.026: the bound spans
        // roughly the 47th to 53rd percentile.
        assert!(b.low > 4500 && b.high.unwrap() < 5500, "{b:?}");
    }

    #[test]
    fn clear_regression_is_detected_and_clear_equivalence_promoted() {
        let base = Histogram::from_values((0..20_000).map(|i| 1000 + i % 1000)).unwrap();
        let slow = Histogram::from_values((0..20_000).map(|i| 2000 + i % 1000)).unwrap();
        let mut t =
            QuantileShiftTest::new(&[0.5, 0.99], 0.01, 0.1, 0.0, Direction::Increase).unwrap();
        t.update(&slow, &base);
        assert!(t.rejects());
        assert!(t.p_value() < 1e-10);
        let mut same = QuantileShiftTest::new(&[0.5], 0.01, 0.1, 0.0, Direction::Increase).unwrap();
        same.update(&base, &base);
        assert!(!same.rejects());
        assert_eq!(
            same.comparisons()[0].decision,
            QuantileDecision::WithinTolerance
        );
    }
}
