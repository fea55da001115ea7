#!/usr/bin/env python3
"""Golden reference values for the Rust crate `crates/vigil-stats`.

Writes
    crates/vigil-stats/tests/golden/mann_whitney.json
    crates/vigil-stats/tests/golden/savvi.json

How to run (from the workspace root, or from anywhere: paths are relative to
this file):

    pip install scipy==1.14.1 numpy==2.2.6 savvi==0.3.1 mpmath
    python3 scripts/gen_golden.py            # ~2 minutes, mostly permutation_test
    python3 scripts/gen_golden.py --perm-limit 200000   # faster, fewer scipy
                                                         # permutation_test cross-checks

The output is deterministic apart from the "date" field of each "generator"
object (set SOURCE_DATE_EPOCH to pin it). savvi imports matplotlib only for
plotting; if matplotlib is missing a stub module is installed so that
`savvi.multinomial` can be imported.

Tolerances the Rust tests use against these files:
    * Mann-Whitney U:                    exact (U is a multiple of 0.5)
    * Mann-Whitney asymptotic p-values:  1e-9 relative
    * exact (permutation, with ties) p:  1e-10 absolute
    * Hodges-Lehmann shift:              exact (recorded only where the values
                                         are exact in the histogram, see below)
    * savvi log e-values (and one-sided log e-values):
                                         1e-9 relative, or 1e-9 absolute when
                                         |log_e| < 1 (near zero)
    * savvi p-values (running min of 1/e): 1e-9 relative

Samples are non-negative integers chosen so that distinct raw values never
share a bucket of an HDR histogram with 3 significant digits (lowest
discernible value 1, 2048 sub-buckets): values < 2048 are exact; a value
v >= 2048 with k = floor(log2 v) lies in a bucket of width 2^(k-10)
(bucket id (k, v >> (k-10))). This is asserted for every case, so rank
statistics (U, p-values) computed from such a histogram equal the raw-sample
ones. The Hodges-Lehmann shift is a function of the values themselves, so it
is recorded (hl_shift non-null) only when every value is its bucket's
representative value as vigil-stats' Histogram reports it (values < 2048, or
lowest equivalent + width/2: case "hdr_quantized_us"); otherwise null (e.g.
"coarse_10ms_timers": multiples of 10000 us are not bucket middles), and also
null when n_canary * n_baseline > 4e6.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import types
import warnings
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np
import scipy
import scipy.special as sc
import scipy.stats as st

# savvi.utils does `import matplotlib.pyplot` at import time (for plotting
# only). Provide a stub if matplotlib is not installed.
try:  # pragma: no cover - depends on the environment
    import matplotlib.pyplot  # noqa: F401
except ImportError:  # pragma: no cover
    _mpl = types.ModuleType("matplotlib")
    _mpl.pyplot = types.ModuleType("matplotlib.pyplot")
    sys.modules["matplotlib"] = _mpl
    sys.modules["matplotlib.pyplot"] = _mpl.pyplot

import savvi  # noqa: E402
from savvi.multinomial import Multinomial  # noqa: E402

try:
    import mpmath
except ImportError:  # pragma: no cover
    sys.exit("mpmath is required: pip install mpmath")

from importlib.metadata import version as _dist_version  # noqa: E402

SCRIPT = "scripts/gen_golden.py"
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "crates" / "vigil-stats" / "tests" / "golden"
ALTS = ("two-sided", "greater", "less")


def generator_header(description: str, case_descriptions: dict, extra: dict) -> dict:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        date = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date()
    else:
        date = datetime.date.today()
    head = {
        "script": SCRIPT,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "savvi": _dist_version("savvi"),
        "mpmath": mpmath.__version__,
        "date": date.isoformat(),
        "description": description,
        "tolerances": {
            "mwu_u": "exact",
            "mwu_p_asymptotic": "1e-9 relative",
            "mwu_p_exact": "1e-10 absolute",
            "hl_shift": "exact (given only where histograms reproduce the values exactly)",
            "savvi_log_e": "1e-9 relative, or 1e-9 absolute when |log_e| < 1",
        },
    }
    head.update(extra)
    head["cases"] = case_descriptions
    return head


def fnum(x) -> float | None:
    """float for JSON; NaN -> None (JSON has no NaN)."""
    x = float(x)
    if math.isnan(x):
        return None
    assert math.isfinite(x), x
    return x


# --------------------------------------------------------------------------
# HDR bucket check
# --------------------------------------------------------------------------

def hdr_bucket(v: int) -> tuple[int, int]:
    """Bucket id of v in an HDR histogram with 3 significant digits."""
    if v < 2048:
        return (0, v)
    k = v.bit_length() - 1
    return (k, v >> (k - 10))


def hdr_lowest_equivalent(v: int) -> int:
    if v < 2048:
        return v
    s = v.bit_length() - 1 - 10
    return (v >> s) << s


def hdr_representative(v: int) -> int:
    """The value vigil-stats' Histogram uses for v's bucket (Bucket::value():
    low + ceil((high - low) / 2) = lowest equivalent + width/2; v itself below
    2048)."""
    if v < 2048:
        return v
    s = v.bit_length() - 1 - 10
    return hdr_lowest_equivalent(v) + (1 << s) // 2


def assert_distinct_buckets(values: np.ndarray, name: str) -> None:
    uniq = np.unique(values)
    ids = {hdr_bucket(int(v)) for v in uniq}
    assert len(ids) == len(uniq), f"{name}: distinct values share an HDR bucket"


# --------------------------------------------------------------------------
# Mann-Whitney
# --------------------------------------------------------------------------

def compact(a: np.ndarray) -> list[list[int]]:
    vals, counts = np.unique(a, return_counts=True)
    return [[int(v), int(c)] for v, c in zip(vals, counts)]


def mwu_from_histograms(c: np.ndarray, b: np.ndarray) -> tuple[float, dict]:
    """Independent O(buckets) computation (what the Rust code does), used only
    to cross-check scipy."""
    cv, cc = np.unique(c, return_counts=True)
    bv, bc = np.unique(b, return_counts=True)
    vals = np.union1d(cv, bv)
    cmap = dict(zip(cv.tolist(), cc.tolist()))
    bmap = dict(zip(bv.tolist(), bc.tolist()))
    n1, n2 = int(cc.sum()), int(bc.sum())
    two_u = 0
    tie = 0
    below_b = 0
    for v in vals.tolist():
        ci, bi = cmap.get(v, 0), bmap.get(v, 0)
        two_u += ci * (2 * below_b + bi)
        t = ci + bi
        tie += t ** 3 - t
        below_b += bi
    u1 = two_u / 2
    n = n1 + n2
    mu = n1 * n2 / 2
    s = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))))
    ps = {}
    for alt in ALTS:
        if alt == "greater":
            u, f = u1, 1
        elif alt == "less":
            u, f = n1 * n2 - u1, 1
        else:
            u, f = max(u1, n1 * n2 - u1), 2
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.float64(u - mu - 0.5) / np.float64(s)
        ps[alt] = min(1.0, f * float(sc.ndtr(-z)))
    return u1, ps


def exact_dp(c: np.ndarray, b: np.ndarray) -> dict:
    """Exact permutation distribution of 2*U1 (midranks, with ties) by dynamic
    programming over distinct values, in exact integer arithmetic.
    Returns p-values as Fractions for the three alternatives."""
    n1 = len(c)
    N = n1 + len(b)
    pooled_vals, pooled_counts = np.unique(np.concatenate([c, b]), return_counts=True)
    ways = {(0, 0): 1}
    cum = 0
    for t in pooled_counts.tolist():
        new: dict = {}
        for (m, u2), w in ways.items():
            for a in range(0, min(t, n1 - m) + 1):
                # a canary items in this tie group: each beats the baseline
                # items below (cum - m of them, counted twice in 2U) and ties
                # with the (t - a) baseline items of the group (counted once).
                key = (m + a, u2 + a * 2 * (cum - m) + a * (t - a))
                new[key] = new.get(key, 0) + w * comb(t, a)
        ways = new
        cum += t
    dist = {u2: w for (m, u2), w in ways.items() if m == n1}
    total = comb(N, n1)
    assert sum(dist.values()) == total
    u1, _ = mwu_from_histograms(c, b)
    obs2 = int(round(2 * u1))
    g = Fraction(sum(w for k, w in dist.items() if k >= obs2), total)
    l = Fraction(sum(w for k, w in dist.items() if k <= obs2), total)
    return {"greater": g, "less": l, "two-sided": min(Fraction(1), 2 * min(g, l))}


def u1_statistic_factory(c: np.ndarray, b: np.ndarray):
    """Vectorised U1 (midranks) for permutation_test. The pooled sample is the
    same for every permutation, so a value's midrank is a fixed lookup."""
    pooled = np.sort(np.concatenate([c, b]))
    uniq, first, counts = np.unique(pooled, return_index=True, return_counts=True)
    midrank = first + (counts + 1) / 2.0
    n1 = len(c)

    def stat(x, y, axis=-1):
        return midrank[np.searchsorted(uniq, x)].sum(axis=axis) - n1 * (n1 + 1) / 2

    return stat


