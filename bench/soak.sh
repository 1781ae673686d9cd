#!/usr/bin/env bash
# Soak: DURATION (2 hours) of mixed load on the distributed mode (`ferry-api`, a torrent, a
# fetch and an upload worker over PostgreSQL and Redis; 10 torrents of 4 MiB from an aria2c
# seeder and a 16 MiB file from a local HTTP origin, resubmitted and purged continuously, event
# streams opened and dropped, the list and single jobs read), with every process's RSS, open
# file descriptors, threads and live tasks (`ferry_runtime_tasks`), Redis's clients and the
# database's connections sampled every SAMPLE (60) seconds. Prints each sample as a JSON line,
# then each series' second-quarter and last-quarter means: all must be flat (the last within
# 10 % of the second, plus a small margin). Not in CI.
#
#   bench/soak.sh                       # DURATION=7200 SAMPLE=60
#   DURATION=600 SAMPLE=20 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-7200}
SAMPLE=${SAMPLE:-60}
REDIS=${REDIS:-redis://127.0.0.1:6379}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
for p in opentracker aria2c mktorrent curl python3 psql redis-cli; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
if [ -z "${NO_BUILD:-}" ]; then
  echo "building (release)…" >&2
  cargo build --release -q -p ferry
fi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$target/release"

W=$(mktemp -d /tmp/ferry-soak.XXXXXX)
db="ferry_soak_$$"
prefix="ferry-soak-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "$prefix:*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "bench: $1 did not come up" >&2; exit 1; }

# The swarm: 10 torrents of 4 MiB, opentracker, one aria2c seeder; the origin: 16 MiB.
mkdir -p "$W/seed" "$W/torrents" "$W/tracker" "$W/origin"
TP=$(free_port)
for i in $(seq -w 0 9); do
  head -c $((4 << 20)) /dev/urandom > "$W/seed/s$i.bin"
  mktorrent -l 18 -a "http://127.0.0.1:$TP/announce" -o "$W/torrents/s$i.torrent" "$W/seed/s$i.bin" >/dev/null
  aria2c -S "$W/torrents/s$i.torrent" | awk '/Info Hash/ {print $NF}' >> "$W/tracker/whitelist.txt"
done
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist /whitelist.txt\ntracker.rootdir %s\ntracker.user nobody\n' "$TP" "$W/tracker" > "$W/tracker/ot.conf"
opentracker -f "$W/tracker/ot.conf" > "$W/ot.log" 2>&1 & pids+=($!)
aria2c --interface=127.0.0.1 --dir="$W/seed" --bt-seed-unverified=true --seed-ratio=0.0 \
  --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
  --disable-ipv6=true --summary-interval=0 --console-log-level=warn --listen-port="$(free_port)" \
  --max-concurrent-downloads=10 "$W"/torrents/*.torrent > "$W/seeder.log" 2>&1 & pids+=($!)
head -c $((16 << 20)) /dev/urandom > "$W/origin/file.bin"
OP=$(free_port)
python3 -m http.server "$OP" --bind 127.0.0.1 --directory "$W/origin" > "$W/origin.log" 2>&1 & pids+=($!)
up "http://127.0.0.1:$OP/file.bin"

# The distributed deployment.
psql "$PG" -qc "create database $db"
TOKEN="soak-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export FERRY_API_TOKEN="$TOKEN" FERRY_LOG__LEVEL=warn FERRY_DATABASE_URL="${PG%/*}/$db" \
  FERRY_REDIS_URL="$REDIS" FERRY_REDIS_PREFIX="$prefix" FERRY_DATA_DIR="$W/data" \
  FERRY_STAGING_DIR="$W/staging" FERRY_STORAGE_DIR="$W/storage" \
  FERRY_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') \
  FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 FERRY_TORRENT__ALLOW='["127.0.0.0/8"]' \
  FERRY_FETCH__ALLOW='["127.0.0.0/8"]' FERRY_AUTH__API_RATE=1000000 FERRY_AUTH__API_BURST=1000000
mkdir -p "$W/data"
"$BIN/ferry" migrate >/dev/null
AP=$(free_port)
"$BIN/ferry-api" --listen "127.0.0.1:$AP" > "$W/api.log" 2>&1 & api=$!; pids+=($api)
up "http://127.0.0.1:$AP/api/v1/health"
procs="api:$api:$AP"
for kind in torrent fetch upload; do
  port=$(free_port)
  "$BIN/ferry-$kind-worker" --probe-listen "127.0.0.1:$port" > "$W/$kind.log" 2>&1 & pid=$!; pids+=($pid)
  up "http://127.0.0.1:$port/health"
  procs="$procs,$kind:$pid:$port"
done

echo "soaking for $DURATION s, a sample every $SAMPLE s…" >&2
python3 bench/soak.py --port "$AP" --token "$TOKEN" --torrents "$W/torrents" \
  --url "http://127.0.0.1:$OP/file.bin" --procs "$procs" --redis "$REDIS" --pg "$PG" --db "$db" \
  --duration "$DURATION" --sample "$SAMPLE"
