#!/usr/bin/env bash
# A longer schemathesis pass than the test command's (40 examples an operation from a fixed
# seed): EXAMPLES an operation (default 500) from a fresh random seed each of RUNS runs
# (default 1), every check, stateful links, against a real `ferry serve` in a network
# namespace of its own (cli/tests/openapi.rs). Prints each run's seed (replay one with
# FERRY_SCHEMATHESIS_SEED=<seed>), its summary and pass/fail.
#
#   bench/schemathesis.sh                 # EXAMPLES=500 RUNS=1
#   EXAMPLES=2000 RUNS=3 bench/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${EXAMPLES:-500}
RUNS=${RUNS:-1}
command -v schemathesis >/dev/null || { echo "bench: schemathesis is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
failed=0
for i in $(seq 1 "$RUNS"); do
  seed=$(python3 -c 'import secrets; print(secrets.randbits(126))')
  echo "== run $i: $EXAMPLES examples an operation, seed $seed"
  t0=$(date +%s)
  if FERRY_SCHEMATHESIS_EXAMPLES=$EXAMPLES FERRY_SCHEMATHESIS_SEED=$seed \
     cargo test -p ferry --test openapi -- --nocapture > /tmp/ferry-schemathesis.log 2>&1; then
    result=passed
  else
    result=FAILED; failed=1
  fi
  grep -E "generated|Failures|❌|✅ +[0-9]" /tmp/ferry-schemathesis.log | head -20 || true
  echo "run $i: $result in $(( $(date +%s) - t0 )) s (full output: /tmp/ferry-schemathesis.log)"
done
exit $failed
