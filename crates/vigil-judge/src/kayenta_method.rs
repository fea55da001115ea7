//! The `kayenta` method: what Kayenta would decide from the same data.
//!
//! Kayenta compares time series, one point per interval and arm, not raw
//! requests. Each complete slice gives one point per arm (the metric's first
//! quantile for distributions, the error rate for counts); each metric's
//! points are classified by [`kayenta::classify_samples`] and the
//! classifications scored by [`kayenta::score`], one group per metric.
//! Kayenta's group weights are percentages summing to 100 and are never
//! rescaled, so the spec's weights are normalised to that. Thresholds are
//! the ones Argo Rollouts' kayenta documentation shows (pass 90, marginal 75).

use vigil_core::MetricSpec;

use crate::kayenta::{self, KayentaMetricConfig, MetricClassification, Score, ScoreThresholds};

/// Argo Rollouts' documented kayenta thresholds.
pub(crate) const THRESHOLDS: ScoreThresholds = ScoreThresholds {
    marginal: 75.0,
    pass: 90.0,
};

/// Classifies one metric from its per-slice points.
pub(crate) fn classify(
    spec: &MetricSpec,
    canary: &[f64],
    baseline: &[f64],
) -> Option<MetricClassification> {
    kayenta::classify_samples(
        &KayentaMetricConfig::from_spec(spec),
        canary,
        baseline,
        kayenta::CONFIDENCE,
    )
    .ok()
}

/// Scores the classified metrics, one group per metric, weights as
/// percentages of the total.
pub(crate) fn score(specs: &[MetricSpec], classified: &[MetricClassification]) -> Score {
    let total: f64 = specs.iter().map(|m| m.weight).sum();
    let weights: Vec<(String, f64)> = specs
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                if total > 0.0 {
                    100.0 * m.weight / total
                } else {
                    0.0
                },
            )
        })
        .collect();
    kayenta::score(classified, &weights, THRESHOLDS)
}
