//! A drift-robust sequential test on one quantile: within each time slice,
//! does the canary put more than its share of samples above the slice's
//! pooled q-quantile?
//!
//! Pool the slice's canary and baseline samples and take the pooled
//! q-quantile T. If within the slice the arms are exchangeable, which of the
//! pooled samples lie above T is decided by the pooled values alone and the
//! arm labels are a random draw: the canary's count above T is
//! hypergeometric, the same law as "errors" split between arms with equal
//! error rates. So each slice is fed to an [`ErrorRateTest`] as requests
//! (samples) and errors (samples above T), and the evidence accumulates over
//! slices whatever drift moved both arms between them.
//!
//! Tolerance: the canary is compared after mapping each value c to
//! (c - tolerance_abs) / (1 + tolerance) (for `Increase`; the reverse for
//! `Decrease`), read at the bucket bound that makes the canary look better,
//! so bucketing only makes the test more conservative. Under the null
//! "canary is no worse than tolerated", the mapped canary is stochastically
//! no larger than the baseline and puts at most its share above T.
//!
//! Unlike a rank test of the whole distribution, this sees a regression in
//! the slowest 1-2% only when q is in the tail, which is why the quantiles
//! of interest are part of each metric's spec.

use super::counts::{ErrorRateTest, ShareAlternative};
use super::quantile::Direction;
use super::{EProcess, Evidence};
use crate::error::check_tolerance;
use crate::histogram::BucketCounts;
use crate::StatsError;

/// Sequential test that the canary's q-quantile is worse than tolerated.
#[derive(Debug, Clone)]
pub struct QuantileExceedanceTest {
    quantile: f64,
    direction: Direction,
    tolerance: f64,
    tolerance_abs: f64,
    inner: ErrorRateTest,
    /// Samples beyond the pooled threshold so far (canary, baseline).
    beyond: (u64, u64),
}

impl QuantileExceedanceTest {
    /// A test of quantile `quantile` in (0, 1); the canary may be worse by a
    /// factor `tolerance` plus `tolerance_abs` (histogram units).
    pub fn new(
        quantile: f64,
        direction: Direction,
        tolerance: f64,
        tolerance_abs: f64,
    ) -> Result<Self, StatsError> {
        if !(quantile > 0.0 && quantile < 1.0) {
            return Err(StatsError::InvalidParameter {
                name: "quantile",
                reason: format!("must be in (0, 1), got {quantile}"),
            });
        }
        check_tolerance("tolerance", tolerance)?;
        check_tolerance("tolerance_abs", tolerance_abs)?;
        Ok(Self {
            quantile,
            direction,
            tolerance,
            tolerance_abs,
            inner: ErrorRateTest::new(0.0, ShareAlternative::Exceeds)?,
            beyond: (0, 0),
        })
    }

    /// The quantile tested.
    pub fn quantile(&self) -> f64 {
        self.quantile
    }

    /// Samples beyond the pooled threshold so far (canary, baseline).
    pub fn beyond(&self) -> (u64, u64) {
        self.beyond
    }

    /// Feeds one time slice of both arms; a slice with an empty arm carries
    /// no comparison.
    pub fn update<C, B>(&mut self, canary: &C, baseline: &B)
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        let (n_c, n_b) = (canary.len(), baseline.len());
        if n_c == 0 || n_b == 0 {
            return;
        }
        let threshold = self.pooled_threshold(canary, baseline);
        let x: u64 = self
            .map_canary(canary)
            .filter(|(v, _)| *v > threshold)
            .map(|(_, c)| c)
            .sum();
        let y: u64 = self
            .map_baseline(baseline)
            .filter(|(v, _)| *v > threshold)
            .map(|(_, c)| c)
            .sum();
        self.beyond.0 += x;
        self.beyond.1 += y;
        self.inner.update(n_c, x, n_b, y);
    }
}

impl QuantileExceedanceTest {
    fn exact(&self) -> bool {
        self.tolerance == 0.0 && self.tolerance_abs == 0.0
    }

