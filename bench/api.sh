#!/usr/bin/env bash
# API load at saturation with wrk: GET /jobs, GET /jobs/{id} and POST /jobs (a fresh magnet
# each, wrk Lua) on a release `ferry serve` (embedded: SQLite, in-process queue) and on two
# `ferry-api` instances over PostgreSQL and Redis (distributed; one wrk per instance, at the
# same time, figures summed); requests/s, p50 and p99, and every answer must be 2xx. The
# ceiling is a raw poem "hello" (`ferry-bench hello`: the server stack Ferry's API runs on,
# with nothing behind it) under the same wrk; each figure's share of it is printed. Event
# streams: the time from opening `GET /jobs/{id}/events` to its snapshot, p50/p99 over 500
# streams opened 50 at a time.
#
#   bench/api.sh          # CONNECTIONS=64 SECONDS_PER_RUN=10 JOBS=1000; needs wrk, Redis, PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
C=${CONNECTIONS:-64}
D=${SECONDS_PER_RUN:-10}
JOBS=${JOBS:-1000}
REDIS=${REDIS:-redis://127.0.0.1:6379}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
for p in wrk curl python3 psql redis-cli; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
echo "building (release)…" >&2
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p ferry -p ferry-bench
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$target/release"

W=$(mktemp -d /tmp/ferry-api.XXXXXX)
db="ferry_api_$$"
prefix="ferry-api-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  psql "$PG" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "bench: $1 did not come up" >&2; exit 1; }
TOKEN="bench-token-$$-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export FERRY_API_TOKEN="$TOKEN" FERRY_LOG__LEVEL=warn FERRY_AUTH__API_RATE=10000000 FERRY_AUTH__API_BURST=10000000 \
       FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 \
       FERRY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

cat > "$W/post.lua" <<'LUA'
-- `id` is set per thread by setup(), so two threads never send the same hash.
local n = 0
local ids = 0
function setup(thread) ids = ids + 1; thread:set("id", ids) end
function init(args) n = 0 end
request = function()
  n = n + 1
  local hash = string.format("%08x%08x%016x%08x", tonumber(os.getenv("RUN_ID")), id, 0, n)
  return wrk.format("POST", "/api/v1/jobs",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")},
    '{"source":{"magnet":"magnet:?xt=urn:btih:' .. hash .. '&dn=load"}}')
end
LUA

# wrk against $1 (one URL per instance, run at once), extra args after --; prints "rps p50 p99 bad".
load() {
  local urls=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do urls+=("$1"); shift; done
  [ $# -gt 0 ] && shift && extra=("$@")
  local i=0 outs=()
  for u in "${urls[@]}"; do
    i=$((i + 1))
    RUN_ID=$((RANDOM * 32768 + RANDOM + i)) TOKEN="$TOKEN" \
      wrk -t2 -c"$((C / ${#urls[@]}))" -d"${D}s" --latency -H "Authorization: Bearer $TOKEN" "${extra[@]}" "$u" > "$W/wrk.$i" 2>&1 &
    outs+=("$W/wrk.$i")
  done
  wait
  python3 - "${outs[@]}" <<'PY'
import re, sys
rps = bad = 0.0; p50 = p99 = 0.0
def ms(v, unit): return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
for f in sys.argv[1:]:
    t = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    for pct, slot in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
        v = ms(m.group(1), m.group(2))
        if slot == "p50": p50 = max(p50, v)
        else: p99 = max(p99, v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t); bad += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    if m: bad += sum(int(x) for x in m.groups())
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {bad:.0f}")
PY
}
report() {  # name, "rps p50 p99 bad", ceiling rps
  read -r rps p50 p99 bad <<<"$2"
  printf '  %-40s %9s req/s  p50 %7s ms  p99 %7s ms  %5.1f%% of hello%s\n' "$1" "$rps" "$p50" "$p99" \
    "$(python3 -c "print($rps * 100 / $3)")" "$([ "$bad" = 0 ] || echo "   FAILED ANSWERS: $bad")"
  [ "$bad" = 0 ] || failed=1
}
failed=0

# Event streams: time from opening to the snapshot.
sse() {  # base url, job id
  python3 - "$1" "$2" "$TOKEN" <<'PY'
import asyncio, statistics, sys, time, urllib.parse
base, job, token = sys.argv[1:]
u = urllib.parse.urlsplit(base)
async def one():
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection(u.hostname, u.port)
    w.write(f"GET /api/v1/jobs/{job}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    await w.drain()
    buf = b""
    while b"event: snapshot" not in buf:
        chunk = await r.read(65536)
        assert chunk, buf
        buf += chunk
    assert b" 200 " in buf.split(b"\r\n", 1)[0], buf[:200]
    dt = (time.perf_counter() - t0) * 1000
    w.close()
    return dt
async def main():
    times = []
    for _ in range(10):
        times += await asyncio.gather(*(one() for _ in range(50)))
    times.sort()
    print(f"{statistics.median(times):.2f} {times[int(len(times) * 0.99)]:.2f}")
asyncio.run(main())
PY
}

hello_port=$(free_port)
"$BIN/ferry-bench" hello --listen "127.0.0.1:$hello_port" & pids+=($!)
up "http://127.0.0.1:$hello_port/"
ceiling=$(load "http://127.0.0.1:$hello_port/")
echo "raw poem hello: $ceiling (req/s p50 p99 failed), $C connections, ${D}s, $(nproc) cores"
read -r hello_rps _ <<<"$ceiling"

seed_jobs() {  # base url: JOBS magnets, prints one job id
  python3 - "$1" "$TOKEN" "$JOBS" <<'PY'
import http.client, json, sys, urllib.parse, uuid
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(n):
    body = json.dumps({"source": {"magnet": f"magnet:?xt=urn:btih:{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}&dn=seed-{i}"}})
    c.request("POST", "/api/v1/jobs", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    assert r.status == 201, data
print(json.loads(data)["id"])
PY
}

measure() {  # label, base urls...
  local label=$1; shift
  local job; job=$(seed_jobs "$1")
  local gets=() one=() posts=()
  for b in "$@"; do gets+=("$b/api/v1/jobs"); one+=("$b/api/v1/jobs/$job"); posts+=("$b/api/v1/jobs"); done
  echo "$label ($JOBS jobs):"
  report "GET /jobs" "$(load "${gets[@]}")" "$hello_rps"
  report "GET /jobs/{id}" "$(load "${one[@]}")" "$hello_rps"
  report "POST /jobs (a new magnet each)" "$(load "${posts[@]}" -- -s "$W/post.lua")" "$hello_rps"
  read -r s50 s99 <<<"$(sse "$1" "$job")"
  printf '  %-40s p50 %7s ms  p99 %7s ms (500 streams, 50 at a time)\n' "GET /jobs/{id}/events to its snapshot" "$s50" "$s99"
}

# Embedded.
port=$(free_port)
"$BIN/ferry" serve --listen "127.0.0.1:$port" --data-dir "$W/serve" > "$W/serve.log" 2>&1 & pids+=($!)
up "http://127.0.0.1:$port/api/v1/health"
measure "ferry serve (SQLite, embedded queue)" "http://127.0.0.1:$port"

# Distributed: two ferry-api over PostgreSQL and Redis.
psql "$PG" -qc "create database $db"
export FERRY_DATABASE_URL="${PG%/*}/$db" FERRY_REDIS_URL="$REDIS" FERRY_REDIS_PREFIX="$prefix" FERRY_DATA_DIR="$W/dist"
mkdir -p "$W/dist"
"$BIN/ferry" migrate >/dev/null
bases=()
for i in 1 2; do
  p=$(free_port)
  "$BIN/ferry-api" --listen "127.0.0.1:$p" > "$W/api$i.log" 2>&1 & pids+=($!)
  up "http://127.0.0.1:$p/api/v1/health"
  bases+=("http://127.0.0.1:$p")
done
measure "two ferry-api (PostgreSQL, Redis)" "${bases[@]}"
exit $failed
