#!/usr/bin/env python3
"""Golden reference values for `vigil_stats::sequential::rank_shift`.

Writes crates/vigil-stats/tests/golden/rank_shift.json.

    pip install scipy==1.14.1 numpy==2.2.6
    python3 scripts/gen_rank_shift_golden.py

An independent implementation of the e-process from its definition: per
slice, the pooled samples' tie groups (numpy.unique) fill runs (a, b) of
the N rank cells on (0, 1); every sample of a run gets its score, the
canary's score sum is T, and ln e_theta += theta T - n_canary ln M(theta):
    body:      the mean of norm.ppf over the run, by scipy.integrate.quad
               of norm.ppf in the probability scale (normal scores), minus
               2e-9 N / (run length), the allowance the Rust side takes off
               for its fast quantile's error (H_ERROR);
               M = exp(theta^2 / 2)
    tail(q):   g(u) = max(0, (u - q) / (1 - q))^2 at the run's midpoint u;
               M = q + (1 - q) * integral_0^1 exp(theta v^2) dv
(the integrals by scipy.integrate.quad). For the tail the e-value is the
mean of e_theta over the bets THETAS. For the body it is 0.9 x the
half-normal mixture (precision rho = 240) of exp(theta S - theta^2 V / 2),
S = the canary's score sum so far, V = n_canary so far, integrated by
scipy.integrate.quad, plus 0.1 x the mean of e_theta over BODY_THETAS. Values are integers below 2048, which HDR histograms hold
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
BODY_THETAS = [0.01, 0.016, 0.0256, 0.041, 0.0655, 0.105, 0.168, 0.268, 0.429, 0.687, 1.1, 1.76, 2.81, 4.5, 7.2]
RHO = 240.0


def ln_m(kind, q, theta):
    if kind == "body":
        return theta * theta / 2
    i, _ = integrate.quad(lambda v: math.exp(theta * v * v), 0.0, 1.0, epsabs=0, epsrel=1e-13, limit=200)
    return math.log(q + (1 - q) * i)


H_ERROR = 1e-9


def score(kind, q, a, b):
    """The score of a run (a, b) of rank cells."""
    if kind == "body":
        integral, _ = integrate.quad(stats.norm.ppf, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)
        return (integral - 2 * H_ERROR) / (b - a)
    u = (a + b) / 2
    v = max(0.0, (u - q) / (1 - q))
    return v * v


def run(kind, q, direction, slices):
    thetas = np.array(BODY_THETAS if kind == "body" else THETAS)
    ln_w = np.zeros(len(thetas))
    s_sum, n_c = 0.0, 0
    lms = np.array([ln_m(kind, q, t) for t in thetas])
    out = []
    for canary, baseline in slices:
        c = np.array(canary, dtype=float)
        b = np.array(baseline, dtype=float)
        pooled = np.concatenate([c, b])
        if direction == "decrease":
            pooled = -pooled
        values, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts) / len(pooled)
        starts = ends - counts / len(pooled)
        run_scores = [score(kind, q, a, b) for a, b in zip(starts, ends)]
        t = sum(run_scores[i] for i in inverse[: len(c)])
        ln_w += thetas * t - len(c) * lms
        m = ln_w.max()
        grid = float(m + math.log(np.exp(ln_w - m).mean()))
        s_sum += t
        n_c += len(c)
        if kind == "body":
            nm = ln_normal_mixture(s_sum, n_c, RHO)
            top = max(nm, grid)
            out.append(top + math.log(0.9 * math.exp(nm - top) + 0.1 * math.exp(grid - top)))
        else:
            out.append(grid)
    return out


def ln_normal_mixture(s, v, rho):
    # ln of the integral over theta >= 0 of the half-normal density times
    # exp(theta s - theta^2 v / 2), scaled by its peak to stay finite.
    f = lambda t: math.log(2 * math.sqrt(rho / (2 * math.pi))) - rho * t * t / 2 + t * s - t * t * v / 2
    peak_t = max(0.0, s / (v + rho))
    peak = f(peak_t)
    sd = 1 / math.sqrt(v + rho)
    val, _ = integrate.quad(lambda t: math.exp(f(t) - peak), 0, peak_t + 40 * sd, points=[peak_t], epsabs=0, epsrel=1e-12, limit=400)
    return peak + math.log(val)


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
        "body_thetas": BODY_THETAS,
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "crates", "vigil-stats", "tests", "golden", "rank_shift.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
