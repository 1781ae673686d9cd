#!/usr/bin/env bash
# Whole-job archive throughput: Ferry's `GET /jobs/{id}/archive?format=zip|tar` (streamed,
# STORE, CRC-32 computed on the way) vs `zip -0` and `tar cf` of the same files, all read
# from a warm page cache and written to /dev/null. A job of FILES files (SIZE_MIB in all) is
# downloaded once from an aria2c seeder on loopback; then, alternately, RUNS times each.
# Prints the medians and the ratios Ferry/zip and Ferry/tar (target ≤ 1.0), and checks that
# Ferry's zip unpacks to the same bytes.
#
#   bench/archive.sh                   # 1024 MiB in 8 files, 3 runs each
#   SIZE_MIB=256 FILES=4 RUNS=5 bench/archive.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-8}
RUNS=${RUNS:-3}
for p in opentracker aria2c mktorrent curl python3 zip unzip tar; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs the peers; apt-get install zip for zip)" >&2; exit 1; }
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
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

mkdir -p "$W/seed/payload" "$W/tracker"
per=$((SIZE_MIB / FILES))
for i in $(seq 1 "$FILES"); do
  head -c $((per * 1024 * 1024 + i)) /dev/urandom > "$W/seed/payload/part-$i.bin"
done
TP=$(free_port)
ANNOUNCE="http://127.0.0.1:$TP/announce"
mktorrent -l 20 -a "$ANNOUNCE" -o "$W/payload.torrent" "$W/seed/payload" >/dev/null
HASH=$(aria2c -S "$W/payload.torrent" | awk '/Info Hash/ {print $NF}')
echo "$HASH" > "$W/tracker/whitelist.txt"
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist /whitelist.txt\ntracker.rootdir %s\ntracker.user nobody\n' "$TP" "$W/tracker" > "$W/tracker/ot.conf"
opentracker -f "$W/tracker/ot.conf" > "$W/ot.log" 2>&1 & pids+=($!)
aria2c --interface=127.0.0.1 --dir="$W/seed" --bt-seed-unverified=true --seed-ratio=0.0 \
  --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
  --disable-ipv6=true --summary-interval=0 --console-log-level=warn --listen-port="$(free_port)" \
  "$W/payload.torrent" > "$W/seeder.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$TP/scrape?info_hash=$(echo $HASH | sed 's/../%&/g')" | grep -q '8:completei1e' && break
  sleep 0.1
done

port=$(free_port)
FERRY_LOG__LEVEL=warn FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 \
FERRY_TORRENT__ALLOW='["127.0.0.0/8"]' \
  "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$W/ferry" > "$W/ferry.log" 2>&1 & pids+=($!)
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.05; done
token=$(cat "$W/ferry/api-token")
api="http://127.0.0.1:$port/api/v1"
id=$(curl -s -H "Authorization: Bearer $token" -F torrent=@"$W/payload.torrent" "$api/jobs/torrent" \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "downloading the job's $SIZE_MIB MiB…" >&2
while :; do
  status=$(curl -s -H "Authorization: Bearer $token" "$api/jobs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$status" = completed ] && break
  [ "$status" = failed ] && { echo "ferry: job failed" >&2; exit 1; }
  sleep 0.2
done
files="$W/ferry/storage/local/$id"

# Correctness once: Ferry's zip unpacks to the seeder's bytes.
curl -sf -H "Authorization: Bearer $token" -o "$W/check.zip" "$api/jobs/$id/archive?format=zip"
mkdir "$W/unzipped" && unzip -q "$W/check.zip" -d "$W/unzipped"
(cd "$W/seed" && sha256sum payload/*) > "$W/want.sum"
(cd "$W/unzipped" && sha256sum -c --quiet "$W/want.sum") || { echo "ferry: the zip's bytes differ" >&2; exit 1; }
rm -rf "$W/check.zip" "$W/unzipped"
cat "$files"/payload/* > /dev/null  # warm the page cache for everyone

timed() { local t0; t0=$(now); "$@"; local t1; t1=$(now); calc "$t1 - $t0"; }
ferry_get() { curl -sf -H "Authorization: Bearer $token" -o /dev/null "$api/jobs/$id/archive?format=$1"; }
zip_stored() { (cd "$files" && zip -0 -r -q - payload > /dev/null); }
tar_plain() { tar cf - -C "$files" payload | cat > /dev/null; }  # through a pipe: GNU tar skips reading files when it writes to /dev/null itself

fz=(); zz=(); ft=(); tt=()
for i in $(seq 1 "$RUNS"); do
  a=$(timed ferry_get zip); fz+=("$a")
  b=$(timed zip_stored); zz+=("$b")
  c=$(timed ferry_get tar); ft+=("$c")
  d=$(timed tar_plain); tt+=("$d")
  printf 'run %d: ferry zip %.2fs, zip -0 %.2fs; ferry tar %.2fs, tar cf %.2fs\n' "$i" "$a" "$b" "$c" "$d"
done
m() { printf '%s\n' "$@" | median; }
mfz=$(m "${fz[@]}"); mzz=$(m "${zz[@]}"); mft=$(m "${ft[@]}"); mtt=$(m "${tt[@]}")
printf '\n%d MiB in %d files, page cache warm, output to /dev/null, %d runs each (medians)\n' "$SIZE_MIB" "$FILES" "$RUNS"
printf 'ferry zip %.2fs (%.0f MiB/s), zip -0 %.2fs (%.0f MiB/s): ratio %.2f (target <= 1.00)\n' \
  "$mfz" "$(calc "$SIZE_MIB / $mfz")" "$mzz" "$(calc "$SIZE_MIB / $mzz")" "$(calc "$mfz / $mzz")"
printf 'ferry tar %.2fs (%.0f MiB/s), tar cf %.2fs (%.0f MiB/s): ratio %.2f (target <= 1.00)\n' \
  "$mft" "$(calc "$SIZE_MIB / $mft")" "$mtt" "$(calc "$SIZE_MIB / $mtt")" "$(calc "$mft / $mtt")"
