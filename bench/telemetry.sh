#!/usr/bin/env bash
# What telemetry costs: a release `ferry serve` whose metrics are scraped every second and
# whose logs are pushed to a Loki endpoint ("on"), against the same binary with neither
# ("off"), alternately in the same run, ROUNDS times each:
#   - API throughput: requests/s of `GET /api/v1/jobs` (bootstrap token; every request writes
#     a request-log line at info, so "on" pushes one Loki line per request);
#   - a SIZE_MIB URL job fetched from a local origin and delivered to local storage: seconds
#     from submission to `completed`.
# Prints the medians and the ratios, and what Ferry itself spent: CPU milliseconds per
# thousand requests and CPU seconds per download (from /proc, the steadiest measure on a
# small shared box, where the load generator, the origin and the Loki endpoint run on the
# same cores). Target: telemetry costs under 5 % (throughput on/off ≥ 0.95, download time
# on/off ≤ 1.05). The Loki endpoint accepts every push (no decoding): this measures Ferry's
# side of the push. Each round warms up first and the order alternates (off/on, on/off).
#
#   bench/telemetry.sh        # FERRY_BIN=… BENCH_BIN=… skip the build; SIZE_MIB=256 ROUNDS=5 SECONDS_PER_RUN=5 CONNECTIONS=16 DOWNLOADS=3
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-256}
ROUNDS=${ROUNDS:-5}
DOWNLOADS=${DOWNLOADS:-3}
SECS=${SECONDS_PER_RUN:-5}
CONN=${CONNECTIONS:-16}
# PIN=1 (the default where taskset exists): Ferry on the first CPU, everything else — the
# load generator, the origin, the Loki endpoint and the scraper — on the others, so what the
# receiving side spends (it runs elsewhere in production) is not taken from Ferry.
PIN=${PIN:-1}
ncpu=$(nproc)
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$ncpu" -ge 2 ]; then
  ON_FERRY=(taskset -c 0)
  ON_REST=(taskset -c "1-$((ncpu - 1))")
else
  ON_FERRY=()
  ON_REST=()
fi
for p in curl python3; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done

if [ -n "${FERRY_BIN:-}" ] && [ -n "${BENCH_BIN:-}" ]; then
  # Binaries built elsewhere (e.g. copied out of the target folder to compare versions).
  FERRY=$FERRY_BIN
  BENCH=$BENCH_BIN
else
  echo "building (release)…" >&2
  cargo build --release -q -p ferry -p ferry-bench
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FERRY="$target/release/ferry"
  BENCH="$target/release/ferry-bench"
fi

W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# The origin of the URL job.
mkdir -p "$W/origin"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/origin/big.bin"
origin_port=$(free_port)
"${ON_REST[@]}" python3 -m http.server "$origin_port" --bind 127.0.0.1 --directory "$W/origin" >/dev/null 2>&1 &
pids+=($!)

# A Loki endpoint: accepts every push, is always ready.
loki_port=$(free_port)
"${ON_REST[@]}" python3 - "$loki_port" <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"ready")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
pids+=($!)

# Starts `ferry serve` with telemetry $1 (on|off); sets API, TOKEN, FPID and SPID.
start_ferry() {
  local dir="$W/ferry-$1-$RANDOM" port
  mkdir -p "$dir"
  port=$(free_port)
  # No rate limit: the bench is one caller hammering on purpose.
  local env=(FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 FERRY_SEED__DEFAULT=false
             FERRY_AUTH__API_RATE=1000000 FERRY_AUTH__API_BURST=1000000
             "FERRY_FETCH__ALLOW=[\"127.0.0.1/32\"]" FERRY_LOG__FORMAT=json)
  [ "$1" = on ] && env+=("FERRY_LOG__LOKI__URL=http://127.0.0.1:$loki_port")
  "${ON_FERRY[@]}" env "${env[@]}" "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
    >"$dir/stdout.log" 2>"$dir/stderr.log" &
  FPID=$!
  pids+=($FPID)
  API="http://127.0.0.1:$port/api/v1"
  for _ in $(seq 1 200); do
    curl -sf "$API/version" >/dev/null 2>&1 && break
    sleep 0.05
  done
  curl -sf "$API/version" >/dev/null || { echo "bench: ferry did not start:" >&2; cat "$dir/stderr.log" >&2; exit 1; }
  TOKEN=$(cat "$dir/api-token")
  SPID=
  if [ "$1" = on ]; then
    (while kill -0 "$FPID" 2>/dev/null; do "${ON_REST[@]}" curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done) &
    SPID=$!
    pids+=($SPID)
  fi
}

