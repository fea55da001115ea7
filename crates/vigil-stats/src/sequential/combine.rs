//! Combining the evidence of several metrics.
//!
//! - The weighted average of e-values is an e-value under any dependence
//!   between the metrics (Vovk & Wang 2021): it gives the overall decision.
//! - Holm's step-down procedure names which metrics failed while keeping the
//!   family-wise error rate at alpha, also under any dependence; applied to
//!   anytime-valid p-values it stays valid at every look.

use crate::StatsError;

/// Weighted average of e-values; weights need not sum to one (they are
/// normalised) but must be >= 0 with a positive sum.
pub fn mean_e_value(e_values: &[f64], weights: &[f64]) -> Result<f64, StatsError> {
    if e_values.len() != weights.len() {
        return Err(StatsError::InvalidParameter {
            name: "weights",
            reason: "one weight per e-value".into(),
        });
    }
    if weights.iter().any(|&w| !(w.is_finite() && w >= 0.0)) {
        return Err(StatsError::InvalidParameter {
            name: "weights",
            reason: "must be finite and >= 0".into(),
        });
    }
    if e_values.iter().any(|&e| e.is_nan() || e < 0.0) {
        return Err(StatsError::InvalidParameter {
            name: "e_values",
            reason: "must be >= 0".into(),
        });
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(StatsError::InvalidParameter {
            name: "weights",
            reason: "must have a positive sum".into(),
        });
    }
    Ok(e_values
        .iter()
        .zip(weights)
        .map(|(e, w)| e * w)
        .sum::<f64>()
        / total)
}

/// Holm's procedure: which hypotheses are rejected at family-wise level
/// `alpha`. NaN p-values are treated as 1 (never rejected).
pub fn holm(p_values: &[f64], alpha: f64) -> Vec<bool> {
    holm_weighted(p_values, &vec![1.0; p_values.len()], alpha)
}

/// Weighted Holm (Holm 1979, weighted form): hypothesis i is tested at
/// alpha w_i / (sum of the weights of those not yet rejected), in order of
/// p_i / w_i. With equal weights it is [`holm`]; a hypothesis of weight 0
/// is never rejected. Its first step, p_i <= alpha w_i / sum(w), implies
/// that the weighted mean of the e-values 1 / p_i reaches 1 / alpha, so a
/// decision taken on that mean covers every rejection named here.
pub fn holm_weighted(p_values: &[f64], weights: &[f64], alpha: f64) -> Vec<bool> {
    let m = p_values.len();
    let p = |i: usize| {
        if p_values[i].is_nan() {
            1.0
        } else {
            p_values[i]
        }
    };
    let w = |i: usize| {
        weights
            .get(i)
            .copied()
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(0.0)
    };
    let mut rejected = vec![false; m];
    let mut remaining: f64 = (0..m).map(w).sum();
    let mut order: Vec<usize> = (0..m).filter(|&i| w(i) > 0.0).collect();
    order.sort_by(|&a, &b| (p(a) / w(a)).total_cmp(&(p(b) / w(b))));
    for i in order {
        if remaining > 0.0 && p(i) <= alpha * w(i) / remaining {
            rejected[i] = true;
            remaining -= w(i);
        } else {
            break;
        }
    }
    rejected
}

/// Holm-adjusted p-values (monotone), each comparable directly with alpha.
pub fn holm_adjusted(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let p = |i: usize| {
        if p_values[i].is_nan() {
            1.0
        } else {
            p_values[i]
        }
    };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p(a).total_cmp(&p(b)));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p(i)).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down() {
        // Sorted: 0.001 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop.
        assert_eq!(
            holm(&[0.01, 0.04, 0.001, 0.03], 0.05),
            vec![true, false, true, false]
        );
        assert_eq!(holm(&[], 0.05), Vec::<bool>::new());
        assert_eq!(holm(&[f64::NAN, 0.0], 0.05), vec![false, true]);
        let adj = holm_adjusted(&[0.01, 0.04, 0.001, 0.03]);
        assert_eq!(adj, vec![0.03, 0.06, 0.004, 0.06]);
        for (a, r) in adj.iter().zip(holm(&[0.01, 0.04, 0.001, 0.03], 0.05)) {
            assert_eq!(*a <= 0.05, r);
        }
    }

    #[test]
    fn weighted_holm_with_equal_weights_is_holm() {
        let p = [0.01, 0.04, 0.001, 0.03, f64::NAN];
        assert_eq!(holm_weighted(&p, &[1.0; 5], 0.05), holm(&p, 0.05));
        assert_eq!(holm_weighted(&p, &[0.2; 5], 0.05), holm(&p, 0.05));
        // Weight moves alpha: 0.02 passes at weight 0.5 of 1 (0.025), not
        // at weight 0.25 of 1 (0.0125).
        assert_eq!(
            holm_weighted(&[0.02, 0.5], &[0.5, 0.5], 0.05),
            vec![true, false]
        );
        assert_eq!(
            holm_weighted(&[0.02, 0.5], &[0.25, 0.75], 0.05),
            vec![false, false]
        );
        assert_eq!(
            holm_weighted(&[0.0, 0.0], &[0.0, 1.0], 0.05),
            vec![false, true]
        );
    }

    #[test]
    fn mean_e_value_is_weighted() {
        assert_eq!(mean_e_value(&[100.0, 0.0], &[1.0, 1.0]).unwrap(), 50.0);
        assert_eq!(mean_e_value(&[100.0, 0.0], &[3.0, 1.0]).unwrap(), 75.0);
        assert!(mean_e_value(&[1.0], &[0.0]).is_err());
        assert!(mean_e_value(&[1.0], &[1.0, 2.0]).is_err());
    }
}
