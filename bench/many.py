"""Driver of bench/many.sh: N torrents downloaded and then seeded by one client at once.

  prepare  writes N random payloads, their .torrent files, the tracker's whitelist, one aria2c
           input file per seeder (torrent i goes to seeder i mod K) and the expected SHA-256s;
  seeded   waits until the tracker lists a seeder for every torrent;
  run      adds the N torrents to `ferry serve` (its API, a personal token) or qbittorrent-nox
           (its WebUI API), then polls both the client's list and the process every TICK
           seconds until every torrent is complete, keeps polling HOLD seconds while they seed,
           checks every delivered file's SHA-256 and prints one JSON line of figures.
"""

import argparse
import hashlib
import http.client
import json
import os
import time
import urllib.parse
import uuid

from jobs import bencode  # bench/jobs.py, beside this file

TICKS = os.sysconf("SC_CLK_TCK")


def prepare(a):
    piece = a.piece_kib * 1024
    for sub in ("seed", "torrents", "tracker"):
        os.makedirs(os.path.join(a.dir, sub), exist_ok=True)
    expect, hashes, inputs = {}, [], [[] for _ in range(a.seeders)]
    for i in range(a.n):
        name = f"t{i:04}.bin"
        data = os.urandom(a.size_kib * 1024)
        with open(os.path.join(a.dir, "seed", name), "wb") as f:
            f.write(data)
        pieces = b"".join(hashlib.sha1(data[o:o + piece]).digest() for o in range(0, len(data), piece))
        info = {"name": name, "length": len(data), "piece length": piece, "pieces": pieces}
        path = os.path.join(a.dir, "torrents", f"t{i:04}.torrent")
        with open(path, "wb") as f:
            f.write(bencode({"announce": a.announce, "info": info}))
        hashes.append(hashlib.sha1(bencode(info)).hexdigest())
        expect[name] = hashlib.sha256(data).hexdigest()
        inputs[i % a.seeders].append(path)
    with open(os.path.join(a.dir, "tracker", "whitelist.txt"), "w") as f:
        f.write("\n".join(hashes) + "\n")
    with open(os.path.join(a.dir, "hashes.txt"), "w") as f:
        f.write("\n".join(hashes) + "\n")
    for k, paths in enumerate(inputs):
        with open(os.path.join(a.dir, f"seeder{k}.txt"), "w") as f:
            f.write("\n".join(paths) + "\n")
    with open(os.path.join(a.dir, "expect.json"), "w") as f:
        json.dump(expect, f)


def seeded(a):
    hashes = open(os.path.join(a.dir, "hashes.txt")).read().split()
    u = urllib.parse.urlsplit(a.tracker)
    deadline = time.monotonic() + 120
    left = list(hashes)
    while left:
        h = left[-1]
        q = urllib.parse.quote(bytes.fromhex(h), safe="")
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)  # it closes after each answer
        c.request("GET", f"/scrape?info_hash={q}")
        body = c.getresponse().read()
        if b"8:completei0e" in body or b"8:complete" not in body:
            if time.monotonic() > deadline:
                raise SystemExit(f"the tracker lists no seeder for {h} after 120 s")
            time.sleep(0.2)
            continue
        left.pop()


