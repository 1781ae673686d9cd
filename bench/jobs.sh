#!/usr/bin/env bash
# 5,000 finished jobs (20-file torrents, as users add albums and seasons; 9 in 10 completed,
# 1 in 10 failed) of one user in a release `ferry serve`, on SQLite (the default) and on
# PostgreSQL: p50/p99 of GET /jobs (first page, 200 a page, filtered by status, by name, a
# page 4,000 rows deep) and of the server-rendered jobs page, 300 requests each one after
# another on a kept-alive connection. Target: every p99 < 50 ms.
#
# The jobs are submitted through the API (.torrent uploads), then marked finished in the
# database while the server is stopped (a finished job differs from a submitted one only in
# those columns), then the server starts again and is measured.
#
#   bench/jobs.sh                        # JOBS=5000 BACKENDS="sqlite postgres"
#   JOBS=20000 BACKENDS=sqlite bench/jobs.sh
#   KEEP=1 BACKENDS=sqlite bench/jobs.sh   # keeps the data folder (its SQLite file) to look into
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-5000}
BACKENDS=${BACKENDS:-sqlite postgres}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
needs="curl python3"; case "$BACKENDS" in *postgres*) needs="$needs psql";; esac
for p in $needs; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
echo "building (release)…" >&2
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p ferry
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FERRY="$target/release/ferry"

W=$(mktemp -d /tmp/ferry-jobs.XXXXXX)
db="ferry_jobs_$$"
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  psql "$PG" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
export BENCH_PASSWORD="bench password $$"
export FERRY_LOG__LEVEL=warn FERRY_AUTH__API_RATE=1000000 FERRY_AUTH__API_BURST=1000000 \
       FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0

serve() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$FERRY_DATA_DIR" >> "$FERRY_DATA_DIR.log" 2>&1 & pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && return; sleep 0.1; done
  cat "$FERRY_DATA_DIR.log" >&2; exit 1
}
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; pid=""; }

FINISH="UPDATE jobs SET status = CASE WHEN CAST(substr(name, 7, 5) AS INTEGER) % 10 = 3 THEN 'failed' ELSE 'completed' END,
  error_code = CASE WHEN CAST(substr(name, 7, 5) AS INTEGER) % 10 = 3 THEN 'url_unavailable' END,
  error_message = CASE WHEN CAST(substr(name, 7, 5) AS INTEGER) % 10 = 3 THEN 'the server answered 404' END,
  finished_at = updated_at"

for backend in $BACKENDS; do
  export FERRY_DATA_DIR="$W/$backend"
  mkdir -p "$FERRY_DATA_DIR"
  if [ "$backend" = postgres ]; then
    psql "$PG" -qc "create database $db" >/dev/null
    export FERRY_DATABASE_URL="${PG%/*}/$db"
  else
    unset FERRY_DATABASE_URL
  fi
  "$FERRY" migrate >/dev/null
  echo "$BENCH_PASSWORD" | "$FERRY" user add bench --password-stdin >/dev/null
  echo "== $backend: $JOBS jobs"
  serve
  python3 bench/jobs.py submit --url "http://127.0.0.1:$port" --jobs "$JOBS"
  stop
  if [ "$backend" = postgres ]; then
    psql "$FERRY_DATABASE_URL" -qc "$FINISH" >/dev/null
  else
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' \
      "$FERRY_DATA_DIR/ferry.db" "$FINISH"
  fi
  serve
  sleep 3   # the queue's leftover messages for the now-finished jobs are settled
  python3 bench/jobs.py measure --url "http://127.0.0.1:$port"
  stop
done