stop_ferry() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
  kill "$FPID" 2>/dev/null || true
  wait "$FPID" 2>/dev/null || true
}

# CPU seconds (user + system) the ferry process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$FPID/stat"; }

# Seconds from submitting the URL job to its completion.
download() {
  local started id status
  started=$(now)
  id=$(curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
         -d "{\"source\": {\"url\": \"http://127.0.0.1:$origin_port/big.bin\"}, \"seed\": false}" \
         "$API/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    status=$(curl -sf -H "Authorization: Bearer $TOKEN" "$API/jobs/$id" | grep -o '"status":"[a-z]*"' | head -1)
    case "$status" in
      *completed*) break ;;
      *failed*|*cancelled*) echo "bench: the URL job ended $status" >&2; exit 1 ;;
    esac
    sleep 0.02
  done
  awk "BEGIN { printf \"%.3f\", $(now) - $started }"
}

declare -A rps secs cpu_req cpu_dl
for round in $(seq 1 "$ROUNDS"); do
  order="off on"
  [ $((round % 2)) -eq 0 ] && order="on off"
  for mode in $order; do
    start_ferry "$mode"
    # Warm-up: connections, the database's caches, the first Loki push.
    "${ON_REST[@]}" "$BENCH" http --url "$API/jobs" --header "Authorization: Bearer $TOKEN" --seconds 1 --connections "$CONN" >/dev/null
    c0=$(cpu)
    r=$("${ON_REST[@]}" "$BENCH" http --url "$API/jobs" --header "Authorization: Bearer $TOKEN" --seconds "$SECS" --connections "$CONN")
    c1=$(cpu)
    per_k=$(awk "BEGIN { printf \"%.1f\", ($c1 - $c0) * 1000 / ($r * $SECS) * 1000 }")
    ds=""
    c2=$(cpu)
    for _ in $(seq 1 "$DOWNLOADS"); do ds+="$(download) "; done
    c3=$(cpu)
    s=$(tr ' ' '\n' <<<"$ds" | grep . | median)
    per_dl=$(awk "BEGIN { printf \"%.3f\", ($c3 - $c2) / $DOWNLOADS }")
    stop_ferry
    rps[$mode]+="$r "
    secs[$mode]+="$s "
    cpu_req[$mode]+="$per_k "
    cpu_dl[$mode]+="$per_dl "
    echo "round $round, telemetry $mode: $r requests/s ($per_k CPU ms per 1000), ${SIZE_MIB} MiB URL job in $s s (median of $DOWNLOADS; $per_dl CPU s each)" >&2
  done
done

rps_off=$(tr ' ' '\n' <<<"${rps[off]}" | grep . | median)
rps_on=$(tr ' ' '\n' <<<"${rps[on]}" | grep . | median)
secs_off=$(tr ' ' '\n' <<<"${secs[off]}" | grep . | median)
secs_on=$(tr ' ' '\n' <<<"${secs[on]}" | grep . | median)
echo "API throughput (median): off $rps_off requests/s, on $rps_on requests/s, on/off $(awk "BEGIN { printf \"%.3f\", $rps_on / $rps_off }") (target ≥ 0.95)"
echo "${SIZE_MIB} MiB URL job (median): off $secs_off s, on $secs_on s, on/off $(awk "BEGIN { printf \"%.3f\", $secs_on / $secs_off }") (target ≤ 1.05)"
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
k_off=$(med "${cpu_req[off]}"); k_on=$(med "${cpu_req[on]}")
d_off=$(med "${cpu_dl[off]}"); d_on=$(med "${cpu_dl[on]}")
echo "Ferry's CPU per 1000 requests (median): off $k_off ms, on $k_on ms, on/off $(awk "BEGIN { printf \"%.3f\", $k_on / $k_off }")"
echo "Ferry's CPU per ${SIZE_MIB} MiB URL job (median): off $d_off s, on $d_on s, on/off $(awk "BEGIN { printf \"%.3f\", $d_on / $d_off }")"
