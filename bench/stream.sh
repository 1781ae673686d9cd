#!/usr/bin/env bash
# Streaming while downloading: Ferry vs rqbit's own streaming server. A fresh magnet (tracker
# on loopback, no DHT) of one random file seeded by aria2c; each client is started fresh, the
# magnet submitted, and the file read from byte 0 through its HTTP API as soon as it answers:
# time to the first byte and to the first 10 MiB, counted from the submission. Alternately,
# RUNS times each; prints both medians and the ratios Ferry/rqbit (target ≤ 1.0).
#
#   bench/stream.sh                          # 256 MiB, 3 runs each, seeder unthrottled
#   SIZE_MIB=128 RUNS=5 LIMIT=4M bench/stream.sh
#
# rqbit is installed from crates.io (`cargo install rqbit`) into ~/.cache/ferry-tools/rqbit
# the first time (RQBIT=/path/to/rqbit to use another; FERRY=/path/to/ferry skips the build).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-3}
LIMIT=${LIMIT:-0}
for p in opentracker aria2c mktorrent curl python3; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done

TOOLS="$HOME/.cache/ferry-tools/rqbit"
RQBIT=${RQBIT:-$TOOLS/bin/rqbit}
if [ ! -x "$RQBIT" ]; then
  echo "installing rqbit from crates.io into $TOOLS…" >&2
  cargo install rqbit --locked --root "$TOOLS" -q
fi
if [ -z "${FERRY:-}" ]; then
  echo "building ferry (release)…" >&2
  cargo build --release -q -p ferry
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FERRY="$target/release/ferry"
fi

W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$W/seed" "$W/tracker"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/seed/payload.bin"
TP=$(free_port)
ANNOUNCE="http://127.0.0.1:$TP/announce"
mktorrent -l 18 -a "$ANNOUNCE" -o "$W/payload.torrent" "$W/seed/payload.bin" >/dev/null   # 256 KiB pieces
HASH=$(aria2c -S "$W/payload.torrent" | awk '/Info Hash/ {print $NF}')
MAGNET="magnet:?xt=urn:btih:$HASH&dn=payload.bin&tr=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$ANNOUNCE")"
echo "$HASH" > "$W/tracker/whitelist.txt"
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist /whitelist.txt\ntracker.rootdir %s\ntracker.user nobody\n' "$TP" "$W/tracker" > "$W/tracker/ot.conf"
opentracker -f "$W/tracker/ot.conf" > "$W/ot.log" 2>&1 & pids+=($!)
SP=$(free_port)
# A fresh seeder for every run: aria2c's upload limiter averages over the last seconds, so a
# seeder that has just served the other client's run would start this one with less (or
# more) room. Same port each time, so the tracker's entry stays right.
SEEDER=""
start_seeder() {
  if [ -n "$SEEDER" ]; then kill "$SEEDER" 2>/dev/null || true; wait "$SEEDER" 2>/dev/null || true; fi
  for _ in $(seq 1 100); do
    python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$SP" 2>/dev/null && break
    sleep 0.1
  done
  aria2c --interface=127.0.0.1 --dir="$W/seed" --bt-seed-unverified=true --seed-ratio=0.0 \
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --disable-ipv6=true --summary-interval=0 --console-log-level=warn --listen-port="$SP" \
    --max-upload-limit="$LIMIT" --max-overall-upload-limit="$LIMIT" \
    "$W/payload.torrent" > "$W/seeder.log" 2>&1 &
  SEEDER=$!; pids+=($SEEDER)
  # Listening (and so announced) before the client starts.
  for _ in $(seq 1 100); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$SP" 2>/dev/null && break
    sleep 0.1
  done
  for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$TP/scrape?info_hash=$(echo $HASH | sed 's/../%&/g')" | grep -q '8:completei1e' && break
    sleep 0.1
  done
}

# The client: submits the magnet, then reads the first 10 MiB of the file as soon as the
# server answers with them; prints seconds to the first byte and to 10 MiB after submitting.
cat > "$W/read.py" <<'EOF'
import hashlib, json, sys, time, urllib.error, urllib.request
kind, base, token, magnet, payload = sys.argv[1:6]
WANT = 10 << 20
auth = {"Authorization": f"Bearer {token}"} if token else {}
def call(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers={**auth, **(headers or {})})
    return urllib.request.urlopen(req, timeout=600)
