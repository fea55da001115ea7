#!/usr/bin/env python3
"""Generate examples/incident.jsonl.gz, the "payment incident" that
`vigil replay` is demonstrated and tested on.

What it holds: gzipped JSON lines, one request event per line, in timestamp
order, for 20 minutes of stream time starting at ts 1763900000
(2025-11-23T12:13:20Z):

    {"ts":1763900000.012,"service":"payment","version":"v7","latency_ms":84.2,"error":false,"labels":{"endpoint":"/charge"}}

- service `payment`; baseline `v7` takes 90% of requests, canary `v8` 10%
  (each request's version is drawn independently);
- 100 requests/s in total, as a Poisson process (exponential gaps), so
  about 120,000 events; `ts` is epoch seconds with 3 decimals;
- endpoint label `/charge` (60%) or `/refund` (40%);
- `latency_ms` is log-normal, median 80 ms, sigma 0.5, rounded to 0.1 ms;
- `error` is true for 0.1% of requests;
- the incident: from minute 5 (ts >= 1763900300) the canary's `/charge`
  requests fail 15% of the time and are 30% slower (median 104 ms). The
  baseline and the canary's `/refund` are unaffected, so a judge should
  flag the canary, and per-endpoint breakdowns should point at `/charge`.

The seed is fixed and the gzip header carries no name and mtime 0, so a
rerun reproduces the file byte for byte given the same numpy (checked with
numpy 2.2.6; default_rng streams are stable across versions) and the same
zlib (compression level 9; another zlib version may compress differently,
while the decompressed content stays identical). The file is about 0.8 MB.

Usage: python3 scripts/gen_incident.py
"""

import gzip
from pathlib import Path

import numpy as np

SEED = 20251123
START_TS = 1_763_900_000
DURATION_S = 20 * 60
RATE_PER_S = 100.0
CANARY_SHARE = 0.10
CHARGE_SHARE = 0.60
MEDIAN_MS = 80.0
SIGMA = 0.5
ERROR_RATE = 0.001
INCIDENT_START_TS = START_TS + 5 * 60
INCIDENT_ERROR_RATE = 0.15
INCIDENT_SLOWDOWN = 1.30

OUTPUT = Path(__file__).resolve().parent.parent / "examples" / "incident.jsonl.gz"


def main():
    rng = np.random.default_rng(SEED)

    # Draw comfortably more gaps than needed, then keep those inside the
    # window, so the stream ends at 20 minutes rather than at a fixed count.
    n_draw = int(RATE_PER_S * DURATION_S * 1.1)
    gaps = rng.exponential(1.0 / RATE_PER_S, size=n_draw)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets < DURATION_S]
    # Rounding to the millisecond first keeps the written timestamps in
    # order (rounding is monotonic) and makes the incident boundary exact.
    ts = np.round(START_TS + offsets, 3)
    n = ts.size

    canary = rng.random(n) < CANARY_SHARE
    charge = rng.random(n) < CHARGE_SHARE
    latency = rng.lognormal(mean=np.log(MEDIAN_MS), sigma=SIGMA, size=n)
    error_draw = rng.random(n)

    incident = canary & charge & (ts >= INCIDENT_START_TS)
    latency = np.where(incident, latency * INCIDENT_SLOWDOWN, latency)
    error = error_draw < np.where(incident, INCIDENT_ERROR_RATE, ERROR_RATE)
    latency = np.round(latency, 1)

    OUTPUT.parent.mkdir(exist_ok=True)
    with open(OUTPUT, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0
    ) as out:
        lines = []
        for t, is_canary, is_charge, ms, failed in zip(
            ts.tolist(), canary.tolist(), charge.tolist(), latency.tolist(), error.tolist()
        ):
            lines.append(
                f'{{"ts":{t:.3f},"service":"payment","version":"{"v8" if is_canary else "v7"}",'
                f'"latency_ms":{ms:.1f},"error":{"true" if failed else "false"},'
                f'"labels":{{"endpoint":"{"/charge" if is_charge else "/refund"}"}}}}\n'
            )
        out.write("".join(lines).encode("utf-8"))

    n_canary = int(canary.sum())
    print(
        f"wrote {OUTPUT}: {n} events ({n_canary} canary), "
        f"{int(incident.sum())} during the incident, {int(error.sum())} errors, "
        f"{OUTPUT.stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
