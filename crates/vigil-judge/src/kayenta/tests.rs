use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use vigil_stats::Histogram;

use super::*;

fn h(values: &[u64]) -> Histogram {
    Histogram::from_values(values.iter().copied()).unwrap()
}

fn as_f64(values: &[u64]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

/// `n` values spread evenly over `center` ± `half_width`.
fn spread(center: u64, half_width: u64, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| center - half_width + (i * 7919) % (2 * half_width + 1))
        .collect()
}

fn repeat(value: u64, n: usize) -> Vec<u64> {
    vec![value; n]
}

fn cfg() -> KayentaMetricConfig {
    KayentaMetricConfig::new("latency", ["latency"])
}

fn cfg_with(change: impl FnOnce(&mut KayentaMetricConfig)) -> KayentaMetricConfig {
    let mut c = cfg();
    change(&mut c);
    c
}

/// One classification case: the label and critical flag expected.
struct Case {
    name: &'static str,
    cfg: KayentaMetricConfig,
    canary: Vec<u64>,
    baseline: Vec<u64>,
    expected: Classification,
    critical: bool,
}

/// Classifies a case from histograms, checks the label, and checks that the
/// same values as time series classify the same way on the same numbers.
fn check(case: &Case) -> MetricClassification {
    let got = classify(&case.cfg, &h(&case.canary), &h(&case.baseline), CONFIDENCE).unwrap();
    assert_eq!(
        (got.classification, got.critical),
        (case.expected, case.critical),
        "{}: {got:#?}",
        case.name
    );
    let series = classify_samples(
        &case.cfg,
        &as_f64(&case.canary),
        &as_f64(&case.baseline),
        CONFIDENCE,
    )
    .unwrap();
    assert_eq!(series.classification, got.classification, "{}", case.name);
    assert_eq!(series.critical, got.critical, "{}", case.name);
    assert_eq!(series.reason, got.reason, "{}", case.name);
    assert_eq!(series.shift, got.shift, "{}", case.name);
    assert_eq!(series.interval, got.interval, "{}", case.name);
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(1.0),
        (a, b) => a == b,
    };
    assert!(close(series.ratio, got.ratio), "{}", case.name);
    assert!(close(series.effect_size, got.effect_size), "{}", case.name);
    if let Some(p) = got.p_value {
        assert!((0.0..=1.0).contains(&p), "{}: p = {p}", case.name);
    }
    got
}