t0 = time.monotonic()
if kind == "ferry":
    job = json.load(call("POST", f"{base}/api/v1/jobs", json.dumps({"source": {"magnet": magnet}}).encode(),
                         {"content-type": "application/json"}))
    url = f"{base}/api/v1/jobs/{job['id']}/files/0"
else:
    added = json.load(call("POST", f"{base}/torrents?overwrite=true", magnet.encode()))
    url = f"{base}/torrents/{added['id']}/stream/0"
while True:
    try:
        r = call("GET", url, headers={"Range": f"bytes=0-{WANT - 1}"})
        break
    except urllib.error.HTTPError as e:
        if e.code not in (404, 409):  # Ferry: metadata not there yet
            raise
        time.sleep(0.01)
data = r.read(1)
first = time.monotonic() - t0
while len(data) < WANT:
    chunk = r.read(min(1 << 20, WANT - len(data)))
    if not chunk:
        sys.exit(f"{kind}: the answer ended after {len(data)} bytes")
    data += chunk
full = time.monotonic() - t0
with open(payload, "rb") as f:
    if hashlib.sha256(f.read(WANT)).digest() != hashlib.sha256(data).digest():
        sys.exit(f"{kind}: wrong bytes")
print(f"{first:.4f} {full:.4f}")
EOF

wait_http() { for _ in $(seq 1 400); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "bench: $1 never answered" >&2; exit 1; }

run_ferry() {
  local dir="$W/ferry-$1"; local port; port=$(free_port)
  FERRY_LOG__LEVEL=warn FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 \
  FERRY_TORRENT__ALLOW='["127.0.0.0/8"]' \
    "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" > "$dir.log" 2>&1 &
  local pid=$!
  wait_http "http://127.0.0.1:$port/api/v1/health"
  python3 "$W/read.py" ferry "http://127.0.0.1:$port" "$(cat "$dir/api-token")" "$MAGNET" "$W/seed/payload.bin"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run_rqbit() {
  local dir="$W/rqbit-$1"; local port; port=$(free_port); mkdir -p "$dir"
  "$RQBIT" --disable-dht --http-api-listen-addr "127.0.0.1:$port" --listen-port "$(free_port)" \
    --disable-dht-persistence server start --disable-persistence "$dir" > "$dir.log" 2>&1 &
  local pid=$!
  wait_http "http://127.0.0.1:$port/"
  python3 "$W/read.py" rqbit "http://127.0.0.1:$port" "" "$MAGNET" "$W/seed/payload.bin"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

f_first=(); f_full=(); r_first=(); r_full=()
for i in $(seq 1 "$RUNS"); do
  start_seeder; read -r a b < <(run_ferry "$i"); f_first+=("$a"); f_full+=("$b")
  start_seeder; read -r c d < <(run_rqbit "$i"); r_first+=("$c"); r_full+=("$d")
  printf 'run %d: ferry first byte %.3fs, 10 MiB %.3fs; rqbit first byte %.3fs, 10 MiB %.3fs\n' "$i" "$a" "$b" "$c" "$d"
done
ff=$(printf '%s\n' "${f_first[@]}" | median); fm=$(printf '%s\n' "${f_full[@]}" | median)
rf=$(printf '%s\n' "${r_first[@]}" | median); rm_=$(printf '%s\n' "${r_full[@]}" | median)
printf '\n%d MiB file (256 KiB pieces) from a fresh magnet, one aria2c seeder on loopback (limit %s, started afresh for each run), %d runs each\n' "$SIZE_MIB" "$LIMIT" "$RUNS"
printf 'ferry  median: first byte %.3fs, first 10 MiB %.3fs\n' "$ff" "$fm"
printf 'rqbit  median: first byte %.3fs, first 10 MiB %.3fs\n' "$rf" "$rm_"
printf 'ratio ferry/rqbit: first byte %.2f, first 10 MiB %.2f (target <= 1.00)\n' "$(calc "$ff / $rf")" "$(calc "$fm / $rm_")"
