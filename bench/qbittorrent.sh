#!/usr/bin/env bash
# `GET /api/v2/torrents/info` with N torrents (default 1,000): a release `ferry serve` (one
# user, a personal token) against qbittorrent-nox, on the same machine, in the same run.
# Both get the same N magnet links (random hashes, added stopped, so neither spends anything
# looking for peers); then REQUESTS requests (default 300) are sent one after another on one
# keep-alive connection, alternately to each in rounds of 50, and the latency of each is
# recorded. Prints p50 and p99 of both and the ratios. Target: Ferry's p50 and p99 no worse
# than qbittorrent-nox's (ratio ≤ 1.0).
#
#   bench/qbittorrent.sh      # N=1000 REQUESTS=300; FERRY_BIN=… skips the build
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
REQUESTS=${REQUESTS:-300}
for p in curl python3 qbittorrent-nox; do
  command -v $p >/dev/null || { echo "bench: $p is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
done
if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  echo "building (release)…" >&2
  cargo build --release -q -p ferry
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FERRY="$target/release/ferry"
fi

W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# qbittorrent-nox: loopback only, no DHT/LSD/PeX, no queueing, open to localhost.
qport=$(free_port); pport=$(free_port)
mkdir -p "$W/qbt/qBittorrent/config"
cat > "$W/qbt/qBittorrent/config/qBittorrent.conf" <<EOF
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
Session\\DefaultSavePath=$W/qbt-downloads

[Preferences]
WebUI\\Address=127.0.0.1
WebUI\\Port=$qport
WebUI\\LocalHostAuth=false
EOF
qbittorrent-nox --profile="$W/qbt" >"$W/qbt.log" 2>&1 &
pids+=($!)

# Ferry, with one user and a personal token.
fport=$(free_port)
FERRY_TORRENT__DHT=false FERRY_TORRENT__LISTEN=127.0.0.1:0 FERRY_AUTH__API_RATE=1000000 \
  FERRY_AUTH__API_BURST=1000000 FERRY_LOG__LEVEL=warn \
  "$FERRY" serve --listen "127.0.0.1:$fport" --data-dir "$W/ferry" >"$W/ferry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$fport/api/v1/version" >/dev/null 2>&1 \
    && curl -sf "http://127.0.0.1:$qport/api/v2/app/version" >/dev/null 2>&1 && break
  sleep 0.1
done
TOKEN=$(cat "$W/ferry/api-token")

python3 - "$fport" "$qport" "$TOKEN" "$N" "$REQUESTS" <<'PY'
import http.client, json, os, sys, time, urllib.parse
fport, qport, token, n, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
targets = {
    "ferry": (int(fport), {"Authorization": f"Bearer {token}"}),
    "qbittorrent-nox": (int(qport), {}),
}
conns = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60) for name, (port, _) in targets.items()}

def call(name, method, path, body=None):
    port, headers = targets[name]
    h = dict(headers)
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode(body)
    for attempt in (1, 2):
        c = conns[name]
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A server that closed the kept-alive connection: one new one.
            c.close()
            conns[name] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if attempt == 2:
                raise
    if r.status >= 300:
        raise SystemExit(f"{name} {path}: {r.status} {data[:200]!r}")
    return data

print(f"adding {n} torrents to each…", file=sys.stderr)
hashes = [os.urandom(20).hex() for _ in range(n)]
for name in targets:
    for i in range(0, n, 100):
        urls = "\n".join(f"magnet:?xt=urn:btih:{h}&dn=bench-{h[:8]}" for h in hashes[i:i + 100])
        call(name, "POST", "/api/v2/torrents/add", {"urls": urls, "stopped": "true", "paused": "true", "category": ""})
for name in targets:
    deadline = time.time() + 120
    while len(json.loads(call(name, "GET", "/api/v2/torrents/info"))) < n:
        if time.time() > deadline:
            raise SystemExit(f"{name} did not list {n} torrents")
        time.sleep(0.5)

lat = {name: [] for name in targets}
for name in targets:  # warm-up
    for _ in range(10):
        call(name, "GET", "/api/v2/torrents/info")
done = 0
while done < requests:
    for name in targets:
        for _ in range(50):
            t = time.perf_counter()
            body = call(name, "GET", "/api/v2/torrents/info")
            lat[name].append(time.perf_counter() - t)
    done += 50

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000

f50, f99 = pct(lat["ferry"], 50), pct(lat["ferry"], 99)
q50, q99 = pct(lat["qbittorrent-nox"], 50), pct(lat["qbittorrent-nox"], 99)
size = len(call("ferry", "GET", "/api/v2/torrents/info")), len(call("qbittorrent-nox", "GET", "/api/v2/torrents/info"))
print(f"torrents/info with {n} torrents, {requests} requests each (answer {size[0]} B / {size[1]} B):")
print(f"  ferry:           p50 {f50:.2f} ms, p99 {f99:.2f} ms")
print(f"  qbittorrent-nox: p50 {q50:.2f} ms, p99 {q99:.2f} ms")
print(f"  ferry/qbittorrent-nox: p50 {f50 / q50:.2f}, p99 {f99 / q99:.2f} (target ≤ 1.0)")
PY
