#!/usr/bin/env bash
# Download throughput: Ferry vs aria2c, leeching the same torrent from the same aria2c seeder
# on loopback, alternately, RUNS times each. Prints both medians, the ratio Ferry/aria2c
# (target ≤ 1.0) and Ferry's peak RSS.
#
#   bench/download.sh            # 256 MiB, 3 runs each
#   SIZE_MIB=64 RUNS=5 bench/download.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-3}
for p in opentracker aria2c mktorrent curl python3; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done

echo "building ferry (release)…" >&2
cargo build --release -q -p ferry
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FERRY="$target/release/ferry"

W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

mkdir -p "$W/seed" "$W/tracker"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/seed/payload.bin"
want=$(sha256sum "$W/seed/payload.bin" | cut -d' ' -f1)
TP=$(free_port)
ANNOUNCE="http://127.0.0.1:$TP/announce"
mktorrent -l 20 -a "$ANNOUNCE" -o "$W/payload.torrent" "$W/seed/payload.bin" >/dev/null   # 1 MiB pieces
HASH=$(aria2c -S "$W/payload.torrent" | awk '/Info Hash/ {print $NF}')
echo "$HASH" > "$W/tracker/whitelist.txt"
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist /whitelist.txt\ntracker.rootdir %s\ntracker.user nobody\n' "$TP" "$W/tracker" > "$W/tracker/ot.conf"
opentracker -f "$W/tracker/ot.conf" > "$W/ot.log" 2>&1 & pids+=($!)
SP=$(free_port)
aria2c --interface=127.0.0.1 --dir="$W/seed" --bt-seed-unverified=true --seed-ratio=0.0 \
  --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
  --disable-ipv6=true --summary-interval=0 --console-log-level=warn --listen-port="$SP" \
  "$W/payload.torrent" > "$W/seeder.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$TP/scrape?info_hash=$(echo $HASH | sed 's/../%&/g')" | grep -q '8:completei1e' && break
  sleep 0.1
done

run_aria2() {
  local dir="$W/aria-$1"; mkdir -p "$dir"
  local t0; t0=$(now)
  aria2c --interface=127.0.0.1 --dir="$dir" --enable-dht=false --enable-dht6=false \
    --bt-enable-lpd=false --enable-peer-exchange=false --seed-time=0 --disable-ipv6=true \
    --listen-port="$(free_port)" --summary-interval=0 --console-log-level=warn \
    --file-allocation=none --bt-hash-check-seed=false "$W/payload.torrent" > "$dir.log" 2>&1
  local t1; t1=$(now)
  [ "$(sha256sum "$dir/payload.bin" | cut -d' ' -f1)" = "$want" ] || { echo "aria2c: wrong data" >&2; exit 1; }
  rm -rf "$dir"
  calc "$t1 - $t0"
}

run_ferry() {
  local dir="$W/ferry-$1"; local port; port=$(free_port)
  # The seeder and tracker run on loopback, which Ferry refuses unless allowed.
  FERRY_LOG__LEVEL=warn FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 \
  FERRY_TORRENT__ALLOW='["127.0.0.0/8"]' \
    "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" > "$dir.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.05; done
  local token; token=$(cat "$dir/api-token")
  local t0; t0=$(now)
  local id
  id=$(curl -s -H "Authorization: Bearer $token" -F torrent=@"$W/payload.torrent" \
       "http://127.0.0.1:$port/api/v1/jobs/torrent" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    status=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/jobs/$id" \
             | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = completed ] && break
    [ "$status" = failed ] && { echo "ferry: job failed" >&2; exit 1; }
    sleep 0.05
  done
  local t1; t1=$(now)
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ "$(sha256sum "$dir/storage/local/$id/payload.bin" | cut -d' ' -f1)" = "$want" ] || { echo "ferry: wrong data" >&2; exit 1; }
  rm -rf "$dir"
  echo "$(calc "$t1 - $t0") $rss"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

ferry_times=(); aria_times=(); peak=0
for i in $(seq 1 "$RUNS"); do
  read -r t rss < <(run_ferry "$i"); ferry_times+=("$t"); [ "$rss" -gt "$peak" ] && peak=$rss
  a=$(run_aria2 "$i"); aria_times+=("$a")
  printf 'run %d: ferry %.2fs (peak RSS %d MiB), aria2c %.2fs\n' "$i" "$t" $((rss / 1024)) "$a"
done
fm=$(printf '%s\n' "${ferry_times[@]}" | median)
am=$(printf '%s\n' "${aria_times[@]}" | median)
printf '\n%d MiB torrent, %d runs each, one aria2c seeder on loopback\n' "$SIZE_MIB" "$RUNS"
printf 'ferry  median %.2fs (%.1f MiB/s)\n' "$fm" "$(calc "$SIZE_MIB / $fm")"
printf 'aria2c median %.2fs (%.1f MiB/s)\n' "$am" "$(calc "$SIZE_MIB / $am")"
printf 'ratio ferry/aria2c: %.2f (target <= 1.00)\n' "$(calc "$fm / $am")"
printf 'ferry peak RSS: %d MiB\n' $((peak / 1024))
