//! Anytime-valid sequential tests: each is updated with new data and can be
//! asked for its current e-value or confidence sequence at any time, as often
//! as a rollout controller polls, without inflating the false-rollback rate.
//!
//! - [`counts`]: Dirichlet-multinomial / beta-binomial mixture e-values for
//!   error counts.
//! - [`quantile`]: time-uniform quantile bands, a sequential test on p50, p99...
//! - [`cumulative`]: the histogram a test's cumulative (or rolling) arm
//!   is kept in: slices added and removed in O(their buckets).
//! - [`exceedance`]: per-slice tail exceedances of the pooled q-quantile, a
//!   drift-robust sequential test of one quantile.
//! - [`proportion`]: a time-uniform confidence sequence for an error rate.
//! - [`rank_shift`]: a normal-scores rank e-process over time slices,
//!   the judge's test of a whole-distribution shift.
//! - [`batch_rank`]: a rank e-process over per-batch comparisons, valid under
//!   drift that hits both arms.
//! - [`combine`]: e-value averaging and Holm's procedure across metrics.

pub mod batch_rank;
pub mod combine;
pub mod counts;
pub mod cumulative;
pub mod exceedance;
pub mod proportion;
pub mod quantile;
pub mod rank_shift;

/// What an anytime-valid test has gathered so far: its current e-value and
/// the largest one seen, kept in logs (e-values overflow doubles quickly).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    ln_e: f64,
    max_ln_e: f64,
}

impl Evidence {
    /// Records the log e-value after an update. Public so that a caller
    /// combining tests into a derived e-process (an average of e-processes
    /// on one filtration) can track its running maximum the same way.
    pub fn set(&mut self, ln_e: f64) {
        self.ln_e = ln_e;
        self.max_ln_e = self.max_ln_e.max(ln_e);
    }
}

impl EProcess for Evidence {
    fn evidence(&self) -> Evidence {
        *self
    }
}

/// A test that is updated with data and gives an e-value at any time.
///
/// By Ville's inequality P(sup_t E_t >= 1/alpha) <= alpha under the null, so
/// `1 / max_t E_t` is a p-value valid at every look and `rejects(alpha)` may
/// be asked after every update.
pub trait EProcess {
    /// The evidence so far.
    fn evidence(&self) -> Evidence;

    /// ln of the current e-value.
    fn ln_e_value(&self) -> f64 {
        self.evidence().ln_e
    }

    /// The current e-value.
    fn e_value(&self) -> f64 {
        self.evidence().ln_e.exp()
    }

    /// Anytime-valid p-value: 1 / (largest e-value so far), at most 1.
    fn p_value(&self) -> f64 {
        (-self.evidence().max_ln_e).exp().min(1.0)
    }

    /// Whether the null is rejected at `alpha`, now or at an earlier look.
    fn rejects(&self, alpha: f64) -> bool {
        self.p_value() <= alpha
    }
}

/// ln of the mean of exp(x) over `xs`, without overflow: the log e-value of
/// an equally weighted mixture of test martingales given their logs.
pub(crate) fn ln_mean_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    // A term below e^-40 (4.2e-18) adds less than half an ulp to the sum,
    // which holds the largest term, 1: its exp is not computed (a grid's
    // far ends sit hundreds below its best point once data has come in,
    // and these exps were 3-4% of a judge tick, docs/BENCHMARKS.md). The
    // terms left out change the sum by less than len * 4.2e-18 relative
    // (for the grids here, of 10 to 20 points, less than half an ulp of
    // 1: at most the rounding of its last bit).
    let s: f64 = xs
        .iter()
        .map(|&l| l - m)
        .filter(|&d| d > -SKIP_BELOW)
        .map(f64::exp)
        .sum();
    m + (s / xs.len() as f64).ln()
}

/// Terms of [`ln_mean_exp`] this far below its largest are left out.
const SKIP_BELOW: f64 = 40.0;

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Leaving out the terms below e^-40 of the largest moves the
        /// result by at most the rounding of the sum's last bit, against
        /// every term summed; a grid with none that far down is exact.
        #[test]
        fn ln_mean_exp_leaves_out_only_what_rounding_would(
            centre in -1e4..1e4f64,
            spread in proptest::prop_oneof![0.0..30.0f64, 0.0..1e3f64],
            offsets in proptest::collection::vec(0.0..1.0f64, 1..20),
        ) {
            let xs: Vec<f64> = offsets.iter().map(|o| centre - o * spread).collect();
            let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let every: f64 = xs.iter().map(|&l| (l - m).exp()).sum();
            let want = m + (every / xs.len() as f64).ln();
            let got = ln_mean_exp(&xs);
            if xs.iter().all(|&l| l - m > -SKIP_BELOW) {
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits());
            } else {
                // ln of a sum within one ulp of 1 or more: within 2.3e-16
                // absolute, plus the rounding of m + it.
                let tolerance = 4.5e-16 + m.abs() * f64::EPSILON;
                proptest::prop_assert!((got - want).abs() <= tolerance, "{} vs {}", got, want);
            }
        }
    }

    #[test]
    fn ln_mean_exp_of_infinite_and_empty_grids() {
        assert_eq!(ln_mean_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(
            ln_mean_exp(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
            f64::NEG_INFINITY
        );
        assert_eq!(ln_mean_exp(&[0.0, f64::INFINITY]), f64::INFINITY);
        // The far term counts for nothing at double precision.
        assert_eq!(ln_mean_exp(&[0.0, -1e6]), (0.5f64).ln());
    }
}
