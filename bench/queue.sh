#!/usr/bin/env bash
# Queue throughput and SSE fan-out, against the raw Redis ceilings measured in the same run.
#
# 1. Jobs/s through Ferry's Redis queue (enqueue → claim → ack, no-op stage) with W = 1, 2, 4
#    producers and as many workers, vs the raw ceiling 1 / (1/XADD + 1/XREADGROUP + 1/XACK),
#    each measured by redis-benchmark with W clients. Target: ≥ 50 % of the ceiling.
# 2. 1000 subscribers on one job's `GET /api/v1/jobs/{id}/events` of a real ferry-api; p50/p99
#    latency from publishing an event (XADD) to its arrival. Target: p99 < 50 ms.
#
#   bench/queue.sh                 # needs Redis on 127.0.0.1:6379 and PostgreSQL on :5432
#   JOBS=50000 SUBSCRIBERS=2000 bench/queue.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS=${REDIS:-redis://127.0.0.1:6379}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
JOBS=${JOBS:-20000}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
for p in redis-benchmark redis-cli psql curl python3; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || ulimit -n 8192 || true

echo "building (release)…" >&2
cargo build --release -q -p ferry-bench -p ferry
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH="$target/release/ferry-bench"

rps() { # W, command… → requests per second
  local w=$1; shift
  redis-benchmark --csv -c "$w" -n "$JOBS" "$@" | tail -n1 | cut -d, -f2 | tr -d '"'
}
calc() { awk "BEGIN { printf \"%.0f\", $1 }"; }

echo
echo "== queue: enqueue → claim → ack ($JOBS jobs) =="
printf '%-8s %12s %12s %8s\n' workers ferry_jobs/s raw_ceiling ratio
for w in 1 2 4; do
  key="ferry-bench-raw-$$"
  xadd=$(rps "$w" XADD "$key" '*' job x attempt 1)
  redis-cli -u "$REDIS" XGROUP CREATE "$key" g 0 >/dev/null
  xread=$(rps "$w" XREADGROUP GROUP g c COUNT 1 STREAMS "$key" '>')
  xack=$(rps "$w" XACK "$key" g 0-1)
  redis-cli -u "$REDIS" DEL "$key" >/dev/null
  ceiling=$(calc "1 / (1/$xadd + 1/$xread + 1/$xack)")
  ours=$("$BENCH" queue --redis "$REDIS" --jobs "$JOBS" --workers "$w" | sed -E 's/.*jobs_per_second=([0-9]+).*/\1/')
  printf '%-8s %12s %12s %7s%%\n' "$w" "$ours" "$ceiling" "$(calc "100 * $ours / $ceiling")"
done

echo
echo "== SSE fan-out: $SUBSCRIBERS subscribers on one job =="
W=$(mktemp -d /tmp/ferry-fanout.XXXXXX)
db="ferry_bench_$$"
psql "$PG" -qc "create database $db"
api_pid=""
cleanup() { [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null; psql "$PG" -qc "drop database if exists $db with (force)" || true; rm -rf "$W"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prefix="ferry-fanout-$$"
export FERRY_DATABASE_URL="${PG%/*}/$db" FERRY_REDIS_URL="$REDIS" FERRY_REDIS_PREFIX="$prefix" \
       FERRY_DATA_DIR="$W" FERRY_LOG__LEVEL=warn
"$target/release/ferry" migrate >/dev/null
"$target/release/ferry-api" --listen "127.0.0.1:$port" > "$W/api.log" 2>&1 & api_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
token=$(cat "$W/api-token")
job=$(curl -s -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"source":{"magnet":"magnet:?xt=urn:btih:00112233445566778899aabbccddeeff00112233&dn=fanout"}}' \
  "http://127.0.0.1:$port/api/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$BENCH" fanout --api "http://127.0.0.1:$port" --token "$token" --job "$job" \
  --redis "$REDIS" --prefix "$prefix" --subscribers "$SUBSCRIBERS"
redis-cli -u "$REDIS" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null
echo "targets: queue ≥ 50% of the raw ceiling; fan-out p99 < 50 ms"
