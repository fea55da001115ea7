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

use super::cumulative::CumulativeHistogram;
use crate::error::check_tolerance;
use crate::histogram::{Bucket, BucketCounts, RankIndex};
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
    bound_at_ranks(q, estimate, n, bisection_ranks(n, q, alpha), |r| {
        index.at_rank(r)
    })
}

/// The bound of quantile `q` whose order-statistic ranks among `n` samples
/// are `(s_min, s_max)`: `X_(s_min)` read at its bucket's low end and
/// `X_(s_max + 1)` at its high end (none past the last sample), through
/// `at_rank` (1-based).
fn bound_at_ranks(
    q: f64,
    estimate: Option<u64>,
    n: u64,
    (s_min, s_max): (u64, u64),
    at_rank: impl Fn(u64) -> Option<Bucket>,
) -> QuantileBound {
    let high = if s_max < n {
        at_rank(s_max + 1).map(|b| b.high)
    } else {
        None
    };
    let low = if s_min >= 1 {
        at_rank(s_min).map_or(0, |b| b.low)
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

/// The count boundaries (s_min, s_max) of [`fixed_quantile_bound`] at
/// sample size `n` >= 1, by bisection from scratch.
fn bisection_ranks(n: u64, q: f64, alpha: f64) -> (u64, u64) {
    use super::counts::{ln_share_e_value, ShareAlternative};
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
    (s_min, s_max)
}

/// The count boundaries [`fixed_quantile_bound`] computes for one quantile
/// and level, kept from one look to the next: as the sample size grows the
/// search for the new boundaries starts from the old ones (scaled), so a look
/// costs a few e-value evaluations instead of two bisections over the whole
/// sample. The boundaries are exactly those of [`fixed_quantile_bound`] (the
/// e-value is convex in the count, so the boundary the bisection finds is the
/// only crossing of the threshold on its side, whichever way it is reached).
#[derive(Debug, Clone)]
pub struct FixedQuantileRanks {
    q: f64,
    threshold: f64,
    a: f64,
    b: f64,
    ln_q: f64,
    ln_not_q: f64,
    ln_beta_prior: f64,
    /// The last (n, s_min, s_max).
    last: Option<(u64, u64, u64)>,
    /// The last argument of the log-gamma of the posterior total and its
    /// value: the same for every count at one sample size (almost always).
    total_lgamma: (f64, f64),
}

impl FixedQuantileRanks {
    /// Boundaries for quantile `q` in (0, 1) at level 1 - `alpha`.
    pub fn new(q: f64, alpha: f64) -> Self {
        let (a, b) = (COUNT_PRIOR * q, COUNT_PRIOR * (1.0 - q));
        Self {
            q,
            threshold: (1.0 / alpha).ln(),
            a,
            b,
            ln_q: q.ln(),
            ln_not_q: (1.0 - q).ln(),
            ln_beta_prior: crate::special::ln_beta(a, b),
            last: None,
            total_lgamma: (f64::NAN, f64::NAN),
        }
    }

    /// The quantile.
    pub fn quantile(&self) -> f64 {
        self.q
    }

    /// Whether count `s` of `n` is inside the boundaries: the two-sided
    /// beta-binomial e-value of `fixed_quantile_bound`, term for term.
    fn inside(&mut self, s: u64, n: u64) -> bool {
        use crate::special::ln_gamma;
        let (x, y) = (s as f64, (n - s) as f64);
        let ln_null = x * self.ln_q + y * self.ln_not_q;
        let (ax, by) = (self.a + x, self.b + y);
        let sum = ax + by;
        if sum.to_bits() != self.total_lgamma.0.to_bits() {
            self.total_lgamma = (sum, ln_gamma(sum));
        }
        let ln_mix = ln_gamma(ax) + ln_gamma(by) - self.total_lgamma.1 - self.ln_beta_prior;
        ln_mix - ln_null < self.threshold
    }

    /// (s_min, s_max) at sample size `n` >= 1.
    pub fn ranks(&mut self, n: u64) -> (u64, u64) {
        let centre = ((self.q * n as f64).round() as u64).min(n);
        let guess = |s: u64| -> u64 {
            match self.last {
                Some((n0, ..)) if n0 > 0 => {
                    let shift = (s as f64 - self.q * n0 as f64) * (n as f64 / n0 as f64).sqrt();
                    (self.q * n as f64 + shift).round().max(0.0) as u64
                }
                _ => centre,
            }
        };
        let (g_min, g_max) = match self.last {
            Some((_, s_min, s_max)) => (guess(s_min), guess(s_max)),
            None => (centre, centre),
        };
        let s_max = self.search_max(n, centre, g_max);
        let s_min = self.search_min(n, centre, g_min);
        self.last = Some((n, s_min, s_max));
        (s_min, s_max)
    }

    /// n if n itself is inside, else the last s >= centre inside (centre
    /// taken as inside, as the bisection takes it).
    fn search_max(&mut self, n: u64, centre: u64, guess: u64) -> u64 {
        if centre >= n {
            return n;
        }
        let g = guess.clamp(centre, n - 1);
        let (mut ok, mut bad);
        if self.inside(g, n) {
            ok = g;
            let mut step = 1;
            loop {
                let s = ok + step;
                if s >= n {
                    if self.inside(n, n) {
                        return n;
                    }
                    bad = n;
                    break;
                }
                if self.inside(s, n) {
                    ok = s;
                    step *= 2;
                } else {
                    bad = s;
                    break;
                }
            }
        } else {
            bad = g;
            let mut step = 1;
            loop {
                if bad - centre <= step {
                    ok = centre;
                    break;
                }
                let s = bad - step;
                if self.inside(s, n) {
                    ok = s;
                    break;
                }
                bad = s;
                step *= 2;
            }
        }
        while bad - ok > 1 {
            let mid = ok + (bad - ok) / 2;
            if self.inside(mid, n) {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        ok
    }

    /// 0 if 0 is inside, else the first s <= centre inside.
    fn search_min(&mut self, n: u64, centre: u64, guess: u64) -> u64 {
        if centre == 0 {
            return 0;
        }
        let g = guess.clamp(1, centre);
        let (mut bad, mut ok);
        if self.inside(g, n) {
            ok = g;
            let mut step = 1;
            loop {
                if ok <= step {
                    if self.inside(0, n) {
                        return 0;
                    }
                    bad = 0;
                    break;
                }
                let s = ok - step;
                if self.inside(s, n) {
                    ok = s;
                    step *= 2;
                } else {
                    bad = s;
                    break;
                }
            }
        } else {
            bad = g;
            let mut step = 1;
            loop {
                let s = bad + step;
                if s >= centre {
                    ok = centre;
                    break;
                }
                if self.inside(s, n) {
                    ok = s;
                    break;
                }
                bad = s;
                step *= 2;
            }
        }
        while ok - bad > 1 {
            let mid = bad + (ok - bad) / 2;
            if self.inside(mid, n) {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        ok
    }

    /// [`fixed_quantile_bound`] of `hist`, with the boundaries found from
    /// the previous look's.
    pub fn bound<H: BucketCounts + ?Sized>(&mut self, hist: &H) -> QuantileBound {
        let q = self.q;
        let n = hist.len();
        if n == 0 {
            return QuantileBound {
                quantile: q,
                estimate: None,
                low: 0,
                high: None,
            };
        }
        let estimate = hist
            .bucket_at_rank(((q * n as f64).ceil() as u64).clamp(1, n))
            .map(|b| b.value());
        let ranks = self.ranks(n);
        bound_at_ranks(q, estimate, n, ranks, |r| hist.bucket_at_rank(r))
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

/// How two quantile bounds decide: the canary may be worse than the
/// baseline by a factor `1 + tolerance` plus `tolerance_abs` (histogram
/// units) before it counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftRule {
    tolerance: f64,
    tolerance_abs: f64,
    direction: Direction,
}

impl ShiftRule {
    /// A rule tolerating `tolerance` (0.1 = 10%) plus `tolerance_abs`.
    pub fn new(
        tolerance: f64,
        tolerance_abs: f64,
        direction: Direction,
    ) -> Result<Self, StatsError> {
        check_tolerance("tolerance", tolerance)?;
        check_tolerance("tolerance_abs", tolerance_abs)?;
        Ok(Self {
            tolerance,
            tolerance_abs,
            direction,
        })
    }

    /// Whether the bands separate: a regression when the canary's lower
    /// bound exceeds the tolerated multiple of the baseline's upper bound,
    /// within tolerance when the canary's upper bound lies below the
    /// tolerated multiple of the baseline's lower bound.
    pub fn decide(&self, c: QuantileBound, b: QuantileBound) -> QuantileComparison {
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
}

fn check_quantiles(quantiles: &[f64]) -> Result<(), StatsError> {
    if quantiles.is_empty() || quantiles.iter().any(|&q| !(q > 0.0 && q < 1.0)) {
        return Err(StatsError::InvalidParameter {
            name: "quantiles",
            reason: "each must be in (0, 1)".into(),
        });
    }
    Ok(())
}

/// The bounds a [`QuantileShiftTest`] compares, for arms the caller keeps:
/// each arm and quantile at alpha / (2 m), every look's boundary search
/// started from the previous look's ([`FixedQuantileRanks`]).
#[derive(Debug, Clone)]
pub struct QuantileBands {
    canary: Vec<FixedQuantileRanks>,
    baseline: Vec<FixedQuantileRanks>,
}

impl QuantileBands {
    /// Reads its state (a word of each cache line) and returns a value made
    /// of it (for `std::hint::black_box`): see
    /// [`super::cumulative::CumulativeHistogram::touch`].
    pub fn touch(&self) -> u64 {
        self.canary
            .iter()
            .chain(&self.baseline)
            .fold(0, |acc, r| acc ^ r.q.to_bits() ^ r.total_lgamma.0.to_bits())
    }

    /// Bands for `quantiles`, simultaneously at level 1 - `alpha`.
    pub fn new(quantiles: &[f64], alpha: f64) -> Result<Self, StatsError> {
        check_alpha("alpha", alpha)?;
        check_quantiles(quantiles)?;
        // A union bound over the 2 m statements, each holding at every look.
        let share = alpha / (2.0 * quantiles.len() as f64);
        let ranks: Vec<_> = quantiles
            .iter()
            .map(|&q| FixedQuantileRanks::new(q, share))
            .collect();
        Ok(Self {
            canary: ranks.clone(),
            baseline: ranks,
        })
    }

    /// The (canary, baseline) bounds of each quantile, in order.
    pub fn bounds<'a, C, B>(
        &'a mut self,
        canary: &'a C,
        baseline: &'a B,
    ) -> impl Iterator<Item = (QuantileBound, QuantileBound)> + 'a
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        self.canary
            .iter_mut()
            .zip(self.baseline.iter_mut())
            .map(|(c, b)| (c.bound(canary), b.bound(baseline)))
    }
}

/// Sequential test of "canary's quantile q is worse than the baseline's by
/// more than the tolerance", for several quantiles, from cumulative
/// histograms of each arm.
#[derive(Debug, Clone)]
pub struct QuantileShiftTest {
    quantiles: Vec<f64>,
    rule: ShiftRule,
    canary: CumulativeHistogram,
    baseline: CumulativeHistogram,
    bands: QuantileBands,
    /// The comparisons on the data seen so far.
    latest: Vec<QuantileComparison>,
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
        let bands = QuantileBands::new(quantiles, alpha)?;
        let rule = ShiftRule::new(tolerance, tolerance_abs, direction)?;
        let mut test = Self {
            quantiles: quantiles.to_vec(),
            rule,
            canary: CumulativeHistogram::new(),
            baseline: CumulativeHistogram::new(),
            bands,
            latest: Vec::new(),
            ever_regressed: false,
        };
        test.look();
        Ok(test)
    }

    /// The same test on arms whose buckets each merge `2^bits` of the
    /// shared layout's ([`CumulativeHistogram::coarser`]): wider bounds,
    /// still valid. Data seen so far is dropped.
    #[must_use]
    pub fn coarser(mut self, bits: u32) -> Self {
        self.canary = CumulativeHistogram::coarser(bits);
        self.baseline = CumulativeHistogram::coarser(bits);
        self.look();
        self
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
        self.look();
        self.ever_regressed |= self
            .latest
            .iter()
            .any(|c| c.decision == QuantileDecision::Regressed);
    }

    fn look(&mut self) {
        let rule = self.rule;
        self.latest = self
            .bands
            .bounds(&self.canary, &self.baseline)
            .map(|(c, b)| rule.decide(c, b))
            .collect();
    }

    /// The samples seen so far, canary then baseline.
    pub fn arms(&self) -> (&CumulativeHistogram, &CumulativeHistogram) {
        (&self.canary, &self.baseline)
    }

    /// Whether the bands at level `alpha` separate for quantile `q`.
    fn decide(&self, q: f64, alpha: f64) -> QuantileComparison {
        // Each arm and quantile gets alpha / (2 m): a union bound over the
        // 2 m statements, each holding at every look.
        let share = alpha / (2.0 * self.quantiles.len() as f64);
        let c = fixed_quantile_bound(&self.canary, q, share);
        let b = fixed_quantile_bound(&self.baseline, q, share);
        self.rule.decide(c, b)
    }

    /// The comparison of every quantile at the test's alpha.
    pub fn comparisons(&self) -> Vec<QuantileComparison> {
        self.latest.clone()
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
    fn warm_started_ranks_equal_the_bisection() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for q in [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999] {
            for alpha in [1e-9, 0.0025, 0.01, 0.1, 0.45] {
                // Every n up to 600, then growing by random steps (as slices
                // arrive) with an occasional long jump (a catch-up).
                let mut ranks = FixedQuantileRanks::new(q, alpha);
                let mut n = 0;
                while n < 400_000 {
                    n += if n < 600 {
                        1
                    } else if next(50) == 0 {
                        next(50_000) + 1
                    } else {
                        next(300) + 1
                    };
                    assert_eq!(
                        ranks.ranks(n),
                        bisection_ranks(n, q, alpha),
                        "q {q} alpha {alpha} n {n}"
                    );
                }
                // A fresh search (no previous look) at a large n.
                let mut cold = FixedQuantileRanks::new(q, alpha);
                assert_eq!(cold.ranks(123_457), bisection_ranks(123_457, q, alpha));
            }
        }
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
