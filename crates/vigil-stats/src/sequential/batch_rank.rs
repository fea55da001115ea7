//! A rank e-process over time batches: robust to drift that hits both arms.
//!
//! Pooled cumulative tests compare a canary that got most of its traffic at
//! one time of day with a baseline that got it at another; when load ramps
//! and latency drifts with it, they roll back nearly every healthy canary.
//! This test compares arms only within the same time batch (a slice of a few
//! seconds in which both arms see the same conditions).
//!
//! In each batch, W = U / (n_canary n_baseline) is the share of canary-
//! baseline pairs in which the canary is worse (ties count half). When the
//! arms are exchangeable within the batch, E[W] = 1/2 whatever the batch's
//! conditions were, so for any bet lambda in (-2, 2) the factor
//! 1 + lambda (W - 1/2) is positive with expectation 1, and the running
//! product over batches is a test martingale. The e-process is the average
//! of such products over a fixed grid of bets (an average of test
//! martingales is one too), which adapts to the effect size without any
//! tuning and stays valid at every look.
//!
//! With a tolerance, the canary is compared against the baseline scaled by
//! (1 + tolerance): a pair counts as "worse" only when the canary bucket lies
//! entirely above the scaled baseline bucket, so bucketing can only make
//! the test more conservative. Under the null "canary is stochastically no
//! worse than (1 + tolerance) x baseline", E[W] <= 1/2 and bets on "worse"
//! (lambda > 0) have expectation at most 1.

use serde::Serialize;

use super::{ln_mean_exp, EProcess, Evidence};
use crate::error::check_tolerance;
use crate::histogram::BucketCounts;
use crate::mann_whitney::{joint_buckets, rank_sums, Alternative};
use crate::StatsError;

/// Bets used for one-sided tests; mirrored for two-sided ones.
const BETS: [f64; 10] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.4, 1.8];

/// Sequential rank test over time batches.
#[derive(Debug, Clone)]
pub struct BatchRankTest {
    alternative: Alternative,
    tolerance: f64,
    bets: Vec<f64>,
    ln_wealth: Vec<f64>,
    batches: u64,
    evidence: Evidence,
    last_w: Option<f64>,
}

/// Summary of a [`BatchRankTest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchRankState {
    /// Batches with samples in both arms so far.
    pub batches: u64,
    /// Current e-value.
    pub e_value: f64,
    /// Anytime-valid p-value (1 / largest e-value so far).
    pub p_value: f64,
    /// W of the latest batch.
    pub last_w: Option<f64>,
}

impl BatchRankTest {
    /// A test for `alternative` (`Greater`: canary worse means larger) with
    /// a relative `tolerance` (>= 0; only for one-sided alternatives).
    pub fn new(alternative: Alternative, tolerance: f64) -> Result<Self, StatsError> {
        check_tolerance("tolerance", tolerance)?;
        if alternative == Alternative::TwoSided && tolerance > 0.0 {
            return Err(StatsError::InvalidParameter {
                name: "tolerance",
                reason: "a two-sided batch rank test has no tolerance; use one test per direction"
                    .into(),
            });
        }
        let bets: Vec<f64> = match alternative {
            Alternative::Greater => BETS.to_vec(),
            Alternative::Less => BETS.iter().map(|b| -b).collect(),
            Alternative::TwoSided => BETS.iter().flat_map(|&b| [b, -b]).collect(),
        };
        let n = bets.len();
        Ok(Self {
            alternative,
            tolerance,
            bets,
            ln_wealth: vec![0.0; n],
            batches: 0,
            evidence: Evidence::default(),
            last_w: None,
        })
    }

