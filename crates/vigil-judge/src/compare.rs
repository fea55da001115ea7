//! `vigil compare`: two sample sets in, a one-shot verdict out.
//!
//! A single look at fixed data, so the fixed-horizon Mann-Whitney test is
//! valid here (the peeking problem needs repeated looks). The verdict rule:
//!
//! - `ROLLBACK` when the test is significant at 1 - confidence in the bad
//!   direction and the Hodges-Lehmann shift is beyond the tolerance;
//! - `PROMOTE` when the shift's confidence interval lies inside the
//!   tolerance in the bad direction (the canary is no worse than tolerated);
//! - `INCONCLUSIVE` otherwise: the data cannot tell yet.
//!
//! The tolerance is `tolerance` x |baseline median| + `tolerance_abs`.

use serde::Serialize;
use vigil_stats::mann_whitney::Alternative;
use vigil_stats::{hodges_lehmann, mann_whitney, BucketCounts, Histogram, StatsError};

/// How to judge the comparison.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Which direction is bad.
    pub alternative: Alternative,
    /// Confidence of the interval; the test's level is 1 - confidence.
    pub confidence: f64,
    /// Relative change accepted as harmless (0.05 = 5% of the baseline median).
    pub tolerance: f64,
    /// Absolute change accepted as harmless, in input units.
    pub tolerance_abs: f64,
}

/// The one-shot verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Significantly worse, beyond the tolerance.
    Rollback,
    /// Confidently within the tolerance.
    Promote,
    /// Neither can be said from this data.
    Inconclusive,
}

/// Mann-Whitney part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct MannWhitneyReport {
    /// U of the canary.
    pub u: f64,
    /// Continuity-corrected z (positive: canary larger).
    pub z: f64,
    /// Asymptotic p-value for the alternative (scipy's `method="asymptotic"`).
    pub p_value: f64,
    /// Exact p-value given the ties, for small samples.
    pub p_exact: Option<f64>,
    /// The alternative tested.
    pub alternative: Alternative,
}

/// Hodges-Lehmann part of the report, in input units.
#[derive(Debug, Clone, Serialize)]
pub struct ShiftReport {
    /// Median of canary - baseline differences.
    pub shift: f64,
    /// Interval at `confidence`; null when the samples are too small.
    pub ci_low: Option<f64>,
    /// Interval at `confidence`; null when the samples are too small.
    pub ci_high: Option<f64>,
    /// Shift relative to the baseline median.
    pub relative_shift: Option<f64>,
    /// Interval relative to the baseline median.
    pub relative_ci_low: Option<f64>,
    /// Interval relative to the baseline median.
    pub relative_ci_high: Option<f64>,
    /// Interval confidence.
    pub confidence: f64,
}

/// Nearest-rank quantiles of one arm, in input units.
#[derive(Debug, Clone, Serialize)]
pub struct Quantiles {
    /// p50.
    pub p50: f64,
    /// p90.
    pub p90: f64,
    /// p99.
    pub p99: f64,
    /// p99.9.
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
}

/// Both arms' quantiles.
#[derive(Debug, Clone, Serialize)]
pub struct ArmQuantiles {
    /// Baseline.
    pub baseline: Quantiles,
    /// Canary.
    pub canary: Quantiles,
}

/// Everything `vigil compare` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Baseline samples.
    pub n_baseline: u64,
    /// Canary samples.
    pub n_canary: u64,
    /// The rank test.
    pub mann_whitney: MannWhitneyReport,
    /// The shift estimate.
    pub hodges_lehmann: ShiftReport,
    /// Quantiles of both arms.
    pub quantiles: ArmQuantiles,
    /// The verdict.
    pub verdict: Verdict,
    /// One sentence a person can act on.
    pub reason: String,
    /// Values were multiplied by this factor to become integers for the
    /// histograms (10^decimals of the input).
    pub scale: f64,
}

fn quantiles(h: &Histogram, scale: f64) -> Quantiles {
    let q = |p: f64| h.quantile(p).map_or(f64::NAN, |v| v as f64 / scale);
    Quantiles {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
    }
}

