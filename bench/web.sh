#!/usr/bin/env bash
# The jobs page with 1,000 jobs in headless Chromium (bench/web.py): HTML size (raw and
# gzip), time to first byte and to a complete render; then the main thread's load while 200
# jobs stream progress (2 events/s each) through the user's feed. On a release `ferry-api`
# over PostgreSQL and Redis. Targets: first page <= 100 KB compressed, rendered < 300 ms;
# main thread < 20 % busy.
#
#   bench/web.sh                 # needs Redis on 127.0.0.1:6379 and PostgreSQL on :5432
#   JOBS=2000 LIVE=400 bench/web.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS=${REDIS:-redis://127.0.0.1:6379}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
for p in psql curl python3 chromium; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
echo "building (release)…" >&2
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p ferry
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

W=$(mktemp -d /tmp/ferry-web.XXXXXX)
db="ferry_web_$$"
prefix="ferry-web-$$"
psql "$PG" -qc "create database $db"
api_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null
  psql "$PG" -qc "drop database if exists $db with (force)" || true
  redis-cli -u "$REDIS" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FERRY_DATABASE_URL="${PG%/*}/$db" FERRY_REDIS_URL="$REDIS" FERRY_REDIS_PREFIX="$prefix" \
       FERRY_DATA_DIR="$W" FERRY_LOG__LEVEL=warn FERRY_AUTH__API_RATE=100000 FERRY_AUTH__API_BURST=100000
export BENCH_PASSWORD="bench password $$"
export FERRY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
"$target/release/ferry" migrate >/dev/null
echo "$BENCH_PASSWORD" | "$target/release/ferry" user add bench --password-stdin >/dev/null
"$target/release/ferry-api" --listen "127.0.0.1:$port" > "$W/api.log" 2>&1 & api_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null || { cat "$W/api.log" >&2; exit 1; }
python3 bench/web.py --url "http://127.0.0.1:$port" --redis "$REDIS" --prefix "$prefix" \
  --jobs "${JOBS:-1000}" --live "${LIVE:-200}"
