"""Formats scripts/simulate_library.sh's JSON as the README's markdown table."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
order = [line.split()[0] for line in (out / "list.txt").read_text().splitlines()]
healthy = {line.split()[0]: line.split()[1] == "healthy"
           for line in (out / "list.txt").read_text().splitlines()}


def pct(x):
    return f"{100 * x:.1f}%"


def secs(x):
    return "-" if x is None else f"{x:.0f} s"


print("| scenario | method | ROLLBACK | PROMOTE | INCONCLUSIVE | no verdict "
      "| median decision | p90 decision | ROLLBACK within 10 min | exposure |")
print("|---|---|---|---|---|---|---|---|---|---|")
runs = {}
seed = None
for name in order:
    for method in ["sequential", "fixed-horizon", "kayenta"]:
        path = out / f"{name}.{method}.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        label = f"`{name}`" + (" (healthy)" if healthy[name] else "")
        exposure = "-" if s["exposure_requests"] is None else f"{s['exposure_requests']:.0f}"
        rb = pct(s["rollback_rate"])
        if s["method"] == "sequential":
            rb = f"**{rb}**"
        print(f"| {label} | {s['method']} | {rb} | {pct(s['promote_rate'])} "
              f"| {pct(s['inconclusive_rate'])} | {pct(s['continue_rate'])} "
              f"| {secs(s['median_decision_s'])} | {secs(s['p90_decision_s'])} "
              f"| {pct(s['rollback_within_10m_rate'])} | {exposure} |")
        runs[method] = s["runs"]
        seed = s["seed"]
print(f"\nRuns per scenario: {runs}, seed {seed}.")
