#!/usr/bin/env python3
"""Golden reference values for `vigil_stats::sequential::rank_shift`.

Writes crates/vigil-stats/tests/golden/rank_shift.json.

    pip install scipy==1.14.1 numpy==2.2.6
    python3 scripts/gen_rank_shift_golden.py

An independent implementation of the e-process from its definition: per
slice, pooled midranks by scipy.stats.rankdata, scores u = (rank - 1/2) / N,
the canary's score sum T, and ln e_theta += theta T - n_canary ln M(theta),
where M is the moment generating function of the score of a uniform U:
    body:      g(u) = u - 1/2,                       M = sinh(theta/2) / (theta/2)
    tail(q):   g(u) = max(0, (u - q) / (1 - q))^2,   M = q + (1 - q) * integral_0^1 exp(theta v^2) dv
(the integral by scipy.integrate.quad); the e-value is the mean of e_theta
over the bets. Values are integers below 2048, which HDR histograms hold
exactly, so no tolerance mapping is involved (tolerance 0: both arms as is).

Tolerance in the Rust test: ln e within 1e-9 relative + 1e-6 absolute (the
Rust side integrates with Simpson's rule on 2048 intervals).
"""
import datetime
import json
import math
import os
import sys

import numpy as np
import scipy
from scipy import integrate, stats

THETAS = [0.03, 0.048, 0.077, 0.123, 0.197, 0.315, 0.5, 0.8, 1.3, 2.1, 3.3, 5.3, 8.5, 13.6, 21.7]


def ln_m(kind, q, theta):
    if kind == "body":
        return math.log(math.sinh(theta / 2) / (theta / 2))
    i, _ = integrate.quad(lambda v: math.exp(theta * v * v), 0.0, 1.0, epsabs=0, epsrel=1e-13, limit=200)
    return math.log(q + (1 - q) * i)


def score(kind, q, u):
    if kind == "body":
        return u - 0.5
    v = np.maximum(0.0, (u - q) / (1 - q))
    return v * v


def run(kind, q, direction, slices):
    ln_w = np.zeros(len(THETAS))
    lms = np.array([ln_m(kind, q, t) for t in THETAS])
    out = []
    for canary, baseline in slices:
        c = np.array(canary, dtype=float)
        b = np.array(baseline, dtype=float)
        pooled = np.concatenate([c, b])
        if direction == "decrease":
            pooled = -pooled
        ranks = stats.rankdata(pooled, method="average")
        u = (ranks - 0.5) / len(pooled)
        t = score(kind, q, u[: len(c)]).sum()
        ln_w += np.array(THETAS) * t - len(c) * lms
        m = ln_w.max()
        out.append(float(m + math.log(np.exp(ln_w - m).mean())))
    return out


def main():
    rng = np.random.default_rng(20261124)
    cases = []
    for name, kind, q, direction, shift, tail in [
        ("body, +8% shift", "body", 0.0, "increase", 1.08, 0.0),
        ("body, A/A", "body", 0.0, "increase", 1.0, 0.0),
        ("body, decrease, 10% faster", "body", 0.0, "decrease", 0.9, 0.0),
        ("tail p99, 3% of canary x3", "tail", 0.99, "increase", 1.0, 0.03),
        ("tail p90, A/A", "tail", 0.9, "increase", 1.0, 0.0),
        ("tail p90 of a decrease, heavy ties", "tail", 0.9, "decrease", 0.8, 0.0),
    ]:
        slices = []
        for s in range(12):
            n_c = int(rng.integers(5, 60))
            n_b = int(rng.integers(50, 400))
            base = rng.lognormal(math.log(150), 0.6, n_b)
            can = rng.lognormal(math.log(150), 0.6, n_c) * shift
            slow = rng.random(n_c) < tail
            can = np.where(slow, can * 3, can)
            if "ties" in name:
                base, can = np.round(base / 20) * 20, np.round(can / 20) * 20
            clip = lambda a: [int(x) for x in np.clip(np.round(a), 0, 2047)]
            slices.append((clip(can), clip(base)))
        cases.append({
            "name": name,
            "kind": kind,
            "quantile": q,
            "direction": direction,
            "slices": [{"canary": c, "baseline": b} for c, b in slices],
            "ln_e": run(kind, q, direction, slices),
        })
    doc = {
        "generator": {
            "script": "scripts/gen_rank_shift_golden.py",
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "seed": 20261124,
            "date": datetime.datetime.fromtimestamp(
                int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or datetime.datetime.now().timestamp(),
                datetime.timezone.utc).date().isoformat(),
            "definition": "ln of the mean over THETAS of exp(sum over slices of theta*T - n_canary*ln M(theta)); see the script's docstring",
            "tolerance": "1e-9 relative + 1e-6 absolute",
        },
        "thetas": THETAS,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "crates", "vigil-stats", "tests", "golden", "rank_shift.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
