#!/usr/bin/env python3
"""Golden reference values for `vigil_stats::sequential::proportion::proportion_cs`.

Writes crates/vigil-stats/tests/golden/proportion_cs.json.

    pip install mpmath==1.3.0
    python3 scripts/gen_proportion_golden.py

An independent implementation from the definition, in 60-digit arithmetic:
after x successes in n trials (m = n - x), Robbins' beta-binomial mixture
with the Jeffreys prior Beta(1/2, 1/2),

    ln E(p) = ln B(1/2 + x, 1/2 + m) - ln B(1/2, 1/2) - x ln p - m ln(1 - p),

is a test martingale at the true rate p, and the confidence sequence at
level 1 - alpha is {p : ln E(p) < ln(1 / alpha)}, an interval around x / n
(ln E is convex in p with its minimum there). Its ends are the roots of
ln E(p) = ln(1 / alpha) on each side of x / n, found by mpmath's bisection
(Anderson-Bjorck) to 60 digits; an end is 0 (or 1) when x = 0 (or x = n)
or when ln E stays below the threshold up to 1e-300 (or 1 - 2^-52), as
the Rust side decides.

Tolerance in the Rust test: 1e-7 relative. The Rust side evaluates ln E
in doubles: ln B of arguments near 10^7 is a difference of log-gammas near
1.5e8 whose last bits are 2e-8 of ln E, which moves a root by up to about
3e-8 relative (at 1 error in 10^7; far less at smaller n).
"""
import datetime
import json
import os

import mpmath as mp

mp.mp.dps = 60


def ln_e(x, m, p):
    half = mp.mpf(1) / 2
    return (
        mp.log(mp.beta(half + x, half + m))
        - mp.log(mp.beta(half, half))
        - x * mp.log(p)
        - m * mp.log(1 - p)
    )


def ends(x, n, alpha):
    m = n - x
    threshold = mp.log(1 / mp.mpf(alpha))
    f = lambda p: ln_e(x, m, p) - threshold
    centre = mp.mpf(x) / n
    if x == 0 or f(mp.mpf("1e-300")) < 0:
        low = mp.mpf(0)
    else:
        # (0 ln 0 is undefined in mpmath: the brackets stay inside (0, 1).)
        end = min(centre, 1 - mp.mpf(2) ** -52)
        low = mp.findroot(f, (mp.mpf("1e-300"), end), solver="anderson")
    if x == n or f(1 - mp.mpf(2) ** -52) < 0:
        high = mp.mpf(1)
    else:
        start = max(centre, mp.mpf("1e-300"))
        high = mp.findroot(f, (start, 1 - mp.mpf(2) ** -52), solver="anderson")
    return low, high


def main():
    cases = []
    for n in [1, 2, 10, 57, 400, 1000, 12_345, 100_000, 10_000_000]:
        for x in sorted({0, 1, 2, 3, n // 1000, n // 100, n // 7, n // 2, n - 1, n}):
            if x > n or x < 0:
                continue
            for alpha in [0.001, 0.005, 0.05, 0.3]:
                low, high = ends(x, n, alpha)
                assert mp.isfinite(low) and mp.isfinite(high), (x, n, alpha)
                cases.append(
                    {
                        "successes": x,
                        "n": n,
                        "alpha": alpha,
                        "low": float(low),
                        "high": float(high),
                    }
                )
    out = {
        "generator": {
            "script": "scripts/gen_proportion_golden.py",
            "mpmath": mp.__version__,
            "digits": mp.mp.dps,
            "date": datetime.date.today().isoformat(),
            "definition": "ends of {p : ln E(p) < ln(1/alpha)}, E the beta-binomial mixture with prior Beta(1/2, 1/2)",
            "tolerance": "1e-7 relative",
        },
        "cases": cases,
    }
    path = os.path.join(
        os.path.dirname(__file__), "..", "crates", "vigil-stats", "tests", "golden", "proportion_cs.json"
    )
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