/// Compares two arms recorded at `scale` (values x scale as integers).
pub fn compare(
    canary: &Histogram,
    baseline: &Histogram,
    scale: f64,
    policy: &Policy,
) -> Result<Report, StatsError> {
    let mw = mann_whitney(canary, baseline)?;
    let hl = hodges_lehmann(canary, baseline, policy.confidence)?;
    let unscale = |x: Option<f64>| x.map(|v| v / scale);
    let shift = ShiftReport {
        shift: hl.shift / scale,
        ci_low: unscale(hl.ci_low),
        ci_high: unscale(hl.ci_high),
        relative_shift: hl.relative_shift,
        relative_ci_low: hl.relative_ci_low,
        relative_ci_high: hl.relative_ci_high,
        confidence: hl.confidence,
    };
    let base_q = quantiles(baseline, scale);
    let allowed = policy.tolerance * base_q.p50.abs() + policy.tolerance_abs;
    let alpha = 1.0 - policy.confidence;
    let p_value = mw.p.get(policy.alternative);
    let p_exact = mw.p_exact.map(|p| p.get(policy.alternative));
    let p = p_exact.unwrap_or(p_value);

    let bad_shift = match policy.alternative {
        Alternative::Greater => shift.shift,
        Alternative::Less => -shift.shift,
        Alternative::TwoSided => shift.shift.abs(),
    };
    let within = match (shift.ci_low, shift.ci_high, policy.alternative) {
        (_, Some(hi), Alternative::Greater) => hi <= allowed,
        (Some(lo), _, Alternative::Less) => lo >= -allowed,
        (Some(lo), Some(hi), Alternative::TwoSided) => lo >= -allowed && hi <= allowed,
        _ => false,
    };
    let verdict = if p <= alpha && bad_shift > allowed {
        Verdict::Rollback
    } else if within {
        Verdict::Promote
    } else {
        Verdict::Inconclusive
    };
    let reason = reason(verdict, &shift, &base_q, allowed, policy, p);
    Ok(Report {
        n_baseline: baseline.len(),
        n_canary: canary.len(),
        mann_whitney: MannWhitneyReport {
            u: mw.u,
            z: mw.z,
            p_value,
            p_exact,
            alternative: policy.alternative,
        },
        hodges_lehmann: shift,
        quantiles: ArmQuantiles {
            baseline: base_q,
            canary: quantiles(canary, scale),
        },
        verdict,
        reason,
        scale,
    })
}

/// "+12.3" / "-4.5" with a sensible number of digits.
pub fn signed(x: f64) -> String {
    let digits = if x.abs() >= 100.0 {
        1
    } else if x.abs() >= 1.0 {
        2
    } else {
        3
    };
    format!("{x:+.digits$}")
}

