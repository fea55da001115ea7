#!/usr/bin/env bash
# Vigil's Mann-Whitney on histograms against scipy.stats.mannwhitneyu on the
# same 1M x 1M samples, measured in one run on one machine. Prints the rows
# of the table in docs/BENCHMARKS.md.
#
# Needs: pip install scipy==1.14.1 numpy==2.2.6
# Usage: scripts/bench_vs_scipy.sh [MULTIPLIER]   (canary latency multiplier,
#        default 1.002 so the p-value stays above double underflow)
set -euo pipefail
cd "$(dirname "$0")/.."
mult="${1:-1.002}"
dir="${VIGIL_BENCH_DIR:-/tmp/vigil-bench}"

scipy_json=$(python3 scripts/bench_scipy.py --multiplier "$mult" "$dir/baseline.txt.gz" "$dir/canary.txt.gz")
cargo build --release --quiet
vigil_json=$(./target/release/vigil compare --baseline "$dir/baseline.txt.gz" --canary "$dir/canary.txt.gz" \
  --alternative two-sided --json)
VIGIL_BENCH_DIR="$dir" cargo bench --quiet --bench mann_whitney -- scipy_files >/dev/null 2>&1

python3 - "$scipy_json" "$vigil_json" <<'PY'
import json, sys
scipy, vigil = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def est(name):
    with open(f"target/criterion/{name}/new/estimates.json") as f:
        return json.load(f)["median"]["point_estimate"] / 1e9
mw, mwhl, build = est("mwu_scipy_files"), est("mwu_hl_scipy_files"), est("build_histograms_scipy_files")
s = scipy["scipy_seconds"]
m = vigil["mann_whitney"]
print(f"samples: {scipy['n_baseline']:,} baseline x {scipy['n_canary']:,} canary (integer ms, canary x{scipy['multiplier']})")
print(f"U:  vigil {m['u']!r}  scipy {scipy['u']!r}  identical: {m['u'] == scipy['u']}")
print(f"p:  vigil {m['p_value']!r}  scipy {scipy['p_value']!r}  relative difference {abs(m['p_value'] - scipy['p_value']) / scipy['p_value']:.1e}")
print(f"| scipy {scipy['scipy_version']} mannwhitneyu (raw samples) | {s * 1e3:.1f} ms | 1x |")
print(f"| vigil MWU on histograms | {mw * 1e6:.1f} us | {s / mw:,.0f}x |")
print(f"| vigil MWU + Hodges-Lehmann with CI | {mwhl * 1e6:.1f} us | {s / mwhl:,.0f}x |")
print(f"| building both histograms from raw samples (once) | {build * 1e3:.1f} ms | {s / build:.1f}x |")
PY
