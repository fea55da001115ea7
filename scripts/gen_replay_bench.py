#!/usr/bin/env python3
"""Generate the input of the `vigil replay` throughput benchmark: a large
gzipped JSON-lines file of request events in the shape of
examples/incident.jsonl.gz (see scripts/gen_incident.py), for the
examples/payment.yaml spec.

What it holds (defaults): 2,000,000 request events, one per line, in
timestamp order, over 20 minutes of stream time from ts 1763900000
(about 1,667 requests/s):

    {"ts":1763900000.012,"service":"payment","version":"v7","latency_ms":84.2,"error":false,"labels":{"endpoint":"/charge"}}

- service `payment`; baseline `v7` 90%, canary `v8` 10%;
- endpoint `/charge` (60%) or `/refund` (40%);
- `latency_ms` lognormal, median 80 ms, sigma 0.5, 0.1 ms resolution;
- `error` true for 0.1% of requests; no incident (A/A), so a replay with
  `--continue` runs the judge over the whole stream.

Seeded (numpy default_rng), gzip level 6, no name and mtime 0 in the gzip
header. Not committed: the file is about 12 MB; docs/BENCHMARKS.md records
the command and its output.

Usage: python3 scripts/gen_replay_bench.py OUTPUT [N_EVENTS]
"""

import gzip
import sys

import numpy as np

SEED = 20251124
START_TS = 1_763_900_000
DURATION_S = 20 * 60
CANARY_SHARE = 0.10
CHARGE_SHARE = 0.60
MEDIAN_MS = 80.0
SIGMA = 0.5
ERROR_RATE = 0.001
CHUNK = 200_000


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    output = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 2_000_000
    rng = np.random.default_rng(SEED)

    ts = np.sort(rng.uniform(0.0, DURATION_S, size=n))
    ts = np.round(START_TS + ts, 3)
    canary = rng.random(n) < CANARY_SHARE
    charge = rng.random(n) < CHARGE_SHARE
    latency = np.round(rng.lognormal(np.log(MEDIAN_MS), SIGMA, size=n), 1)
    error = rng.random(n) < ERROR_RATE

    with open(output, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
    ) as out:
        for lo in range(0, n, CHUNK):
            hi = min(lo + CHUNK, n)
            lines = [
                f'{{"ts":{t:.3f},"service":"payment","version":"{"v8" if c else "v7"}",'
                f'"latency_ms":{ms:.1f},"error":{"true" if e else "false"},'
                f'"labels":{{"endpoint":"{"/charge" if ch else "/refund"}"}}}}\n'
                for t, c, ch, ms, e in zip(
                    ts[lo:hi].tolist(),
                    canary[lo:hi].tolist(),
                    charge[lo:hi].tolist(),
                    latency[lo:hi].tolist(),
                    error[lo:hi].tolist(),
                )
            ]
            out.write("".join(lines).encode("utf-8"))
    print(f"wrote {output}: {n} events over {DURATION_S} s")


if __name__ == "__main__":
    main()