#[test]
fn classifies_as_kayenta() {
    use Classification::{High, Low, Pass};
    let base = spread(100, 20, 200);
    let cases = [
        Case {
            name: "clear regression",
            cfg: cfg(),
            canary: spread(150, 20, 200),
            baseline: base.clone(),
            expected: High,
            critical: false,
        },
        Case {
            name: "same distribution",
            cfg: cfg(),
            canary: spread(100, 20, 203),
            baseline: base.clone(),
            expected: Pass,
            critical: false,
        },
        Case {
            name: "drop, direction either",
            cfg: cfg(),
            canary: spread(60, 20, 200),
            baseline: base.clone(),
            expected: Low,
            critical: false,
        },
        Case {
            name: "drop, direction decrease",
            cfg: cfg_with(|c| c.direction = KayentaDirection::Decrease),
            canary: spread(60, 20, 200),
            baseline: base.clone(),
            expected: Low,
            critical: false,
        },
        Case {
            name: "drop, direction increase",
            cfg: cfg_with(|c| c.direction = KayentaDirection::Increase),
            canary: spread(60, 20, 200),
            baseline: base.clone(),
            expected: Pass,
            critical: false,
        },
        Case {
            name: "rise, direction decrease",
            cfg: cfg_with(|c| c.direction = KayentaDirection::Decrease),
            canary: spread(150, 20, 200),
            baseline: base.clone(),
            expected: Pass,
            critical: false,
        },
        // A 0.3% shift that the interval resolves: High at the default
        // effect size of 1.0, Pass once 10% is allowed.
        Case {
            name: "tiny shift, default effect size",
            cfg: cfg(),
            canary: spread(1013, 10, 2100),
            baseline: spread(1010, 10, 2100),
            expected: High,
            critical: false,
        },
        Case {
            name: "tiny shift, allowed increase 1.1",
            cfg: cfg_with(|c| c.effect_size.allowed_increase = 1.1),
            canary: spread(1013, 10, 2100),
            baseline: spread(1010, 10, 2100),
            expected: Pass,
            critical: false,
        },
        // Kayenta's ClassifierSuite "Mean Ratio Effect Size: High", times
        // ten: five points per arm are too few for any interval at 98%, so
        // the interval is the range of differences, all positive.
        Case {
            name: "kayenta suite, five points",
            cfg: cfg_with(|c| {
                c.effect_size.allowed_decrease = 0.8;
                c.effect_size.allowed_increase = 1.2;
            }),
            canary: vec![200, 220, 210, 250, 300],
            baseline: vec![10, 22, 11, 25, 30],
            expected: High,
            critical: false,
        },
        Case {
            name: "two constant arms",
            cfg: cfg(),
            canary: repeat(7, 20),
            baseline: repeat(5, 20),
            expected: High,
            critical: false,
        },
        Case {
            name: "one value in both arms",
            cfg: cfg(),
            canary: repeat(5, 3),
            baseline: repeat(5, 10),
            expected: Pass,
            critical: false,
        },
        // Baseline mean 0: no ratio, so the effect size does not gate.
        Case {
            name: "rise from zero",
            cfg: cfg_with(|c| c.effect_size.allowed_increase = 2.0),
            canary: [repeat(0, 15), repeat(3, 35)].concat(),
            baseline: repeat(0, 50),
            expected: High,
            critical: false,
        },
        Case {
            name: "critical regression",
            cfg: cfg_with(|c| c.critical = true),
            canary: spread(150, 20, 200),
            baseline: base.clone(),
            expected: High,
            critical: true,
        },
        // 1.5x is High but below the critical 5x: the canary goes on.
        Case {
            name: "critical metric below critical increase",
            cfg: cfg_with(|c| {
                c.critical = true;
                c.effect_size.critical_increase = 5.0;
            }),
            canary: spread(150, 20, 200),
            baseline: base.clone(),
            expected: High,
            critical: false,
        },
        // 0.6x is within the critical 0.5x, 0.4x beyond it.
        Case {
            name: "critical drop within critical decrease",
            cfg: cfg_with(|c| {
                c.critical = true;
                c.effect_size.critical_decrease = 0.5;
            }),
            canary: spread(60, 20, 200),
            baseline: base.clone(),
            expected: Low,
            critical: false,
        },
        Case {
            name: "critical drop beyond critical decrease",
            cfg: cfg_with(|c| {
                c.critical = true;
                c.effect_size.critical_decrease = 0.5;
            }),
            canary: spread(40, 20, 200),
            baseline: base.clone(),
            expected: Low,
            critical: true,
        },
        Case {
            name: "cles, default threshold",
            cfg: cfg_with(|c| c.effect_size = EffectSize::new(EffectSizeMeasure::Cles)),
            canary: spread(110, 20, 200),
            baseline: base.clone(),
            expected: High,
            critical: false,
        },
        Case {
            name: "cles, allowed increase 0.9",
            cfg: cfg_with(|c| {
                c.effect_size = EffectSize::new(EffectSizeMeasure::Cles);
                c.effect_size.allowed_increase = 0.9;
            }),
            canary: spread(110, 20, 200),
            baseline: base.clone(),
            expected: Pass,
            critical: false,
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn reasons_use_kayentas_words() {
    let same = check(&Case {
        name: "identical arms",
        cfg: cfg(),
        canary: spread(100, 20, 200),
        baseline: spread(100, 20, 200),
        expected: Classification::Pass,
        critical: false,
    });
    assert_eq!(
        same.reason.as_deref(),
        Some("The Canary and Baseline data are identical")
    );
    assert_eq!((same.ratio, same.p_value), (Some(1.0), None));

    let high = check(&Case {
        name: "clear regression",
        cfg: cfg(),
        canary: spread(150, 20, 200),
        baseline: spread(100, 20, 200),
        expected: Classification::High,
        critical: false,
    });
    assert_eq!(
        high.reason.as_deref(),
        Some("latency was classified as High")
    );
    assert_eq!(high.shift, Some(50.0));
    assert!((high.ratio.unwrap() - 1.5).abs() < 0.01);
    assert!(high.p_value.unwrap() < 1e-10);
}

/// Significant at 98% (the interval excludes 0) but too imprecise: the
/// interval must clear a quarter of the estimate, not just zero.
#[test]
fn interval_must_clear_a_quarter_of_the_shift() {
    let canary = [35, 42, 52, 56, 63, 82, 95, 105];
    let baseline = [11, 24, 26, 32, 34, 47, 50, 54];
    let got = check(&Case {
        name: "imprecise shift",
        cfg: cfg(),
        canary: canary.to_vec(),
        baseline: baseline.to_vec(),
        expected: Classification::Pass,
        critical: false,
    });
    let (lo, _) = got.interval.unwrap();
    let shift = got.shift.unwrap();
    assert!(lo > 0.0 && lo <= TOLERANCE * shift, "{got:#?}");
    assert!(got.p_value.unwrap() < 0.02, "{got:#?}");
}

#[test]
fn missing_data_follows_nan_strategy_and_must_have_data() {
    use Classification::{NoData, NoDataFail, Pass};
    let data = spread(100, 20, 50);
    let table = [
        ("default", cfg(), NoData, false),
        ("critical", cfg_with(|c| c.critical = true), NoData, true),
        (
            "must have data",
            cfg_with(|c| c.must_have_data = true),
            NoDataFail,
            false,
        ),
        // A critical metric's missing data fails the canary rather than
        // the metric.
        (
            "must have data, critical",
            cfg_with(|c| {
                c.must_have_data = true;
                c.critical = true;
            }),
            NoData,
            true,
        ),
        (
            "replace",
            cfg_with(|c| {
                c.nan_strategy = NanStrategy::Replace;
                c.critical = true;
            }),
            Pass,
            false,
        ),
    ];
    for (name, cfg, expected, critical) in table {
        for (canary, baseline) in [(vec![], data.clone()), (data.clone(), vec![])] {
            check(&Case {
                name,
                cfg: cfg.clone(),
                canary,
                baseline,
                expected,
                critical,
            });
        }
    }
    let missing = classify(&cfg(), &h(&[]), &h(&data), CONFIDENCE).unwrap();
    assert_eq!(missing.reason.as_deref(), Some("Missing data for latency"));
}

#[test]
fn nan_points_are_removed_or_zeroed() {
    let baseline = [1.0, 1.0, 1.0, 1.0, 1.0];
    let canary = [f64::NAN; 5];
    let removed = classify_samples(&cfg(), &canary, &baseline, CONFIDENCE).unwrap();
    assert_eq!(removed.classification, Classification::NoData);
    // Zeros against ones: a clear drop.
    let zeroed = cfg_with(|c| c.nan_strategy = NanStrategy::Replace);
    let replaced = classify_samples(&zeroed, &canary, &baseline, CONFIDENCE).unwrap();
    assert_eq!(replaced.classification, Classification::Low);
    assert_eq!(replaced.interval, Some((-1.0, -1.0)));
}

/// Four huge values push the canary's mean up sixfold; removing outliers
/// (Kayenta's IQR fences) leaves a 5% shift that the effect size forgives.
#[test]
fn outlier_removal_uses_kayentas_iqr_fences() {
    let baseline = spread(100, 20, 400);
    let canary = [spread(105, 20, 400), repeat(50_000, 4)].concat();
    let lenient = |outliers| {
        cfg_with(|c| {
            c.effect_size.allowed_increase = 1.2;
            c.outliers = outliers;
        })
    };
    let kept = classify(
        &lenient(OutlierStrategy::Keep),
        &h(&canary),
        &h(&baseline),
        CONFIDENCE,
    )
    .unwrap();
    assert_eq!(kept.classification, Classification::High);
    assert!(kept.ratio.unwrap() > 5.0);
    let removed = OutlierStrategy::Remove {
        factor: DEFAULT_OUTLIER_FACTOR,
    };
    let cleaned = classify(&lenient(removed), &h(&canary), &h(&baseline), CONFIDENCE).unwrap();
    assert_eq!(cleaned.classification, Classification::Pass);
    assert!((cleaned.ratio.unwrap() - 1.05).abs() < 0.01);

    // 1..=100 and 10000: Q1 26, Q3 76, P1 2, P99 100 (type 7), so the fences
    // are -124 and 226.
    let values: Vec<f64> = (1..=100).chain([10_000]).map(f64::from).collect();
    let at = |rank: u64| values.get(rank as usize - 1).copied();
    assert_eq!(percentile_r7(101, at, 0.25), Some(26.0));
    assert_eq!(outlier_fences(101, at, 3.0), Some((-124.0, 226.0)));
    let kept = prepare_samples(&values, NanStrategy::Remove, removed);
    assert_eq!(kept.len(), 100);
    let arm = Arm::from_counts(&h(&(1..=100).chain([10_000]).collect::<Vec<_>>()));
    assert_eq!(arm.preprocess(removed).n, 100);
}

#[test]
fn rejects_invalid_parameters() {
    let (c, b) = (h(&[1, 2, 3]), h(&[4, 5, 6]));
    for confidence in [0.0, 1.0, f64::NAN] {
        assert!(matches!(
            classify(&cfg(), &c, &b, confidence),
            Err(KayentaError::InvalidParameter {
                name: "confidence",
                ..
            })
        ));
    }
    let nan_threshold = cfg_with(|c| c.effect_size.allowed_increase = f64::NAN);
    assert!(classify(&nan_threshold, &c, &b, CONFIDENCE).is_err());
    let zero_factor = cfg_with(|c| c.outliers = OutlierStrategy::Remove { factor: 0.0 });
    assert!(classify_samples(&zero_factor, &[1.0], &[2.0], CONFIDENCE).is_err());
}

#[test]
fn spec_points_classify_with_the_spec_tolerance() {
    let spec: MetricSpec = serde_json::from_value(serde_json::json!({
        "name": "error_rate",
        "kind": "error_rate",
        "direction": "increase",
        "tolerance": 0.2,
        "critical": true,
    }))
    .unwrap();
    let cfg = KayentaMetricConfig::from_spec(&spec);
    assert_eq!(cfg.groups, ["error_rate"]);
    assert_eq!(cfg.direction, KayentaDirection::Increase);
    assert_eq!(cfg.effect_size.allowed_increase, 1.2);
    assert!(cfg.critical);

    let baseline: Vec<f64> = (0..30).map(|i| 0.010 + f64::from(i % 5) * 0.001).collect();
    let up_10: Vec<f64> = baseline.iter().map(|v| v * 1.1).collect();
    let up_50: Vec<f64> = baseline.iter().map(|v| v * 1.5).collect();
    let down: Vec<f64> = baseline.iter().map(|v| v * 0.5).collect();
    let small = classify_samples(&cfg, &up_10, &baseline, CONFIDENCE).unwrap();
    assert_eq!(small.classification, Classification::Pass, "{small:#?}");
    let large = classify_samples(&cfg, &up_50, &baseline, CONFIDENCE).unwrap();
    assert_eq!(
        (large.classification, large.critical),
        (Classification::High, true)
    );
    assert!(large.classification.is_failure());
    let lower = classify_samples(&cfg, &down, &baseline, CONFIDENCE).unwrap();
    assert_eq!(lower.classification, Classification::Pass);
    assert!(!Classification::NoData.is_failure());
    assert!(Classification::NoDataFail.is_failure());
}

/// Kayenta's own interval and estimate (MannWhitney.scala): roots in the
/// shift mu of the continuity- and tie-corrected normal statistic of
/// (canary - mu, baseline), clamped to the range of differences; here found
/// by bisection instead of Brent's method.
fn kayenta_interval(x: &[f64], y: &[f64], confidence: f64) -> (f64, f64, f64) {
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    let statistic = |mu: f64, zq: f64| {
        let mut all: Vec<(f64, bool)> = x
            .iter()
            .map(|&v| (v - mu, true))
            .chain(y.iter().map(|&v| (v, false)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut rank_sum_x, mut ties, mut i) = (0.0, 0.0, 0);
        while i < all.len() {
            let mut j = i;
            while j < all.len() && all[j].0 == all[i].0 {
                j += 1;
            }
            let t = (j - i) as f64;
            let mid_rank = (i + j + 1) as f64 / 2.0;
            rank_sum_x += mid_rank * all[i..j].iter().filter(|e| e.1).count() as f64;
            ties += t * t * t - t;
            i = j;
        }
        let dz = rank_sum_x - nx * (nx + 1.0) / 2.0 - nx * ny / 2.0;
        let correction = dz.signum() * 0.5 * f64::from(u8::from(dz != 0.0));
        let sigma =
            (nx * ny / 12.0 * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
        (dz - correction) / sigma - zq
    };
    let (mu_min, mu_max) = difference_range(x, y).unwrap();
    let root = |zq: f64| {
        if statistic(mu_min, zq) <= 0.0 {
            return mu_min;
        }
        if statistic(mu_max, zq) >= 0.0 {
            return mu_max;
        }
        let (mut lo, mut hi) = (mu_min, mu_max);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if statistic(mid, zq) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    };
    let z = normal::quantile(1.0 - (1.0 - confidence) / 2.0);
    (root(z), root(-z), root(0.0))
}

/// The documented deviation, measured: on continuous data our interval ends
/// are within one order statistic of the pairwise differences of Kayenta's,
/// and the labels (with Kayenta's own estimate for the tolerance bound)
/// almost always agree.
#[test]
fn interval_stays_within_one_difference_of_kayentas() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let noise = LogNormal::new(3.0, 0.5).unwrap();
    let mut disagreements = 0;
    let mut off_by_one = 0;
    let runs = 300;
    for _ in 0..runs {
        let n = rng.random_range(4..40);
        let m = rng.random_range(4..40);
        let lift = [1.0, 1.05, 1.2, 1.5][rng.random_range(0..4)];
        let mut canary: Vec<f64> = (0..n).map(|_| noise.sample(&mut rng) * lift).collect();
        let mut baseline: Vec<f64> = (0..m).map(|_| noise.sample(&mut rng)).collect();
        canary.sort_by(f64::total_cmp);
        baseline.sort_by(f64::total_cmp);
        let mut differences: Vec<f64> = canary
            .iter()
            .flat_map(|&x| baseline.iter().map(move |&y| x - y))
            .collect();
        differences.sort_by(f64::total_cmp);
        let nearest = |v: f64| {
            (0..differences.len())
                .min_by(|&i, &j| {
                    (differences[i] - v)
                        .abs()
                        .total_cmp(&(differences[j] - v).abs())
                })
                .unwrap()
        };

        let ours = classify_samples(&cfg(), &canary, &baseline, CONFIDENCE).unwrap();
        let (lo, hi) = ours.interval.unwrap();
        let kayenta = kayenta_interval(&canary, &baseline, CONFIDENCE);
        for (a, b) in [(lo, kayenta.0), (hi, kayenta.1)] {
            let apart = nearest(a).abs_diff(nearest(b));
            assert!(apart <= 1, "{a} vs kayenta {b}: {apart} apart");
            off_by_one += apart;
        }

        let bound = TOLERANCE * kayenta.2.abs();
        let kayenta_label = if kayenta.0 > bound && ours.ratio.is_none_or(|r| r >= 1.0) {
            Classification::High
        } else if kayenta.1 < -bound && ours.ratio.is_none_or(|r| r <= 1.0) {
            Classification::Low
        } else {
            Classification::Pass
        };
        disagreements += usize::from(kayenta_label != ours.classification);
    }
    eprintln!("{off_by_one} ends one apart, {disagreements} labels differ in {runs} runs");
    assert!(
        disagreements * 50 <= runs,
        "{disagreements} of {runs} differ"
    );
}

fn labelled(name: &str, groups: &[&str], label: Classification) -> MetricClassification {
    MetricClassification {
        name: name.to_owned(),
        groups: groups.iter().map(|&g| g.to_owned()).collect(),
        classification: label,
        critical: false,
        muted: false,
        reason: Some(format!(
            "{name} was classified as {}",
            label.as_kayenta_str()
        )),
        ratio: None,
        effect_size: None,
        shift: None,
        interval: None,
        p_value: None,
    }
}

fn critical(mut m: MetricClassification) -> MetricClassification {
    m.critical = true;
    m
}

fn weights(w: &[(&str, f64)]) -> Vec<(String, f64)> {
    w.iter().map(|&(g, w)| (g.to_owned(), w)).collect()
}

const ARGO_EXAMPLE: ScoreThresholds = ScoreThresholds {
    marginal: 75.0,
    pass: 90.0,
};

/// A scoring case: name, metrics, group weights, expected score.
type ScoreCase = (
    &'static str,
    Vec<MetricClassification>,
    Vec<(String, f64)>,
    f64,
);

/// Kayenta's ScorerSuite, case for case.
#[test]
fn scores_as_kayentas_scorer_suite() {
    use Classification::{High, Low, NoData, Pass};
    let table: Vec<ScoreCase> = vec![
        (
            "single pass",
            vec![labelled("a", &["g"], Pass)],
            vec![],
            100.0,
        ),
        (
            "single high",
            vec![labelled("a", &["g"], High)],
            vec![],
            0.0,
        ),
        (
            "single nodata",
            vec![labelled("a", &["g"], NoData)],
            vec![],
            0.0,
        ),
        (
            "two groups, one nodata",
            vec![
                labelled("a", &["pass"], Pass),
                labelled("b", &["pass"], Pass),
                labelled("c", &["nodata"], NoData),
            ],
            vec![],
            100.0,
        ),
        (
            "one group, two metrics",
            vec![labelled("a", &["g"], Pass), labelled("b", &["g"], High)],
            vec![],
            50.0,
        ),
        (
            "one group, three metrics",
            vec![
                labelled("a", &["g"], Pass),
                labelled("b", &["g"], High),
                labelled("c", &["g"], Low),
            ],
            vec![],
            33.33,
        ),
        (
            "two groups 75/25",
            vec![
                labelled("a", &["group-1"], Pass),
                labelled("b", &["group-1"], Pass),
                labelled("c", &["group-2"], High),
            ],
            weights(&[("group-1", 75.0), ("group-2", 25.0)]),
            75.0,
        ),
        (
            "two groups 50/50",
            vec![
                labelled("a", &["group-1"], Pass),
                labelled("b", &["group-1"], High),
                labelled("c", &["group-2"], High),
            ],
            weights(&[("group-1", 50.0), ("group-2", 50.0)]),
            25.0,
        ),
        (
            "two groups 50/50, one nodata",
            vec![
                labelled("a", &["group-1"], Pass),
                labelled("b", &["group-1"], NoData),
                labelled("c", &["group-2"], High),
            ],
            weights(&[("group-1", 50.0), ("group-2", 50.0)]),
            50.0,
        ),
        (
            "critical high",
            vec![
                labelled("a", &["g"], Pass),
                critical(labelled("b", &["g"], High)),
            ],
            vec![],
            0.0,
        ),
        (
            "critical pass, normal low",
            vec![
                labelled("a", &["g"], Low),
                critical(labelled("b", &["g"], Pass)),
            ],
            vec![],
            50.0,
        ),
        (
            "critical nodata",
            vec![
                labelled("a", &["g"], Pass),
                critical(labelled("b", &["g"], NoData)),
            ],
            vec![],
            0.0,
        ),
        (
            "two groups 15/85, four metrics",
            vec![
                labelled("a", &["group1"], High),
                labelled("b", &["group1"], Low),
                labelled("c", &["group1"], Pass),
                labelled("d", &["group2"], High),
            ],
            weights(&[("group1", 15.0), ("group2", 85.0)]),
            5.0,
        ),
    ];
    for (name, metrics, w, expected) in table {
        let got = score(&metrics, &w, ARGO_EXAMPLE);
        assert_eq!(got.score, expected, "{name}: {got:#?}");
    }
}

/// Latency weighs 60, errors 30, saturation (unweighted) gets the 10 left.
/// Latency: 3 of 4 pass = 75; errors: 1 of 2 = 50; saturation has only
/// NoData and counts as 100 (1 NoData in 7 is under half). Score: 75 x 0.6
/// + 50 x 0.3 + 100 x 0.1 = 70.
#[test]
fn group_weights_hand_worked() {
    use Classification::{High, Low, NoData, Pass};
    let metrics = [
        labelled("p50", &["latency"], Pass),
        labelled("p90", &["latency"], Pass),
        labelled("p99", &["latency"], Pass),
        labelled("p999", &["latency"], High),
        labelled("5xx", &["errors"], Pass),
        labelled("throughput", &["errors"], Low),
        labelled("cpu", &["saturation"], NoData),
    ];
    let got = score(
        &metrics,
        &weights(&[("latency", 60.0), ("errors", 30.0)]),
        ARGO_EXAMPLE,
    );
    let groups: Vec<(&str, f64, bool)> = got
        .group_scores
        .iter()
        .map(|g| (g.name.as_str(), g.score, g.no_data))
        .collect();
    assert_eq!(
        groups,
        [
            ("latency", 75.0, false),
            ("errors", 50.0, false),
            ("saturation", 0.0, true)
        ]
    );
    assert_eq!(got.score, 70.0);
    assert_eq!(got.result, KayentaResult::Fail);
    assert_eq!(got.reason, None);

    // A metric in two groups counts in both; without weights, groups share
    // 100 equally.
    let shared = [
        labelled("timeouts", &["latency", "errors"], High),
        labelled("p50", &["latency"], Pass),
        labelled("5xx", &["errors"], Pass),
        labelled("5xx-edge", &["errors"], Pass),
    ];
    let got = score(&shared, &[], ARGO_EXAMPLE);
    // latency 50, errors 66.666...: (50 + 66.67) / 2 = 58.33.
    assert_eq!(got.score, 58.33);

    // Weights of groups without metrics are lost, not redistributed.
    let lost = score(
        &[labelled("p50", &["latency"], Pass)],
        &weights(&[("latency", 50.0), ("ghost", 50.0)]),
        ARGO_EXAMPLE,
    );
    assert_eq!(lost.score, 50.0);

    // Weights are percentages, never normalised: relative weights of 1 for
    // three passing groups score 3, not 100.
    let relative = score(
        &[
            labelled("a", &["a"], Pass),
            labelled("b", &["b"], Pass),
            labelled("c", &["c"], Pass),
        ],
        &weights(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]),
        ARGO_EXAMPLE,
    );
    assert_eq!(
        (relative.score, relative.result),
        (3.0, KayentaResult::Fail)
    );
}

#[test]
fn nodata_fail_and_muted_metrics() {
    use Classification::{High, NoData, NoDataFail, Pass};
    let half_missing = [
        labelled("a", &["g"], Pass),
        labelled("b", &["g"], Pass),
        labelled("c", &["g"], NoData),
        labelled("d", &["h"], NoData),
    ];
    let got = score(&half_missing, &[], ARGO_EXAMPLE);
    assert_eq!((got.score, got.result), (0.0, KayentaResult::Fail));
    assert_eq!(
        got.reason.as_deref(),
        Some("Canary Failed: 50% or more metrics returned NODATA")
    );

    let required = [
        labelled("a", &["g"], Pass),
        labelled("b", &["g"], NoDataFail),
    ];
    assert_eq!(score(&required, &[], ARGO_EXAMPLE).score, 50.0);

    let mut muted_high = critical(labelled("b", &["g"], High));
    muted_high.muted = true;
    let got = score(
        &[labelled("a", &["g"], Pass), muted_high],
        &[],
        ARGO_EXAMPLE,
    );
    assert_eq!((got.score, got.result), (100.0, KayentaResult::Pass));
    assert!(got.failed_critical.is_empty());

    let nothing = score(&[], &[], ARGO_EXAMPLE);
    assert_eq!((nothing.score, nothing.result), (0.0, KayentaResult::Fail));
}

fn a_a_and_regressed(
    n_metrics: usize,
    regressed: &KayentaMetricConfig,
) -> Vec<MetricClassification> {
    let mut metrics: Vec<MetricClassification> = (1..n_metrics)
        .map(|i| {
            let cfg = KayentaMetricConfig::new(format!("metric-{i}"), ["default"]);
            let canary = h(&spread(100, 20, 200 + i as u64));
            classify(&cfg, &canary, &h(&spread(100, 20, 200)), CONFIDENCE).unwrap()
        })
        .collect();
    let bad = classify(
        regressed,
        &h(&spread(150, 20, 200)),
        &h(&spread(100, 20, 200)),
        CONFIDENCE,
    )
    .unwrap();
    metrics.push(bad);
    metrics
}

#[test]
fn failing_critical_metric_fails_the_canary_whatever_the_score() {
    let regressed = KayentaMetricConfig {
        critical: true,
        ..KayentaMetricConfig::new("error_rate", ["default"])
    };
    let metrics = a_a_and_regressed(20, &regressed);
    let got = score(&metrics, &[], ARGO_EXAMPLE);
    // 19 of 20 pass: 95 without the critical flag.
    assert_eq!(got.group_scores[0].score, 95.0);
    assert_eq!((got.score, got.result), (0.0, KayentaResult::Fail));
    assert_eq!(got.failed_critical, ["error_rate"]);
    assert_eq!(
        got.reason.as_deref(),
        Some("Canary Failed: The metric error_rate was classified as High (Critical)")
    );
    // The forced 0 still goes through the thresholds: with a marginal
    // threshold of 0 Kayenta calls it Marginal.
    let lax = ScoreThresholds {
        marginal: 0.0,
        pass: 90.0,
    };
    assert_eq!(score(&metrics, &[], lax).result, KayentaResult::Marginal);
}

/// The design doc's measured weakness: with 10 equally weighted metrics a
/// single clear regression scores 90, which passes a pass threshold of 90
/// (Argo Rollouts' documented example) however large the regression.
#[test]
fn one_regression_in_ten_metrics_passes_threshold_90() {
    let regressed = KayentaMetricConfig::new("p99", ["default"]);
    let metrics = a_a_and_regressed(10, &regressed);
    let high: Vec<&str> = metrics
        .iter()
        .filter(|m| m.classification == Classification::High)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(high, ["p99"]);
    let got = score(&metrics, &[], ARGO_EXAMPLE);
    assert_eq!((got.score, got.result), (90.0, KayentaResult::Pass));
}

#[test]
fn thresholds_are_inclusive_lower_bounds() {
    let t = ScoreThresholds {
        marginal: 75.0,
        pass: 95.0,
    };
    assert_eq!(t.classify(100.0), KayentaResult::Pass);
    assert_eq!(t.classify(95.0), KayentaResult::Pass);
    assert_eq!(t.classify(94.99), KayentaResult::Marginal);
    assert_eq!(t.classify(75.0), KayentaResult::Marginal);
    assert_eq!(t.classify(74.99), KayentaResult::Fail);
}

#[test]
fn rounds_half_up_on_the_decimal_form() {
    for (x, expected) in [
        (2.675, 2.68),
        (1.005, 1.01),
        (100.0 / 3.0, 33.33),
        (200.0 / 3.0, 66.67),
        (12.5, 12.5),
        (100.0, 100.0),
        (-2.675, -2.68),
    ] {
        assert_eq!(round_half_up_2(x), expected, "{x}");
    }
    assert!(round_half_up_2(-0.001).is_sign_negative());
}

#[test]
fn kth_difference_matches_brute_force() {
    let canary = [0.5, 1.25, 1.25, 3.0, 7.5];
    let baseline = [-1.0, 0.5, 2.0, 2.0];
    let mut all: Vec<f64> = canary
        .iter()
        .flat_map(|&x| baseline.iter().map(move |&y| x - y))
        .collect();
    all.sort_by(f64::total_cmp);
    for (k, &d) in all.iter().enumerate() {
        assert_eq!(
            kth_difference(&canary, &baseline, k as u128 + 1),
            d,
            "k={k}"
        );
    }
}
