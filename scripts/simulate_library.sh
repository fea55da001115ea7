#!/usr/bin/env bash
# Runs every built-in scenario through `vigil simulate` and prints the
# README's "How good is it" table: the default sequential method first (the
# targets), then fixed-horizon and kayenta beside it. A replication's stream
# depends only on the seed and its number, so the methods judge the same
# streams whichever run they are in.
#
#   scripts/simulate_library.sh                   # 1,000 runs each, seed 1
#   RUNS=100 scripts/simulate_library.sh          # a quicker look
#   PEER_RUNS=200 scripts/simulate_library.sh     # fewer for the other methods
#   METHODS=sequential scripts/simulate_library.sh  # only some methods
#   SCENARIOS="aa tail" scripts/simulate_library.sh  # only some scenarios
#
# JSON per scenario and method lands in target/sim/. Needs python3 for the
# table only.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000}"
PEER_RUNS="${PEER_RUNS:-$RUNS}"
SEED="${SEED:-1}"
METHODS="${METHODS:-sequential fixed-horizon kayenta}"
OUT="${OUT:-target/sim}"
BIN="${CARGO_TARGET_DIR:-target}/release/vigil"
cargo build --release --quiet
mkdir -p "$OUT"
"$BIN" simulate --list > "$OUT/list.txt"
scenarios="${SCENARIOS:-$(awk '{print $1}' "$OUT/list.txt")}"
run() { # scenario method runs
  local start
  start=$(date +%s)
  "$BIN" simulate --scenario "$1" --method "$2" --runs "$3" --seed "$SEED" \
    --json > "$OUT/$1.$2.json"
  echo "$1 $2 $3 runs: $(( $(date +%s) - start )) s" >&2
}
has() { [[ " $METHODS " == *" $1 "* ]]; }
if has sequential; then
  for s in $scenarios; do run "$s" sequential "$RUNS"; done
fi
for s in $scenarios; do
  if has fixed-horizon; then run "$s" fixed-horizon "$PEER_RUNS"; fi
  if has kayenta; then run "$s" kayenta "$PEER_RUNS"; fi
done
python3 scripts/simulate_table.py "$OUT"