    /// Feeds one time batch. A batch with an empty arm carries no
    /// comparison and is skipped (returns `false`).
    pub fn update<C, B>(&mut self, canary: &C, baseline: &B) -> bool
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        let Some(w) = self.batch_w(canary, baseline) else {
            return false;
        };
        for (lw, &bet) in self.ln_wealth.iter_mut().zip(&self.bets) {
            *lw += (bet * (w - 0.5)).ln_1p();
        }
        self.batches += 1;
        self.last_w = Some(w);
        self.evidence.set(ln_mean_exp(&self.ln_wealth));
        true
    }

    /// W for one batch: share of pairs where the canary is worse.
    fn batch_w<C, B>(&self, canary: &C, baseline: &B) -> Option<f64>
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        let (n1, n2) = (canary.len(), baseline.len());
        if n1 == 0 || n2 == 0 {
            return None;
        }
        let pairs = n1 as f64 * n2 as f64;
        if self.tolerance == 0.0 {
            // Shared buckets: exact midrank U.
            let (two_u, _) = rank_sums(&joint_buckets(canary, baseline));
            return Some(two_u as f64 / 2.0 / pairs);
        }
        let k = 1.0 + self.tolerance;
        let c: Vec<_> = canary.buckets().collect();
        let b: Vec<_> = baseline.buckets().collect();
        let mut favourable = 0.0f64;
        match self.alternative {
            Alternative::Greater => {
                // Pairs with canary.low > k * baseline.high.
                let mut j = 0;
                let mut below = 0u64;
                for cb in &c {
                    while j < b.len() && k * (b[j].high as f64) < cb.low as f64 {
                        below += b[j].count;
                        j += 1;
                    }
                    favourable += cb.count as f64 * below as f64;
                }
            }
            Alternative::Less | Alternative::TwoSided => {
                // "Worse" is smaller: the bets are negative, so W must not
                // be understated: count a pair as canary-larger unless the
                // canary is certainly below baseline / k.
                let mut j = 0;
                let mut certainly_below_pairs = 0.0f64;
                let mut above = b.iter().map(|x| x.count).sum::<u64>();
                for cb in &c {
                    while j < b.len() && (cb.high as f64) * k >= b[j].low as f64 {
                        above -= b[j].count;
                        j += 1;
                    }
                    certainly_below_pairs += cb.count as f64 * above as f64;
                }
                favourable = pairs - certainly_below_pairs;
            }
        }
        Some(favourable / pairs)
    }

    /// Current state.
    pub fn state(&self) -> BatchRankState {
        BatchRankState {
            batches: self.batches,
            e_value: self.ln_e_value().exp(),
            p_value: self.p_value(),
            last_w: self.last_w,
        }
    }
}

impl EProcess for BatchRankTest {
    fn evidence(&self) -> Evidence {
        self.evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequential::EProcess;
    use crate::Histogram;

    #[test]
    fn consistent_shift_builds_evidence() {
        let mut t = BatchRankTest::new(Alternative::Greater, 0.0).unwrap();
        let base = Histogram::from_values(100..200).unwrap();
        let slow = Histogram::from_values(130..230).unwrap();
        for _ in 0..40 {
            assert!(t.update(&slow, &base));
        }
        assert!(t.rejects(0.01), "{:?}", t.state());
        let mut other_way = BatchRankTest::new(Alternative::Less, 0.0).unwrap();
        for _ in 0..40 {
            other_way.update(&slow, &base);
        }
        assert!(!other_way.rejects(0.5));
    }

    #[test]
    fn tolerance_absorbs_small_shifts() {
        let base = Histogram::from_values(1000..2000).unwrap();
        let slightly = Histogram::from_values(1050..2050).unwrap();
        let mut t = BatchRankTest::new(Alternative::Greater, 0.10).unwrap();
        for _ in 0..100 {
            t.update(&slightly, &base);
        }
        assert!(!t.rejects(0.05), "{:?}", t.state());
    }

    #[test]
    fn empty_batches_are_skipped() {
        let mut t = BatchRankTest::new(Alternative::TwoSided, 0.0).unwrap();
        assert!(!t.update(&Histogram::new(), &Histogram::from_values([1]).unwrap()));
        assert_eq!(t.state().batches, 0);
        assert!(BatchRankTest::new(Alternative::TwoSided, 0.1).is_err());
    }
}