class Api:
    def __init__(self, port: int, token: str | None):
        self.port, self.headers = port, ({"Authorization": f"Bearer {token}"} if token else {})
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
        return data

    def multipart(self, path, field, files, extra=None):
        boundary = uuid.uuid4().hex
        parts = []
        for k, v in (extra or {}).items():
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
        for name, data in files:
            parts.append((f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                          f"filename=\"{name}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").encode()
                         + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.call("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def proc(pid: int):
    """(RSS in KiB, peak RSS in KiB, CPU seconds) of the process."""
    rss = hwm = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return rss, hwm, (int(fields[11]) + int(fields[12])) / TICKS


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000 if xs else float("nan")


def ferry_states(api: Api):
    """Every job's status, through the list API's pages."""
    states, cursor = {}, None
    while True:
        body = json.loads(api.call("GET", "/api/v1/jobs?limit=200" + (f"&before={cursor}" if cursor else "")))
        for j in body["items"]:
            states[j["id"]] = (j["status"], j.get("error"))
        cursor = body.get("next_cursor")
        if not cursor:
            return states


def run(a):
    expect = json.load(open(os.path.join(a.dir, "expect.json")))
    torrents = sorted(os.listdir(os.path.join(a.dir, "torrents")))
    api = Api(a.port, a.token)
    lister = Api(a.port, a.token)  # the timed list calls, on their own kept-alive connection
    ferry = a.client == "ferry"
    list_path = "/api/v1/jobs" if ferry else "/api/v2/torrents/info"
    started = time.monotonic()
    cpu0 = proc(a.pid)[2]
    batch = 1 if ferry else 50
    for i in range(0, len(torrents), batch):
        files = [(t, open(os.path.join(a.dir, "torrents", t), "rb").read()) for t in torrents[i:i + batch]]
        if ferry:
            api.multipart("/api/v1/jobs/torrent", "torrent", files)
        else:
            api.multipart("/api/v2/torrents/add", "torrents", files, {"savepath": a.save})
    submitted = time.monotonic() - started
    lat_down, lat_seed, rss_peak, done_at, cpu_done = [], [], 0, None, None
    while True:
        t = time.perf_counter()
        lister.call("GET", list_path)
        lat = time.perf_counter() - t
        rss, hwm, cpu = proc(a.pid)
        rss_peak = max(rss_peak, hwm)
        if ferry:
            states = ferry_states(api)
            failed = [(i, e) for i, (s, e) in states.items() if s in ("failed", "cancelled")]
            if failed:
                raise SystemExit(f"ferry: {len(failed)} jobs failed, e.g. {failed[0]}")
            complete = sum(1 for s, _ in states.values() if s in ("seeding", "completed"))
            seeding = sum(1 for s, _ in states.values() if s == "seeding")
        else:
            items = json.loads(api.call("GET", "/api/v2/torrents/info"))
            bad = [x for x in items if x["state"] in ("error", "missingFiles")]
            if bad:
                raise SystemExit(f"qbittorrent-nox: {len(bad)} torrents in error, e.g. {bad[0]['state']}")
            complete = sum(1 for x in items if x["progress"] >= 1.0)
            seeding = sum(1 for x in items if x["state"] in ("uploading", "stalledUP", "forcedUP", "queuedUP"))
        now = time.monotonic() - started
        (lat_down if done_at is None else lat_seed).append(lat)
        if done_at is None and complete == len(torrents):
            done_at, cpu_done = now, cpu - cpu0
        if done_at is not None and now - done_at >= a.hold:
            break
        if done_at is None and now > a.timeout:
            raise SystemExit(f"{a.client}: {complete}/{len(torrents)} complete after {a.timeout} s")
        time.sleep(a.tick)
    rss_end, hwm, cpu_end = proc(a.pid)
    # Every delivered file is the seeder's.
    found = {}
    for root, _, names in os.walk(a.save):
        for n in names:
            if n in expect:
                with open(os.path.join(root, n), "rb") as f:
                    found[n] = hashlib.file_digest(f, "sha256").hexdigest()
    wrong = [n for n, h in expect.items() if found.get(n) != h]
    if wrong:
        raise SystemExit(f"{a.client}: {len(wrong)} files missing or wrong, e.g. {wrong[0]}")
    print(json.dumps({
        "client": a.client, "torrents": len(torrents), "submit_s": round(submitted, 2),
        "complete_s": round(done_at, 2), "seeding_at_end": seeding,
        "peak_rss_mib": round(max(rss_peak, hwm) / 1024, 1), "rss_end_mib": round(rss_end / 1024, 1),
        "cpu_download_s": round(cpu_done, 2), "cpu_total_s": round(cpu_end - cpu0, 2),
        "list_p50_ms_downloading": round(pct(lat_down, 50), 2), "list_p99_ms_downloading": round(pct(lat_down, 99), 2),
        "list_p50_ms_seeding": round(pct(lat_seed, 50), 2), "list_p99_ms_seeding": round(pct(lat_seed, 99), 2),
        "list_samples": len(lat_down) + len(lat_seed),
    }))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--size-kib", type=int, required=True)
    p.add_argument("--piece-kib", type=int, default=256)
    p.add_argument("--seeders", type=int, required=True)
    p.add_argument("--announce", required=True)
    s = sub.add_parser("seeded")
    s.add_argument("--dir", required=True)
    s.add_argument("--tracker", required=True)
    r = sub.add_parser("run")
    r.add_argument("--client", choices=["ferry", "qbittorrent-nox"], required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--token")
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--save", required=True, help="where the client's finished files end up")
    r.add_argument("--tick", type=float, default=0.25)
    r.add_argument("--hold", type=float, default=30)
    r.add_argument("--timeout", type=float, default=1800)
    a = ap.parse_args()
    {"prepare": prepare, "seeded": seeded, "run": run}[a.command](a)


if __name__ == "__main__":
    main()