fn percent(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn reason(
    verdict: Verdict,
    s: &ShiftReport,
    base: &Quantiles,
    allowed: f64,
    policy: &Policy,
    p: f64,
) -> String {
    let relative = s
        .relative_shift
        .map(|r| format!("{} of the baseline median {}", percent(r), trim(base.p50)));
    let interval = match (s.ci_low, s.ci_high) {
        (Some(lo), Some(hi)) => format!(
            "{:.0}% CI {} to {}",
            100.0 * policy.confidence,
            signed(lo),
            signed(hi)
        ),
        _ => "too few samples for an interval".to_owned(),
    };
    let detail = [relative, Some(interval)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    let head = format!("canary is shifted by {} ({detail})", signed(s.shift));
    let tolerance = tolerance_text(allowed, policy);
    match verdict {
        Verdict::Rollback => {
            format!("{head}, beyond the {tolerance} tolerance (Mann-Whitney p = {p:.2e}): roll back")
        }
        Verdict::Promote => format!("{head}, within the {tolerance} tolerance: promote"),
        Verdict::Inconclusive => format!(
            "{head}, Mann-Whitney p = {p:.2e}: not enough evidence that it is within or beyond the {tolerance} tolerance: inconclusive"
        ),
    }
}

fn tolerance_text(allowed: f64, policy: &Policy) -> String {
    match (policy.tolerance > 0.0, policy.tolerance_abs > 0.0) {
        (true, false) => format!("{}% (= {})", trim(100.0 * policy.tolerance), trim(allowed)),
        (false, true) => trim(allowed),
        (true, true) => format!(
            "{}% + {} (= {})",
            trim(100.0 * policy.tolerance),
            trim(policy.tolerance_abs),
            trim(allowed)
        ),
        (false, false) => "0".to_owned(),
    }
}

/// A number without trailing zeros, at most 4 decimals.
pub fn trim(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// The report as a readable table.
pub fn render_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{:<10}{:>14}{:>14}", "", "baseline", "canary");
    let _ = writeln!(
        out,
        "{:<10}{:>14}{:>14}",
        "samples", r.n_baseline, r.n_canary
    );
    let (b, c) = (&r.quantiles.baseline, &r.quantiles.canary);
    for (name, bv, cv) in [
        ("p50", b.p50, c.p50),
        ("p90", b.p90, c.p90),
        ("p99", b.p99, c.p99),
        ("p99.9", b.p99_9, c.p99_9),
    ] {
        let _ = writeln!(out, "{:<10}{:>14}{:>14}", name, trim(bv), trim(cv));
    }
    let mw = &r.mann_whitney;
    let alt = match mw.alternative {
        Alternative::TwoSided => "two-sided",
        Alternative::Greater => "greater",
        Alternative::Less => "less",
    };
    let _ = writeln!(out);
    let exact = mw
        .p_exact
        .map_or(String::new(), |p| format!(", exact p = {p:.4e}"));
    let _ = writeln!(
        out,
        "Mann-Whitney U = {}, z = {:.3}, p = {:.4e} ({alt}){exact}",
        trim(mw.u),
        mw.z,
        mw.p_value
    );
    let hl = &r.hodges_lehmann;
    let ci = match (hl.ci_low, hl.ci_high) {
        (Some(lo), Some(hi)) => format!(
            "{:.0}% CI {} to {}",
            100.0 * hl.confidence,
            signed(lo),
            signed(hi)
        ),
        _ => "no interval: too few samples".to_owned(),
    };
    let rel = hl.relative_shift.map_or(String::new(), |x| {
        format!(", {} of the baseline median", percent(x))
    });
    let _ = writeln!(
        out,
        "Hodges-Lehmann shift = {} ({ci}){rel}",
        signed(hl.shift)
    );
    let _ = writeln!(out);
    let verdict = match r.verdict {
        Verdict::Rollback => "ROLLBACK",
        Verdict::Promote => "PROMOTE",
        Verdict::Inconclusive => "INCONCLUSIVE",
    };
    let _ = writeln!(out, "verdict: {verdict}");
    let _ = writeln!(out, "reason:  {}", r.reason);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn h(v: impl IntoIterator<Item = u64>) -> Histogram {
        Histogram::from_values(v).unwrap()
    }

    fn policy(alternative: Alternative) -> Policy {
        Policy {
            alternative,
            confidence: 0.95,
            tolerance: 0.05,
            tolerance_abs: 0.0,
        }
    }

    #[test]
    fn verdicts() {
        let base = h((0..2000).map(|i| 1000 + i % 200));
        let slow = h((0..500).map(|i| 1300 + i % 200));
        let same = h((0..500).map(|i| 1000 + i % 200));
        let r = compare(&slow, &base, 1.0, &policy(Alternative::Greater)).unwrap();
        assert_eq!(r.verdict, Verdict::Rollback, "{}", r.reason);
        assert!(r.reason.contains("roll back"));
        let r = compare(&same, &base, 1.0, &policy(Alternative::Greater)).unwrap();
        assert_eq!(r.verdict, Verdict::Promote, "{}", r.reason);
        // Faster canary under `less` (smaller is bad) is a rollback too.
        let r = compare(
            &h((0..500).map(|i| 700 + i % 200)),
            &base,
            1.0,
            &policy(Alternative::Less),
        )
        .unwrap();
        assert_eq!(r.verdict, Verdict::Rollback);
        // Three samples cannot tell.
        let r = compare(
            &h([1000, 1100, 1200]),
            &base,
            1.0,
            &policy(Alternative::Greater),
        )
        .unwrap();
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
    }

    #[test]
    fn trims_numbers() {
        assert_eq!(trim(12.5), "12.5");
        assert_eq!(trim(3.0), "3");
        assert_eq!(trim(0.0), "0");
        assert_eq!(signed(2.5), "+2.50");
    }
}
