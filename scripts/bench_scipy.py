#!/usr/bin/env python3
"""scipy baseline for docs/BENCHMARKS.md: Mann-Whitney U on 1e6 + 1e6 samples.

Generates 1,000,000 baseline and 1,000,000 canary latencies in integer
milliseconds (lognormal, median 150 ms, sigma 0.6; canary multiplied by 1.05;
rounded to integers and clipped to [1, 2047] so every value is exact in an HDR
histogram with 3 significant digits), writes them one per line to two gzip
files, then times

    scipy.stats.mannwhitneyu(canary, baseline, method="asymptotic")

(best of 3, time.perf_counter) and prints one JSON object:

    {"n_baseline", "n_canary", "u", "p_value", "z", "scipy_seconds",
     "scipy_version", "numpy_version"}

(p_value underflows to 0.0 at this size and shift; "z" is scipy's
standardised statistic, (max(U1,U2) - n1 n2/2 - 0.5)/sigma with the tie
correction, for a non-degenerate comparison.)

Usage:
    pip install scipy==1.14.1 numpy==2.2.6
    python3 scripts/bench_scipy.py [BASELINE_GZ [CANARY_GZ]]
    # defaults: /tmp/vigil-bench/baseline.txt.gz /tmp/vigil-bench/canary.txt.gz

The files are the input for the matching Rust benchmark (same samples, so
`u` and `p_value` must agree to 1e-9 relative). Only the mannwhitneyu call is
timed, not file I/O or data generation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.stats as st

SEED = 20240611
N = 1_000_000
MEDIAN_MS = 150.0
SIGMA = 0.6
CANARY_MULT = 1.05


def samples(rng: np.random.Generator, n: int, mult: float) -> np.ndarray:
    x = rng.lognormal(mean=np.log(MEDIAN_MS), sigma=SIGMA, size=n) * mult
    return np.clip(np.rint(x), 1, 2047).astype(np.int64)


def write_gz(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(map(str, values.tolist())) + "\n"
    # mtime=0: byte-identical output on every run
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text.encode("ascii"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", nargs="?", type=Path, default=Path("/tmp/vigil-bench/baseline.txt.gz"))
    ap.add_argument("canary", nargs="?", type=Path, default=Path("/tmp/vigil-bench/canary.txt.gz"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--multiplier", type=float, default=CANARY_MULT,
                    help="canary latency multiplier (1.002 keeps p above underflow)")
    args = ap.parse_args()

    rng = np.random.default_rng(SEED)
    baseline = samples(rng, N, 1.0)
    canary = samples(rng, N, args.multiplier)
    write_gz(args.baseline, baseline)
    write_gz(args.canary, canary)

    best = float("inf")
    res = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = st.mannwhitneyu(canary, baseline, method="asymptotic")
        best = min(best, time.perf_counter() - t0)

    # With 1e6 per arm and a 5% shift the two-sided p-value underflows to 0.0 in
    # double precision, so also report the standardised statistic scipy uses
    # (tie-corrected, continuity-corrected, from max(U1, U2)) for comparison.
    n1, n2 = canary.size, baseline.size
    _, t = np.unique(np.concatenate([canary, baseline]), return_counts=True)
    t = t.astype(np.float64)
    n = n1 + n2
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))))
    u_max = max(res.statistic, n1 * n2 - res.statistic)
    z = (u_max - n1 * n2 / 2 - 0.5) / s

    print(json.dumps({
        "n_baseline": int(baseline.size),
        "n_canary": int(canary.size),
        "u": float(res.statistic),
        "p_value": float(res.pvalue),
        "z": float(z),
        "multiplier": args.multiplier,
        "scipy_seconds": best,
        "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
    }))


if __name__ == "__main__":
    main()
