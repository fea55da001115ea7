//! Property tests of the invariants the statistics must keep whatever the
//! data: arm-swap symmetry, merge = concatenation, shift equivariance of
//! Hodges-Lehmann, p-values in [0, 1], and the exact distribution against
//! brute-force enumeration.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use vigil_stats::hodges_lehmann::hodges_lehmann;
use vigil_stats::mann_whitney::{mann_whitney, mann_whitney_with_exact_limit};
use vigil_stats::{BucketCounts, Histogram, SparseHistogram};

fn hist(values: &[u64]) -> Histogram {
    Histogram::from_values(values.iter().copied()).unwrap()
}

/// Samples with many ties (few distinct values) or spread out, below 2048
/// so every value has its own bucket.
fn samples(max_len: usize) -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        prop::collection::vec(0u64..6, 1..max_len),
        prop::collection::vec(0u64..2000, 1..max_len),
    ]
}

/// Brute-force exact p-values: enumerate every way to choose the canary's
/// positions among the pooled samples, with midrank U.
fn brute_exact(canary: &[u64], baseline: &[u64]) -> (f64, f64) {
    let pooled: Vec<u64> = canary.iter().chain(baseline).copied().collect();
    let n = pooled.len();
    let n1 = canary.len();
    let u_of = |chosen: &[bool]| -> f64 {
        let mut u = 0.0;
        for i in 0..n {
            if !chosen[i] {
                continue;
            }
            for j in 0..n {
                if chosen[j] {
                    continue;
                }
                u += if pooled[i] > pooled[j] {
                    1.0
                } else if pooled[i] == pooled[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
        u
    };
    let mut observed = vec![false; n];
    observed[..n1].iter_mut().for_each(|x| *x = true);
    let u_obs = u_of(&observed);
    let (mut ge, mut le, mut total) = (0u64, 0u64, 0u64);
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize != n1 {
            continue;
        }
        let chosen: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
        let u = u_of(&chosen);
        total += 1;
        if u >= u_obs - 1e-9 {
            ge += 1;
        }
        if u <= u_obs + 1e-9 {
            le += 1;
        }
    }
    (ge as f64 / total as f64, le as f64 / total as f64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn swapping_arms_mirrors_u_and_p(c in samples(60), b in samples(60)) {
        let (hc, hb) = (hist(&c), hist(&b));
        let ab = mann_whitney(&hc, &hb).unwrap();
        let ba = mann_whitney(&hb, &hc).unwrap();
        let nn = c.len() as f64 * b.len() as f64;
        prop_assert_eq!(ab.u + ba.u, nn);
        prop_assert_eq!(ab.p.greater, ba.p.less);
        prop_assert_eq!(ab.p.less, ba.p.greater);
        prop_assert_eq!(ab.p.two_sided, ba.p.two_sided);
        prop_assert_eq!(ab.z, -ba.z);
        if let (Some(x), Some(y)) = (ab.p_exact, ba.p_exact) {
            prop_assert!((x.greater - y.less).abs() < 1e-12);
            prop_assert!((x.two_sided - y.two_sided).abs() < 1e-12);
        }
    }

    #[test]
    fn p_values_are_probabilities(c in samples(80), b in samples(80)) {
        let r = mann_whitney(&hist(&c), &hist(&b)).unwrap();
        for p in [r.p.two_sided, r.p.greater, r.p.less] {
            prop_assert!((0.0..=1.0).contains(&p), "{p}");
        }
        if let Some(e) = r.p_exact {
            for p in [e.two_sided, e.greater, e.less] {
                prop_assert!((0.0..=1.0 + 1e-12).contains(&p), "{p}");
            }
            // P(U >= u) + P(U <= u) >= 1: the atom at u is counted twice.
            prop_assert!(e.greater + e.less >= 1.0 - 1e-12);
        }
    }

    #[test]
    fn merge_equals_recording_the_concatenation(
        a in prop::collection::vec(0u64..10_000_000, 0..200),
        b in prop::collection::vec(0u64..10_000_000, 0..200),
    ) {
        let mut merged = hist(&a);
        merged.merge(&hist(&b)).unwrap();
        let concat: Vec<u64> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(&merged, &hist(&concat));
        // And subtracting b again gives a back.
        merged.subtract(&hist(&b)).unwrap();
        prop_assert_eq!(&merged, &hist(&a));
    }

    #[test]
    fn sparse_histogram_has_the_dense_buckets_and_merges_like_concatenation(
        a in prop::collection::vec(0u64..u64::MAX / 4, 0..100),
        b in prop::collection::vec(0u64..50_000_000, 0..100),
    ) {
        let sparse = |v: &[u64]| {
            let mut h = SparseHistogram::new();
            v.iter().for_each(|&x| h.record(x));
            h
        };
        let mut merged = sparse(&a);
        merged.merge(&sparse(&b));
        let concat: Vec<u64> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(&merged, &sparse(&concat));
        prop_assert!(merged.buckets().eq(hist(&concat).buckets()));
        prop_assert_eq!(merged.len(), concat.len() as u64);
        merged.subtract(&sparse(&b)).unwrap();
        prop_assert_eq!(merged, sparse(&a));
    }

    #[test]
    fn merge_is_associative_and_commutative(
        a in prop::collection::vec(0u64..100_000, 0..50),
        b in prop::collection::vec(0u64..100_000, 0..50),
        c in prop::collection::vec(0u64..100_000, 0..50),
    ) {
        let mut left = hist(&a);
        left.merge(&hist(&b)).unwrap();
        left.merge(&hist(&c)).unwrap();
        let mut bc = hist(&c);
        bc.merge(&hist(&b)).unwrap();
        let mut right = bc;
        right.merge(&hist(&a)).unwrap();
        prop_assert_eq!(left, right);
    }

    #[test]
    fn shifting_the_canary_shifts_hodges_lehmann(
        c in prop::collection::vec(0u64..1000, 1..50),
        b in prop::collection::vec(0u64..1000, 1..50),
        shift in 0u64..1000,
    ) {
        let base = hodges_lehmann(&hist(&c), &hist(&b), 0.9).unwrap();
        let moved: Vec<u64> = c.iter().map(|x| x + shift).collect();
        let after = hodges_lehmann(&hist(&moved), &hist(&b), 0.9).unwrap();
        prop_assert_eq!(after.shift, base.shift + shift as f64);
        prop_assert_eq!(after.ci_low.map(|x| x - shift as f64), base.ci_low);
        prop_assert_eq!(after.ci_high.map(|x| x - shift as f64), base.ci_high);
    }

    #[test]
    fn hodges_lehmann_is_the_median_of_differences(
        c in prop::collection::vec(0u64..2000, 1..40),
        b in prop::collection::vec(0u64..2000, 1..40),
    ) {
        let mut d: Vec<i64> = c.iter().flat_map(|&x| b.iter().map(move |&y| x as i64 - y as i64)).collect();
        d.sort_unstable();
        let m = d.len();
        let median = if m % 2 == 1 { d[m / 2] as f64 } else { (d[m / 2 - 1] + d[m / 2]) as f64 / 2.0 };
        let r = hodges_lehmann(&hist(&c), &hist(&b), 0.95).unwrap();
        prop_assert_eq!(r.shift, median);
        if let (Some(lo), Some(hi)) = (r.ci_low, r.ci_high) {
            prop_assert!(lo <= r.shift && r.shift <= hi);
            prop_assert!(d.contains(&(lo as i64)) && d.contains(&(hi as i64)));
        }
    }

    #[test]
    fn exact_distribution_matches_enumeration(
        c in prop::collection::vec(0u64..5, 1..7),
        b in prop::collection::vec(0u64..5, 1..7),
    ) {
        let r = mann_whitney_with_exact_limit(&hist(&c), &hist(&b), 1e9).unwrap();
        let e = r.p_exact.unwrap();
        let (ge, le) = brute_exact(&c, &b);
        prop_assert!((e.greater - ge).abs() < 1e-12, "{} vs {}", e.greater, ge);
        prop_assert!((e.less - le).abs() < 1e-12, "{} vs {}", e.less, le);
    }
}
