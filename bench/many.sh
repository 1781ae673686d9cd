#!/usr/bin/env bash
# Many torrents at once: N (500) torrents of SIZE_KIB (2 MiB) each, generated, held by SEEDERS
# (4) aria2c seeders (torrent i on seeder i mod 4) behind one opentracker, all downloaded and
# then seeded for HOLD (30) seconds by one `ferry serve` (every torrent active: as many
# download and seed workers as torrents) and by qbittorrent-nox (queueing off), one after the
# other on the same seeders (ORDER="ferry qbittorrent-nox"). Each client's list is polled
# every 0.25 s on its own kept-alive connection (Ferry: `GET /api/v1/jobs`; qBittorrent:
# `GET /api/v2/torrents/info`), and its process sampled. Prints, per client: time until all are
# complete, peak RSS, CPU seconds (downloading, and with the seeding hold), list latency p50/p99
# while downloading and while seeding; then Ferry/qBittorrent ratios. Every delivered file's
# SHA-256 is checked. Targets: Ferry's RSS < 1 GiB and ≤ 0.5× qBittorrent's; p99 < 100 ms.
#
#   bench/many.sh                       # N=500 SIZE_KIB=2048
#   N=100 SIZE_KIB=1024 HOLD=10 bench/many.sh; FERRY_BIN=… skips the build
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500}
SIZE_KIB=${SIZE_KIB:-2048}
SEEDERS=${SEEDERS:-4}
HOLD=${HOLD:-30}
ORDER=${ORDER:-"ferry qbittorrent-nox"}
for p in opentracker aria2c qbittorrent-nox curl python3; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  echo "building ferry (release)…" >&2
  cargo build --release -q -p ferry
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FERRY="$target/release/ferry"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/ferry-many.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PY="python3 bench/many.py"

TP=$(free_port)
echo "generating $N torrents of $SIZE_KIB KiB…" >&2
$PY prepare --dir "$W" --n "$N" --size-kib "$SIZE_KIB" --seeders "$SEEDERS" --announce "http://127.0.0.1:$TP/announce"
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist /whitelist.txt\ntracker.rootdir %s\ntracker.user nobody\n' "$TP" "$W/tracker" > "$W/tracker/ot.conf"
opentracker -f "$W/tracker/ot.conf" > "$W/ot.log" 2>&1 & pids+=($!)
for k in $(seq 0 $((SEEDERS - 1))); do
  aria2c --interface=127.0.0.1 --dir="$W/seed" --bt-seed-unverified=true --seed-ratio=0.0 \
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --disable-ipv6=true --summary-interval=0 --console-log-level=warn --listen-port="$(free_port)" \
    --max-concurrent-downloads="$N" --bt-max-open-files="$N" --bt-tracker-interval=10 \
    --input-file="$W/seeder$k.txt" > "$W/seeder$k.log" 2>&1 & pids+=($!)
done
echo "waiting for the tracker to list a seeder of each…" >&2
$PY seeded --dir "$W" --tracker "http://127.0.0.1:$TP"

run_ferry() {
  local dir="$W/ferry"; local port; port=$(free_port)
  FERRY_LOG__LEVEL=warn FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 \
  FERRY_TORRENT__ALLOW='["127.0.0.0/8"]' FERRY_WORKERS__DOWNLOADS="$N" FERRY_WORKERS__SEEDS="$N" \
  FERRY_SEED__DEFAULT=true FERRY_SEED__RATIO=1000 FERRY_AUTH__API_RATE=1000000 FERRY_AUTH__API_BURST=1000000 \
    "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" > "$W/ferry.log" 2>&1 &
  local pid=$!; pids+=($pid)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.05; done
  $PY run --client ferry --dir "$W" --port "$port" --token "$(cat "$dir/api-token")" --pid "$pid" \
    --save "$dir/storage" --hold "$HOLD" > "$W/ferry.json" || { tail -20 "$W/ferry.log" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

run_qbittorrent() {
  local qport pport; qport=$(free_port); pport=$(free_port)
  mkdir -p "$W/qbt/qBittorrent/config"
  cat > "$W/qbt/qBittorrent/config/qBittorrent.conf" <<CONF
[LegalNotice]
Accepted=true

[BitTorrent]
Session\\Port=$pport
Session\\Interface=lo
Session\\InterfaceName=lo
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\QueueingSystemEnabled=false
Session\\GlobalMaxRatio=-1
Session\\DefaultSavePath=$W/qbt-downloads

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port=$qport
WebUI\\LocalHostAuth=false
CONF
  qbittorrent-nox --profile="$W/qbt" > "$W/qbt.log" 2>&1 &
  local pid=$!; pids+=($pid)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$qport/api/v2/app/version" >/dev/null 2>&1 && break; sleep 0.1; done
  $PY run --client qbittorrent-nox --dir "$W" --port "$qport" --pid "$pid" \
    --save "$W/qbt-downloads" --hold "$HOLD" > "$W/qbittorrent-nox.json" || { tail -20 "$W/qbt.log" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$W/qbt" "$W/qbt-downloads"
}

for c in $ORDER; do
  echo "running $c…" >&2
  case $c in
    ferry) run_ferry ;;
    qbittorrent-nox) run_qbittorrent ;;
  esac
done

python3 - "$W" "$N" "$SIZE_KIB" "$SEEDERS" <<'PYEND'
import json, os, sys
w, n, size, seeders = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = {c: json.load(open(os.path.join(w, f"{c}.json"))) for c in ("ferry", "qbittorrent-nox") if os.path.exists(os.path.join(w, f"{c}.json"))}
print(f"\n{n} torrents of {size} KiB ({n * size / 1024:.0f} MiB), {seeders} aria2c seeders, opentracker, all on loopback")
rows = [("all complete (s)", "complete_s"), ("peak RSS (MiB)", "peak_rss_mib"), ("RSS at end (MiB)", "rss_end_mib"),
        ("CPU to complete (s)", "cpu_download_s"), ("CPU incl. seeding hold (s)", "cpu_total_s"),
        ("list p50 downloading (ms)", "list_p50_ms_downloading"), ("list p99 downloading (ms)", "list_p99_ms_downloading"),
        ("list p50 seeding (ms)", "list_p50_ms_seeding"), ("list p99 seeding (ms)", "list_p99_ms_seeding"),
        ("seeding at the end", "seeding_at_end")]
print(f"{'':30}" + "".join(f"{c:>18}" for c in r) + ("  ferry/qbt" if len(r) == 2 else ""))
for label, k in rows:
    vals = [r[c][k] for c in r]
    ratio = f"  {vals[0] / vals[1]:.2f}" if len(vals) == 2 and vals[1] else ""
    print(f"{label:30}" + "".join(f"{v:>18}" for v in vals) + ratio)
if "ferry" in r:
    f = r["ferry"]
    print(f"targets: Ferry peak RSS < 1024 MiB: {f['peak_rss_mib'] < 1024}; list p99 < 100 ms: "
          f"{max(f['list_p99_ms_downloading'], f['list_p99_ms_seeding']) < 100}"
          + (f"; RSS <= 0.5x qBittorrent: {f['peak_rss_mib'] <= 0.5 * r['qbittorrent-nox']['peak_rss_mib']}" if len(r) == 2 else ""))
PYEND