    /// The canary's values with the tolerance taken off, at the bucket bound
    /// that makes it look better, as (value, count) on a scale where larger
    /// is worse, in bucket order (increasing values for `Increase`,
    /// decreasing for `Decrease`). With no tolerance both arms are read at
    /// bucket lows, so shared buckets stay ties and labels exchangeable.
    fn map_canary<'a, C: BucketCounts + ?Sized>(
        &self,
        canary: &'a C,
    ) -> impl Iterator<Item = (f64, u64)> + 'a {
        let k = 1.0 + self.tolerance;
        let exact = self.exact();
        let (direction, tolerance_abs) = (self.direction, self.tolerance_abs);
        canary.buckets().map(move |b| {
            let v = match (direction, exact) {
                (Direction::Increase, true) => b.low as f64,
                (Direction::Decrease, true) => -(b.low as f64),
                (Direction::Increase, false) => (b.low as f64 - tolerance_abs) / k,
                (Direction::Decrease, false) => -(b.high as f64 + tolerance_abs) * k,
            };
            (v, b.count)
        })
    }

    /// The baseline's values on the same scale, in bucket order.
    fn map_baseline<'a, B: BucketCounts + ?Sized>(
        &self,
        baseline: &'a B,
    ) -> impl Iterator<Item = (f64, u64)> + 'a {
        let exact = self.exact();
        let direction = self.direction;
        baseline.buckets().map(move |b| {
            let v = if exact {
                b.low as f64
            } else {
                b.value() as f64
            };
            let v = if direction == Direction::Increase {
                v
            } else {
                -v
            };
            (v, b.count)
        })
    }

    /// The nearest-rank q-quantile of the pooled mapped values: one merge
    /// of the two arms' buckets (both sorted on the mapped scale, upwards
    /// for `Increase` and downwards for `Decrease`), no allocation.
    fn pooled_threshold<C, B>(&self, canary: &C, baseline: &B) -> f64
    where
        C: BucketCounts + ?Sized,
        B: BucketCounts + ?Sized,
    {
        let n: u64 = self.map_canary(canary).map(|(_, c)| c).sum::<u64>()
            + self.map_baseline(baseline).map(|(_, c)| c).sum::<u64>();
        let rank = ((self.quantile * n as f64).ceil() as u64).clamp(1, n.max(1));
        let upwards = self.direction == Direction::Increase;
        // Walking downwards, the same sample is the (n - rank + 1)-th.
        let target = if upwards { rank } else { n - rank + 1 };
        let mut a = self.map_canary(canary).peekable();
        let mut b = self.map_baseline(baseline).peekable();
        let mut seen = 0;
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if upwards {
                        x.0 <= y.0
                    } else {
                        x.0 >= y.0
                    }
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return f64::INFINITY,
            };
            let next = if take_a { a.next() } else { b.next() };
            let Some((v, c)) = next else {
                return f64::INFINITY;
            };
            seen += c;
            if seen >= target {
                return v;
            }
        }
    }
}

impl EProcess for QuantileExceedanceTest {
    fn evidence(&self) -> Evidence {
        self.inner.evidence()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;

    fn h(v: impl IntoIterator<Item = u64>) -> Histogram {
        Histogram::from_values(v).unwrap()
    }

    #[test]
    fn tail_only_regression_is_seen_at_p99_not_at_p50() {
        // Baseline 1..=1000; canary the same but its slowest 2% doubled.
        let base = h(1..=1000);
        let canary = h((1..=1000).map(|v| if v > 980 { v * 3 } else { v }));
        let mut p99 = QuantileExceedanceTest::new(0.99, Direction::Increase, 0.1, 0.0).unwrap();
        let mut p50 = QuantileExceedanceTest::new(0.5, Direction::Increase, 0.1, 0.0).unwrap();
        for _ in 0..30 {
            p99.update(&canary, &base);
            p50.update(&canary, &base);
        }
        assert!(p99.rejects(0.01), "p99 e = {}", p99.e_value());
        assert!(!p50.rejects(0.05), "p50 e = {}", p50.e_value());
    }

    #[test]
    fn identical_arms_give_no_evidence() {
        let base = h(1..=1000);
        let mut t = QuantileExceedanceTest::new(0.9, Direction::Increase, 0.0, 0.0).unwrap();
        for _ in 0..100 {
            t.update(&base, &base);
        }
        assert!(t.e_value() < 1.0, "{}", t.e_value());
        let mut d = QuantileExceedanceTest::new(0.1, Direction::Decrease, 0.0, 0.0).unwrap();
        let faster = h((1..=1000).map(|v| v / 2));
        for _ in 0..30 {
            d.update(&faster, &base);
        }
        assert!(d.rejects(0.01));
        assert!(QuantileExceedanceTest::new(1.0, Direction::Increase, 0.0, 0.0).is_err());
    }
}
