#!/usr/bin/env bash
# Parser fuzzing: every parser of users' and operators' input — .torrent bytes (bencode and
# Ferry's checks), magnet links, URLs, Range headers, the config file — fed CASES generated
# inputs (default 10 million each) by its proptest, in release mode. The same tests run in the
# test command with 256 cases. A panic fails the run (proptest shrinks it and keeps it in
# `proptest-regressions/`, replayed first on every later run); a hang is caught by `timeout`
# (LIMIT seconds per parser, default 3600). Prints cases, seconds and inputs/s per parser.
#
#   bench/fuzz.sh                 # CASES=10000000
#   CASES=100000 bench/fuzz.sh    # a quick pass
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-10000000}
LIMIT=${LIMIT:-3600}
# name | cargo test arguments | test name
TARGETS=(
  "torrent: random bytes|-p ferry-torrent --test inspect|never_panics::on_random_bytes"
  "torrent: a real one, mutated|-p ferry-torrent --test inspect|never_panics::on_mutated_torrents"
  "torrent: hostile lengths and names|-p ferry-torrent --test inspect|never_panics::on_arbitrary_lengths"
  "magnet|-p ferry-domain --lib|magnet::tests::parse_never_panics"
  "URL|-p ferry-domain --lib|net::tests::parsing_never_panics_and_names_are_safe"
  "Range header|-p ferry-api --lib|range::tests::every_header_answers_inside_the_file"
  "config file|-p ferry-wiring --test config_fuzz|hostile_config_is_refused_not_a_panic"
)
echo "building (release)…" >&2
for t in "${TARGETS[@]}"; do
  IFS='|' read -r _ args _ <<<"$t"
  # shellcheck disable=SC2086
  cargo test --release -q $args --no-run 2>/dev/null
done
printf '%-38s %12s %10s %12s\n' parser cases seconds inputs/s
failed=0
for t in "${TARGETS[@]}"; do
  IFS='|' read -r name args test <<<"$t"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  if PROPTEST_CASES=$CASES timeout "$LIMIT" cargo test --release -q $args -- --exact "$test" >/tmp/ferry-fuzz.log 2>&1; then
    status=""
  else
    status="  FAILED (exit $?; see below)"; failed=1
  fi
  t1=$(date +%s.%N)
  secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
  printf '%-38s %12d %10s %12.0f%s\n' "$name" "$CASES" "$secs" "$(awk "BEGIN { print $CASES / ($t1 - $t0) }")" "$status"
  if [ -n "$status" ]; then tail -40 /tmp/ferry-fuzz.log; fi
  grep -q "1 passed" /tmp/ferry-fuzz.log || { [ -n "$status" ] || { echo "  $test did not run" >&2; failed=1; }; }
done
printf '\n%s, %d cores\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)"
exit $failed