def exact_permutation_test(c: np.ndarray, b: np.ndarray) -> dict:
    stat = u1_statistic_factory(c, b)
    out = {}
    for alt in ALTS:
        res = st.permutation_test(
            (c, b), stat, permutation_type="independent", n_resamples=np.inf,
            alternative=alt, vectorized=True,
        )
        out[alt] = float(res.pvalue)
    return out


def mwu_case(name: str, desc: str, canary, baseline, perm_limit: int) -> dict:
    c = np.sort(np.asarray(canary, dtype=np.int64))
    b = np.sort(np.asarray(baseline, dtype=np.int64))
    assert c.ndim == 1 and b.ndim == 1 and len(c) > 0 and len(b) > 0, name
    assert c.min() >= 0 and b.min() >= 0, name
    assert_distinct_buckets(np.concatenate([c, b]), name)
    n1, n2 = len(c), len(b)

    p_asym = {}
    u = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # surface any scipy warning
        for alt in ALTS:
            r = st.mannwhitneyu(c, b, method="asymptotic", use_continuity=True, alternative=alt)
            if u is None:
                u = float(r.statistic)
            assert float(r.statistic) == u
            p_asym[alt] = fnum(r.pvalue)

    # Cross-check scipy against the O(buckets) formula.
    u_h, p_h = mwu_from_histograms(c, b)
    assert u_h == u, (name, u_h, u)
    for alt in ALTS:
        if p_asym[alt] is None:
            continue
        assert math.isclose(p_h[alt], p_asym[alt], rel_tol=1e-12, abs_tol=0.0), (name, alt, p_h[alt], p_asym[alt])
    assert 2 * u == int(2 * u)

    # Exact p-values.
    n_part = comb(n1 + n2, n1)
    p_exact = None
    exact_method = None
    if n1 + n2 <= 30 or n_part <= 1_000_000:
        dp = exact_dp(c, b)
        p_exact = {alt: float(dp[alt]) for alt in ALTS}
        exact_method = "dynamic programming over tie groups (exact rationals)"
        if n_part <= perm_limit and min(n1, n2) >= 2:  # permutation_test needs >= 2 per sample
            pt = exact_permutation_test(c, b)
            for alt in ALTS:
                assert abs(pt[alt] - p_exact[alt]) <= 1e-12, (name, alt, pt[alt], p_exact[alt])
            p_exact = pt  # the recorded value is scipy's
            exact_method = (f"scipy.stats.permutation_test, exhaustive over {n_part} partitions "
                            "(agrees with the DP to 1e-12)")
        has_ties = len(np.unique(np.concatenate([c, b]))) < n1 + n2
        if not has_ties:
            for alt in ALTS:
                pe = float(st.mannwhitneyu(c, b, method="exact", alternative=alt).pvalue)
                assert abs(pe - p_exact[alt]) <= 1e-12, (name, alt, pe, p_exact[alt])
            exact_method += "; no ties: agrees with mannwhitneyu(method='exact')"

    # The shift is recorded only if a histogram can reproduce it exactly:
    # every value must be its bucket's representative value (true for all
    # values < 2048).
    representable = all(int(v) == hdr_representative(int(v)) for v in np.unique(np.concatenate([c, b])))
    hl = None
    if n1 * n2 <= 4_000_000 and representable:
        hl = float(np.median(np.subtract.outer(c, b)))

    case = {
        "name": name,
        "canary": compact(c),
        "baseline": compact(b),
        "n_canary": n1,
        "n_baseline": n2,
        "u": u,
        "p_asymptotic": p_asym,
        "p_exact": p_exact,
        "hl_shift": hl,
    }
    full_desc = desc
    if exact_method:
        full_desc += f" [p_exact: {exact_method}]"
    return case, full_desc


def lognormal_ms(rng, n, median, sigma, mult=1.0, lo=0, hi=2047):
    x = np.exp(rng.normal(math.log(median), sigma, n)) * mult
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def build_mwu_cases(perm_limit: int):
    cases = []
    descs = {}

    def add(name, desc, c, b):
        case, d = mwu_case(name, desc, c, b, perm_limit)
        cases.append(case)
        descs[name] = d
        print(f"  mwu {name}: n={case['n_canary']}+{case['n_baseline']} U={case['u']} "
              f"p2={case['p_asymptotic']['two-sided']} exact={case['p_exact'] and case['p_exact']['two-sided']}",
              file=sys.stderr)

    # ---- small exact cases -------------------------------------------------
    add("exact_3v3_no_ties", "canary [12,15,20] vs baseline [3,7,9], no ties, canary all higher",
        [12, 15, 20], [3, 7, 9])
    add("exact_3v3_interleaved", "canary [2,5,9] vs baseline [1,6,8], no ties",
        [2, 5, 9], [1, 6, 8])
    add("exact_4v5_no_ties_with_zero", "canary [0,4,11,13] vs baseline [1,2,3,5,8], no ties, includes 0",
        [0, 4, 11, 13], [1, 2, 3, 5, 8])
    add("exact_5v5_ties", "canary [1,2,2,3,5] vs baseline [0,1,1,2,2], ties across arms",
        [1, 2, 2, 3, 5], [0, 1, 1, 2, 2])
    add("exact_6v4_heavy_ties", "canary six values from {0,1} vs baseline four from {0,1}, only 2 distinct values",
        [0, 1, 1, 1, 1, 1], [0, 0, 0, 1])
    add("exact_8v5_asymptotic_too_optimistic",
        "canary [1,1,1,2,2,2,2,2] vs baseline [0,0,0,1,2]: asymptotic two-sided p ~0.049 but exact (ties) p ~0.065",
        [1, 1, 1, 2, 2, 2, 2, 2], [0, 0, 0, 1, 2])
    rng = np.random.default_rng(20240601)
    c = rng.permutation(np.arange(0, 200))[:16]
    add("exact_8v8_no_ties", "8 vs 8 distinct integers drawn without replacement from 0..199 (default_rng(20240601))",
        c[:8], c[8:])
    rng = np.random.default_rng(20240602)
    add("exact_10v10_ties", "10 vs 10 from integers 0..5, canary +1 shifted (default_rng(20240602))",
        rng.integers(0, 5, 10) + 1, rng.integers(0, 5, 10))
    rng = np.random.default_rng(20240603)
    add("exact_12v12_ties", "12 vs 12 from integers 0..9 (default_rng(20240603)), null",
        rng.integers(0, 10, 12), rng.integers(0, 10, 12))
    rng = np.random.default_rng(20240604)
    c = rng.permutation(np.arange(0, 1000))[:30]
    add("exact_15v15_no_ties", "15 vs 15 distinct integers from 0..999, canary +150 (default_rng(20240604))",
        c[:15] + 150, c[15:])
    rng = np.random.default_rng(20240605)
    add("exact_15v15_ties", "15 vs 15 from integers 0..6 (default_rng(20240605)), canary +1 on 5 of its samples",
        np.concatenate([rng.integers(0, 7, 10), rng.integers(1, 8, 5)]), rng.integers(0, 7, 15))
    rng = np.random.default_rng(20240606)
    add("unequal_2v40", "2 canary [180, 260] vs 40 baseline lognormal ms (median 150, sigma 0.6; default_rng(20240606))",
        [180, 260], lognormal_ms(rng, 40, 150, 0.6))
    rng = np.random.default_rng(20240607)
    add("unequal_40v2", "40 canary lognormal ms (median 150, sigma 0.6; default_rng(20240607)) vs 2 baseline [90, 150]",
        lognormal_ms(rng, 40, 150, 0.6), [90, 150])
    add("single_value_arms_all_tied",
        "canary 5 x value 7, baseline 9 x value 7: every observation tied, variance 0; "
        "scipy gives z = -0.5/0 = -inf and p = 1 (not nan) for every alternative",
        [7] * 5, [7] * 9)
    add("single_value_arms_different", "canary 6 x value 9, baseline 8 x value 4: one value per arm, complete separation",
        [9] * 6, [4] * 8)
    add("one_canary_vs_many", "1 canary sample (value 0) vs 60 baseline values 0..59",
        [0], np.arange(60))

    # ---- larger asymptotic-only cases ---------------------------------------
    rng = np.random.default_rng(1001)
    add("heavy_ties_few_distinct", "500 vs 600 from values {0,1,2,3} (canary probs .4/.3/.2/.1, baseline .45/.3/.15/.1; default_rng(1001))",
        rng.choice(4, 500, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(4, 600, p=[0.45, 0.3, 0.15, 0.1]))
    rng = np.random.default_rng(1002)

    def one_bucket(n, mult):
        x = np.full(n, 150, dtype=np.int64)
        m = rng.random(n) >= 0.97
        x[m] = lognormal_ms(rng, int(m.sum()), 300, 0.8, mult=mult, lo=0)
        return x
    add("one_bucket_97pct", "20000 vs 20000 ms, 97% of each arm at value 150, rest lognormal(median 300, sigma .8), canary rest x1.3 (default_rng(1002))",
        one_bucket(20000, 1.3), one_bucket(20000, 1.0))
    rng = np.random.default_rng(1003)

    def coarse(n, mult, median=120):
        ms = np.exp(rng.normal(math.log(median), 0.9, n)) * mult
        return (np.rint(ms / 10) * 10000).astype(np.int64)  # 10 ms ticks in microseconds
    add("coarse_10ms_timers", "2000 vs 2000 latencies in us, multiples of 10000 (10 ms timer), lognormal median 60 ms sigma .9, canary x1.2, includes 0 (default_rng(1003))",
        coarse(2000, 1.2, 60), coarse(2000, 1.0, 60))
    rng = np.random.default_rng(1004)
    add("coarse_10ms_timers_unequal", "300 canary vs 7000 baseline, 10 ms ticks in us, same distribution (lognormal median 120 ms sigma .9) (default_rng(1004))",
        coarse(300, 1.0), coarse(7000, 1.0))
    rng = np.random.default_rng(1017)
    add("coarse_10ms_timers_in_ms", "2000 vs 2000 latencies in integer ms rounded to 10 ms ticks (multiples of 10, "
        "clipped to 2040), lognormal median 60 ms sigma .9, canary x1.2, includes 0 (default_rng(1017))",
        np.clip(coarse(2000, 1.2, 60) // 1000, 0, 2040), np.clip(coarse(2000, 1.0, 60) // 1000, 0, 2040))
    rng = np.random.default_rng(1005)
    add("large_1e5_per_arm", "100000 vs 100000 integer ms lognormal median 150 sigma .6 clipped to [0,2047], canary x1.01 (default_rng(1005))",
        lognormal_ms(rng, 100_000, 150, 0.6, mult=1.01), lognormal_ms(rng, 100_000, 150, 0.6))
    rng = np.random.default_rng(1006)
    add("one_percent_canary", "1000 canary vs 99000 baseline integer ms, same lognormal (median 150, sigma .6) (default_rng(1006))",
        lognormal_ms(rng, 1000, 150, 0.6), lognormal_ms(rng, 99_000, 150, 0.6))
    rng = np.random.default_rng(1007)
    add("one_percent_canary_regressed", "1000 canary x1.1 vs 99000 baseline integer ms lognormal (median 150, sigma .6) (default_rng(1007))",
        lognormal_ms(rng, 1000, 150, 0.6, mult=1.1), lognormal_ms(rng, 99_000, 150, 0.6))
    rng = np.random.default_rng(1008)
    add("shifted_up_strong", "2000 vs 2000 integer ms lognormal median 150 sigma .6, canary x1.5: greater p ~1e-80 (default_rng(1008))",
        lognormal_ms(rng, 2000, 150, 0.6, mult=1.5), lognormal_ms(rng, 2000, 150, 0.6))
    rng = np.random.default_rng(1009)
    add("shifted_up_moderate", "3000 vs 3000 integer ms lognormal, canary x1.25: greater p ~1e-54 (default_rng(1009))",
        lognormal_ms(rng, 3000, 150, 0.6, mult=1.25), lognormal_ms(rng, 3000, 150, 0.6))
    rng = np.random.default_rng(1010)
    add("shifted_down_strong", "2000 vs 2000 integer ms lognormal median 150 sigma .6, canary x0.7 (faster) (default_rng(1010))",
        lognormal_ms(rng, 2000, 150, 0.6, mult=0.7), lognormal_ms(rng, 2000, 150, 0.6))
    rng = np.random.default_rng(1011)
    add("shifted_up_extreme", "6000 vs 6000 integer ms lognormal median 150 sigma .6, canary x1.5: greater p ~6e-261 "
        "(deep tail of the normal sf, still a normal double) (default_rng(1011))",
        lognormal_ms(rng, 6000, 150, 0.6, mult=1.5), lognormal_ms(rng, 6000, 150, 0.6))
    rng = np.random.default_rng(1012)
    x = lognormal_ms(rng, 3000, 150, 0.6)
    add("identical_arms", "both arms the same 3000 integer ms values (U = n1*n2/2, two-sided p clipped to 1) (default_rng(1012))",
        x, x.copy())
    rng = np.random.default_rng(1013)
    add("small_moderate_shift", "40 vs 50 integer ms lognormal median 150 sigma .6, canary x1.4 (default_rng(1013))",
        lognormal_ms(rng, 40, 150, 0.6, mult=1.4), lognormal_ms(rng, 50, 150, 0.6))
    rng = np.random.default_rng(1014)

    def tail_regressed(n, regress):
        x = lognormal_ms(rng, n, 150, 0.6)
        if regress:
            top = x >= np.quantile(x, 0.99)
            x[top] = np.clip(x[top] * 2, 0, 2047)
        return x
    add("tail_only_regression", "50000 vs 50000 integer ms, canary's top 1% doubled (clipped 2047) (default_rng(1014))",
        tail_regressed(50_000, True), tail_regressed(50_000, False))
    rng = np.random.default_rng(1015)

    def quantized_us(n, mult):
        us = np.exp(rng.normal(math.log(150_000), 0.7, n)) * mult
        us = np.clip(np.rint(us), 0, 50_000_000).astype(np.int64)
        return np.array([hdr_representative(int(v)) for v in us], dtype=np.int64)
    add("hdr_quantized_us", "1500 vs 2000 latencies in us (lognormal median 150 ms sigma .7, canary x1.03), each value "
        "replaced by its HDR bucket's representative value (lowest equivalent + width/2, as vigil-stats' "
        "Bucket::value()), so hl_shift is exact from histograms (default_rng(1015))",
        quantized_us(1500, 1.03), quantized_us(2000, 1.0))
    rng = np.random.default_rng(1016)
    add("zeros_mass", "800 vs 900 error-ish counts: 60%/70% zeros then geometric, values include 0 (default_rng(1016))",
        np.where(rng.random(800) < 0.6, 0, rng.geometric(0.3, 800)),
        np.where(rng.random(900) < 0.7, 0, rng.geometric(0.3, 900)))

    # sanity on the expected special values
    by = {c["name"]: c for c in cases}
    ia = by["identical_arms"]
    assert ia["u"] == ia["n_canary"] * ia["n_baseline"] / 2 and ia["p_asymptotic"]["two-sided"] == 1.0
    assert by["shifted_up_strong"]["p_asymptotic"]["greater"] < 1e-30
    assert 1e-290 < by["shifted_up_extreme"]["p_asymptotic"]["greater"] < 1e-200
    for c in cases:  # no underflow to 0 anywhere: relative tolerances stay meaningful
        assert all(p is None or p > 1e-300 for p in c["p_asymptotic"].values()), c["name"]
    assert by["shifted_down_strong"]["p_asymptotic"]["less"] < 1e-30
    e = by["exact_8v5_asymptotic_too_optimistic"]
    assert e["p_asymptotic"]["two-sided"] < 0.05 < e["p_exact"]["two-sided"]
    assert len(cases) >= 24
    return cases, descs


# --------------------------------------------------------------------------
# savvi (Dirichlet-multinomial e-values)
# --------------------------------------------------------------------------

def closed_form_log_e(theta0, k, counts) -> float:
    a0 = k * np.asarray(theta0, dtype=float)
    n = np.asarray(counts, dtype=float)
    lb = lambda v: float(np.sum(sc.gammaln(v)) - sc.gammaln(np.sum(v)))  # noqa: E731
    return lb(a0 + n) - lb(a0) - float(np.sum(sc.xlogy(n, theta0)))


def savvi_case(name, theta0, k, updates, check_infer_steps=0):
    theta0 = np.array(theta0, dtype=float)
    assert theta0.sum() == 1.0, name  # savvi requires an exact sum
    m = Multinomial(0.05, theta0, k=k)
    shadow = Multinomial(0.05, theta0, k=k) if check_infer_steps else None
    p_run = np.ones(1)
    log_e, p_value = [], []
    counts = np.zeros(len(theta0), dtype=np.int64)
    for i, x in enumerate(updates):
        x = np.asarray(x, dtype=np.int64)
        assert x.shape == theta0.shape and (x >= 0).all()
        m.update(x)
        counts += x
        le = float(np.log(m.odds))
        assert math.isfinite(le), (name, i)
        # Inference.infer(): p_value = fmin(p_value, calculate_p_value()),
        # starting from 1; calculate_p_value() = 1 / odds. infer() also solves
        # cvxpy problems for the confidence set, which we do not need.
        p_run = np.fmin(p_run, m.calculate_p_value())
        log_e.append(le)
        p_value.append(float(p_run[0]))
        cf = closed_form_log_e(theta0, k, counts)
        assert abs(cf - le) <= 1e-9 * max(1.0, abs(cf)), (name, i, cf, le)
        if shadow is not None and i < check_infer_steps:
            shadow.update(x)
            shadow.infer()
            assert math.isclose(float(shadow.p_value[0]), p_value[-1], rel_tol=1e-12), (name, i)
    return {
        "name": name,
        "theta_0": theta0.tolist(),
        "k": float(k),
        "updates": [[int(v) for v in x] for x in updates],
        "log_e": log_e,
        "p_value": p_value,
    }


def canary_slices(rng, n_slices, requests, base_rate, rho, mult):
    """Per-time-slice error counts [canary, baseline]: canary gets rho of the
    requests with error rate base_rate*mult, baseline 1-rho with base_rate."""
    x = rng.poisson(requests * rho * base_rate * mult, n_slices)
    y = rng.poisson(requests * (1 - rho) * base_rate, n_slices)
    return [[int(a), int(b)] for a, b in zip(x, y)]


def build_savvi_cases():
    cases, descs = [], {}

    def add(case, desc):
        cases.append(case)
        descs[case["name"]] = desc
        print(f"  savvi {case['name']}: {len(case['updates'])} updates, final log_e={case['log_e'][-1]:.6g} "
              f"p={case['p_value'][-1]:.3g}", file=sys.stderr)

    # savvi's own documentation tests (legacy np.random.seed(1) stream, as in savvi's docs)
    rs = np.random.RandomState(1)
    xs = rs.multinomial(1, np.array([0.1, 0.3, 0.6]), size=1000)
    c = savvi_case("savvi_doc_multinomial_n402", [0.1, 0.4, 0.5], 100, xs.tolist(), check_infer_steps=40)
    stop = next(i for i, p in enumerate(c["p_value"]) if p <= 0.05)
    assert stop + 1 == 402
    np.testing.assert_almost_equal(c["p_value"][stop], 0.04845591105969517)
    add(c, "savvi docs (examples/Multinomial.qmd) sample-ratio-mismatch test: np.random.seed(1); "
           "1000 single draws Multinomial(1, [0.1,0.3,0.6]) tested against theta_0=[0.1,0.4,0.5], k=100; "
           "first p_value <= 0.05 at n=402 with p=0.04845591105969517 (savvi's doc test value)")

    rho = np.array([0.8, 0.2])
    delta = np.array([1.5, 2.0])
    theta = rho * np.exp(delta) / np.sum(rho * np.exp(delta))
    rs = np.random.RandomState(1)
    xs = rs.multinomial(1, theta, size=1500)
    c = savvi_case("savvi_doc_poisson_process_n210", [0.8, 0.2], 100, xs.tolist())
    stop = next(i for i, p in enumerate(c["p_value"]) if p <= 0.05)
    assert stop + 1 == 210
    np.testing.assert_almost_equal(c["p_value"][stop], 0.045579631759249686)
    add(c, "savvi docs (examples/InhomogeneousPoissonProcess.qmd) canary test, same closed-form odds as "
           "Multinomial: np.random.seed(1); 1500 single draws Multinomial(1, theta), theta = rho*exp(delta)/sum, "
           "rho=[0.8,0.2], delta=[1.5,2] (theta ~[0.70,0.30]); theta_0=rho, k=100; first p_value <= 0.05 at "
           "n=210 with p=0.045579631759249686 (savvi's doc test value)")

    rng = np.random.default_rng(2001)
    xs = rng.multinomial(1, [0.2, 0.3, 0.5], size=300)
    add(savvi_case("d3_null_single", [0.2, 0.3, 0.5], 100, xs.tolist()),
        "d=3 null: 300 single draws from theta_0=[0.2,0.3,0.5], k=100 (default_rng(2001))")
    rng = np.random.default_rng(2002)
    xs = rng.multinomial(40, [0.25, 0.25, 0.5], size=25)
    add(savvi_case("d3_batches_shifted", [0.2, 0.3, 0.5], 30, xs.tolist()),
        "d=3: 25 batches of 40 draws from [0.25,0.25,0.5] against theta_0=[0.2,0.3,0.5], k=30 (default_rng(2002))")

    # Two-outcome (beta-binomial) canary error counts: [canary errors, baseline errors].
    seed = 3000
    for rho_c in (0.1, 0.5):
        for k in (10, 100, 10000):
            for label, mult in (("null", 1.0), ("regressed", 3.0 if rho_c == 0.1 else 2.0)):
                seed += 1
                rng = np.random.default_rng(seed)
                ups = canary_slices(rng, 60, 20000, 0.001, rho_c, mult)
                name = f"binary_rho{rho_c}_k{k}_{label}"
                add(savvi_case(name, [rho_c, 1 - rho_c], k, ups),
                    f"canary errors vs baseline errors per time slice: 60 slices of 20000 requests, canary share "
                    f"{rho_c}, error rate 0.1% (canary x{mult}), theta_0=[{rho_c},{1 - rho_c}], k={k} "
                    f"(default_rng({seed}))")
    rng = np.random.default_rng(3101)
    ups = canary_slices(rng, 80, 2000, 0.001, 0.1, 1.0)
    assert sum(1 for u in ups if u == [0, 0]) > 0
    add(savvi_case("binary_rho0.1_k100_sparse_slices", [0.1, 0.9], 100, ups),
        "80 slices of 2000 requests at 0.1% errors, canary share 0.1, null; many [0,0] slices "
        "(e-value unchanged) (default_rng(3101))")
    rng = np.random.default_rng(3102)
    th = 0.1 * 3 / (0.1 * 3 + 0.9)
    xs = rng.multinomial(1, [th, 1 - th], size=300)
    add(savvi_case("binary_rho0.1_k100_single_obs", [0.1, 0.9], 100, xs.tolist()),
        "300 single error observations, P(error is from canary) = 0.3/1.2 = 0.25 vs rho 0.1, k=100 (default_rng(3102))")
    rng = np.random.default_rng(3103)
    ups = canary_slices(rng, 40, 20000, 0.001, 0.5, 0.4)
    add(savvi_case("binary_rho0.5_k100_improved", [0.5, 0.5], 100, ups),
        "40 slices of 20000 requests, canary share 0.5 with 0.4x the baseline error rate (improvement: the "
        "two-sided e-value grows too) (default_rng(3103))")
    rng = np.random.default_rng(3104)
    ups = canary_slices(rng, 40, 20000, 0.002, 0.5, 2.0)
    c = savvi_case("binary_rho0.5_k100_large_e", [0.5, 0.5], 100, ups)
    assert 50 < c["log_e"][-1] < 700
    add(c, "40 slices of 20000 requests at 0.2% errors, canary share 0.5, canary 2x errors: final log e > 50 "
           "(default_rng(3104))")
    rng = np.random.default_rng(3105)
    ups = [[3, 20]] + canary_slices(rng, 30, 50000, 0.0005, 0.1, 1.5)
    add(savvi_case("binary_rho0.1_k10_batches", [0.1, 0.9], 10, ups),
        "first slice [3,20], then 30 slices of 50000 requests at 0.05% errors, canary share 0.1, canary x1.5, "
        "k=10 (default_rng(3105))")
    return cases, descs


# --------------------------------------------------------------------------
# One-sided beta-binomial e-value
# --------------------------------------------------------------------------

def one_sided_log_e_scipy(rho, k, x, y):
    """log e with e = [int_rho^1 t^x (1-t)^y Beta(t; a, b) dt / P(t > rho)] / (rho^x (1-rho)^y),
    a = k rho, b = k (1-rho). Returns None if a regularized tail underflows."""
    a, b = k * rho, k * (1 - rho)
    post_tail = sc.betaincc(a + x, b + y, rho)   # P(t > rho) under Beta(a+x, b+y)
    prior_tail = sc.betaincc(a, b, rho)
    if not (post_tail > 1e-290 and prior_tail > 1e-290):
        return None
    return float(sc.betaln(a + x, b + y) - sc.betaln(a, b) + math.log(post_tail) - math.log(prior_tail)
                 - sc.xlogy(x, rho) - sc.xlog1py(y, -rho))


def _mp_betainc_cf(p, q, z):
    """Regularized incomplete beta I_z(p, q) by the Lentz continued fraction at
    the current mpmath precision (used where mpmath.betainc's hypergeometric
    series fails to converge for large parameters). Tiny results come from the
    direct branch, so no cancellation."""
    if z > (p + 1) / (p + q + 2):
        return 1 - _mp_betainc_cf(q, p, 1 - z)
    tiny = mpmath.mpf(10) ** (-mpmath.mp.dps * 4)
    eps = mpmath.mpf(10) ** (-(mpmath.mp.dps + 5))
    front = mpmath.exp(p * mpmath.log(z) + q * mpmath.log1p(-z) - mpmath.log(p) - mpmath.log(mpmath.beta(p, q)))
    f, c, d = mpmath.mpf(1), mpmath.mpf(1), mpmath.mpf(0)
    for i in range(0, 200000):
        m = i // 2
        if i == 0:
            num = mpmath.mpf(1)
        elif i % 2 == 0:
            num = (m * (q - m) * z) / ((p + 2 * m - 1) * (p + 2 * m))
        else:
            num = -((p + m) * (p + q + m) * z) / ((p + 2 * m) * (p + 2 * m + 1))
        d = 1 + num * d
        d = tiny if abs(d) < tiny else d
        d = 1 / d
        c = 1 + num / c
        c = tiny if abs(c) < tiny else c
        cd = c * d
        f *= cd
        if abs(1 - cd) < eps:
            return front * (f - 1)
    raise RuntimeError("continued fraction did not converge")


def _mp_upper_tail_integral(p, q, r):
    """int_r^1 t^(p-1) (1-t)^(q-1) dt = int_0^(1-r) u^(q-1) (1-u)^(p-1) du, by
    mpmath.betainc from 0 (a single hypergeometric series; betainc(p, q, r, 1)
    subtracts two values and returns 0 for tiny tails) when its series
    converges, cross-checked against the continued fraction; else by the
    continued fraction alone."""
    cf = mpmath.beta(p, q) * _mp_betainc_cf(q, p, 1 - r)
    try:
        direct = mpmath.betainc(q, p, 0, 1 - r)
    except ValueError:
        return cf
    assert abs(direct - cf) <= mpmath.mpf(10) ** -30 * abs(direct), (p, q, r, direct, cf)
    return direct


def one_sided_log_e_mpmath(rho, k, x, y):
    with mpmath.workdps(50):
        r = mpmath.mpf(rho)          # the exact binary value of the double
        a = mpmath.mpf(k * rho)      # same doubles as the scipy path
        b = mpmath.mpf(k * (1 - rho))
        num = _mp_upper_tail_integral(a + x, b + y, r)  # unregularised integral over (rho, 1)
        den = _mp_upper_tail_integral(a, b, r)
        return mpmath.log(num) - mpmath.log(den) - x * mpmath.log(r) - y * mpmath.log(1 - r)


def build_one_sided():
    combos = [
        (0.1, 100, 0, 0), (0.1, 100, 0, 5), (0.1, 100, 5, 0), (0.1, 100, 1, 9),
        (0.1, 10, 30, 20), (0.1, 100, 30, 20), (0.1, 10000, 30, 20),
        (0.1, 100, 2, 98), (0.1, 100, 0, 50),
        (0.1, 100, 500, 4500), (0.1, 100, 700, 4300), (0.1, 100, 300, 4700), (0.1, 100, 5, 4995),
        (0.1, 10000, 700, 4300), (0.1, 10, 2000, 3000),
        (0.5, 100, 0, 0), (0.5, 100, 10, 0), (0.5, 10, 0, 10),
        (0.5, 100, 2500, 2500), (0.5, 100, 2700, 2300), (0.5, 100, 2300, 2700),
        (0.5, 10000, 2700, 2300), (0.5, 100, 1000, 4000),
    ]
    cases, descs = [], {}
    for rho, k, x, y in combos:
        name = f"one_sided_rho{rho}_k{k}_x{x}_y{y}"
        mp = one_sided_log_e_mpmath(rho, k, x, y)
        sp = one_sided_log_e_scipy(rho, k, x, y)
        # Record the 50-digit value rounded to double: the scipy formula loses
        # up to ~1e-11 relative to cancellation between the two betaln terms
        # (k = 10000) and underflows in betaincc for far-below-rho data.
        val = float(mp)
        if sp is None:
            how = "scipy betaincc underflows here; mpmath only"
        else:
            assert abs(mpmath.mpf(sp) - mp) <= 1e-10 * max(1, abs(mp)), (name, sp, mp)
            how = "scipy formula agrees to 1e-10"
        if x == 0 and y == 0:
            assert abs(val) < 1e-14
            val = 0.0 if abs(val) < 1e-15 else val
        cases.append({"name": name, "rho": rho, "k": float(k), "x": x, "y": y, "log_e": val})
        descs[name] = f"rho={rho}, k={k}, canary errors x={x}, baseline errors y={y} ({how})"
        print(f"  one-sided {name}: log_e={val:.10g} ({how})", file=sys.stderr)
    return cases, descs


# --------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1, allow_nan=False)
    # keep [value, count] pairs and short numeric lists on one line
    import re
    text = re.sub(r"\[\s+(-?[0-9.eE+-]+),\s+(-?[0-9.eE+-]+)\s+\]", r"[\1, \2]", text)
    text = re.sub(r"\[\s+(-?[0-9.eE+-]+),\s+(-?[0-9.eE+-]+),\s+(-?[0-9.eE+-]+)\s+\]", r"[\1, \2, \3]", text)
    json.loads(text)
    path.write_text(text + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perm-limit", type=int, default=3_000_000,
                    help="run scipy.stats.permutation_test (exhaustive) when C(n1+n2, n1) <= this; "
                         "otherwise small cases use the exact DP only")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args()

    mwu_cases, mwu_descs = build_mwu_cases(args.perm_limit)
    mwu = {
        "generator": generator_header(
            "Mann-Whitney U golden cases. Samples are [value, count] pairs sorted by value (expand with np.repeat). "
            "u = mannwhitneyu(canary, baseline, method='asymptotic', use_continuity=True).statistic = U1 of the "
            "canary (pairs canary > baseline plus half the ties). p_asymptotic: the same call with alternative "
            "two-sided/greater/less (tie-corrected variance, continuity correction 0.5, two-sided = "
            "min(1, 2*sf(max(U1,U2)))). p_exact (null unless n1+n2 <= 30 or C(n1+n2,n1) <= 1e6): exact "
            "permutation p-value of U1 with midranks (ties kept), scipy.stats.permutation_test(..., "
            "permutation_type='independent', n_resamples=inf) semantics: greater = P(U1* >= U1), less = "
            "P(U1* <= U1), two-sided = min(1, 2*min(greater, less)). hl_shift = np.median of all canary-minus-"
            "baseline differences (null when n1*n2 > 4e6, or when some value >= 2048 is not its HDR bucket's "
            "representative value lowest_equivalent + width/2, since a histogram cannot reproduce it exactly). All-tied data: scipy returns p = 1 (z = -0.5/0 = "
            "-inf), not nan.",
            mwu_descs,
            {"hdr_note": "every case's distinct values fall in distinct buckets of an HDR histogram with 3 "
                         "significant digits (values < 2048 exact; v >= 2048 bucket width 2^(floor(log2 v)-10)); "
                         "hl_shift is given only where every value equals its bucket's representative value"},
        ),
        "cases": mwu_cases,
    }
    write_json(args.out_dir / "mann_whitney.json", mwu)

    sv_cases, sv_descs = build_savvi_cases()
    os_cases, os_descs = build_one_sided()
    descs = dict(sv_descs)
    descs.update(os_descs)
    sv = {
        "generator": generator_header(
            "Dirichlet-multinomial e-values (Lindon & Malek 2022) from savvi.multinomial.Multinomial(alpha=0.05, "
            "theta_0, k); prior Dirichlet(k*theta_0). For each case the updates are applied in order with "
            "m.update(x) (x = counts per category, a single observation or a batch) and log_e[i] = np.log(m.odds) "
            "after update i, i.e. log_e = logB(k*theta_0 + n) - logB(k*theta_0) - sum_j n_j log theta_0j with n "
            "the cumulative counts (logB(v) = sum lgamma(v_j) - lgamma(sum v)); savvi accumulates it "
            "incrementally through exp/log, and agrees with the closed form to 1e-9 here.",
            descs,
            {
                "p_value_note": "savvi.Multinomial.update() does NOT change m.p_value (it stays [1.0]); "
                                "Inference.infer() sets p_value = np.fmin(p_value, calculate_p_value()) with "
                                "calculate_p_value() = 1/odds, starting from 1 (and also solves cvxpy problems "
                                "for the confidence set). The p_value lists here are what m.p_value holds when "
                                "infer() is called after every update: p_value[i] = min(1, min_{j<=i} "
                                "exp(-log_e[j])) (checked against a real infer() for the first 40 updates of "
                                "savvi_doc_multinomial_n402).",
                "one_sided_note": "one_sided: e-value for H0 'canary share theta <= rho' against a "
                                  "Beta(k rho, k(1-rho)) prior truncated to theta > rho: e = [int_rho^1 "
                                  "theta^x (1-theta)^y Beta(theta; k rho, k(1-rho)) dtheta / P_prior(theta > rho)] "
                                  "/ (rho^x (1-rho)^y), x = canary errors, y = baseline errors (cumulative); "
                                  "log_e = betaln(a+x,b+y) - betaln(a,b) + log betaincc(a+x,b+y,rho) - "
                                  "log betaincc(a,b,rho) - x log rho - y log(1-rho), a = k rho, b = k(1-rho). "
                                  "Recorded log_e = the mpmath value at 50 digits (tail integrals by "
                                  "mpmath.betainc from 0, or a Lentz continued fraction where that series "
                                  "fails), rounded to double; the scipy.special formula agrees within 1e-10 "
                                  "relative wherever betaincc does not underflow.",
            },
        ),
        "cases": sv_cases,
        "one_sided": os_cases,
    }
    write_json(args.out_dir / "savvi.json", sv)


if __name__ == "__main__":
    main()
