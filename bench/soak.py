"""Driver of bench/soak.sh: mixed load on a distributed Ferry for DURATION seconds while every
process is sampled every SAMPLE seconds; prints the samples and whether each series stayed flat.

Load, one round about every second: a torrent job (a pool of seeded torrents, each resubmitted
once its last job is purged), a URL job from the local origin, an event stream opened, read for
a few seconds and dropped (one in flight at a time), `GET /jobs`, `GET /jobs/{id}`, and a purge
of every job that ended. Samples: each process's RSS, open file descriptors, threads and
`ferry_runtime_tasks` (from its /metrics), the Redis server's clients and the database's
connections.
"""

import argparse
import http.client
import json
import os
import subprocess
import threading
import time


class Api:
    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None, headers=None):
        h = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise


def proc_sample(pid):
    rss = threads = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss // 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def tasks(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("ferry_runtime_tasks"):
                return int(float(line.split()[-1]))
    except OSError:
        pass
    return -1


def sampler(a, procs, stop, rows):
    start = time.monotonic()
    while not stop.wait(0 if not rows else a.sample):
        row = {"t": round(time.monotonic() - start)}
        for name, pid, port in procs:
            rss, fds, threads = proc_sample(pid)
            row[f"{name}.rss_mib"], row[f"{name}.fds"], row[f"{name}.threads"] = rss, fds, threads
            row[f"{name}.tasks"] = tasks(port)
        out = subprocess.run(["redis-cli", "-u", a.redis, "CLIENT", "LIST"], capture_output=True, text=True).stdout
        row["redis.clients"] = sum(1 for l in out.splitlines() if l.startswith("id=")) - 1
        out = subprocess.run(["psql", a.pg, "-Atc", f"select count(*) from pg_stat_activity where datname = '{a.db}'"],
                             capture_output=True, text=True).stdout.strip()
        row["pg.connections"] = int(out or -1)
        rows.append(row)
        print(json.dumps(row), flush=True)


def stream(port, token, job):
    """Opens the job's event stream, reads for up to 3 s, drops it."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", f"/api/v1/jobs/{job}/events", headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        end = time.monotonic() + 3
        while time.monotonic() < end and r.read1(4096):
            pass
        c.close()
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--torrents", required=True, help="folder of .torrent files")
    ap.add_argument("--url", required=True, help="what URL jobs fetch")
    ap.add_argument("--procs", required=True, help="name:pid:metrics-port,…")
    ap.add_argument("--redis", required=True)
    ap.add_argument("--pg", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--sample", type=float, default=60)
    a = ap.parse_args()
    procs = [(n, int(p), int(m)) for n, p, m in (x.split(":") for x in a.procs.split(","))]
    api = Api(a.port, a.token)
    rows, stop = [], threading.Event()
    t = threading.Thread(target=sampler, args=(a, procs, stop, rows), daemon=True)
    t.start()
    pool = {name: open(os.path.join(a.torrents, name), "rb").read() for name in sorted(os.listdir(a.torrents))}
    live_torrent = {}  # torrent name -> job id
    live = set()
    counts = {"submitted": 0, "completed": 0, "failed": 0, "errors": 0}
    streamer = None
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        # Submit: a torrent whose last job was purged, and a URL job.
        free = [n for n in pool if n not in live_torrent]
        if free:
            name = free[counts["submitted"] % len(free)]
            boundary = "soakboundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"{name}\"\r\n"
                    "Content-Type: application/x-bittorrent\r\n\r\n").encode() + pool[name] + f"\r\n--{boundary}--\r\n".encode()
            s, data = api.call("POST", "/api/v1/jobs/torrent", body,
                               {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            if s == 201:
                live_torrent[name] = json.loads(data)["id"]
                live.add(live_torrent[name])
                counts["submitted"] += 1
            else:
                counts["errors"] += 1
        s, data = api.call("POST", "/api/v1/jobs", json.dumps({"source": {"url": a.url}}),
                           {"Content-Type": "application/json"})
        if s == 201:
            live.add(json.loads(data)["id"])
            counts["submitted"] += 1
        else:
            counts["errors"] += 1
        # Read: the list, one job, an event stream.
        s, data = api.call("GET", "/api/v1/jobs?limit=200")
        if s != 200:
            counts["errors"] += 1
            time.sleep(1)
            continue
        items = json.loads(data)["items"]
        if items:
            api.call("GET", f"/api/v1/jobs/{items[0]['id']}")
            if streamer is None or not streamer.is_alive():
                streamer = threading.Thread(target=stream, args=(a.port, a.token, items[0]["id"]), daemon=True)
                streamer.start()
        # Purge what ended.
        for j in items:
            if j["id"] in live and j["status"] in ("completed", "failed", "cancelled"):
                counts["completed" if j["status"] == "completed" else "failed"] += 1
                s, _ = api.call("DELETE", f"/api/v1/jobs/{j['id']}?purge=true")
                if s in (200, 202, 204):
                    live.discard(j["id"])
                    for n, i in list(live_torrent.items()):
                        if i == j["id"]:
                            del live_torrent[n]
        time.sleep(1)
    stop.set()
    t.join()
    print(json.dumps({"load": counts}))
    # Flat: the last quarter's mean within 10 % (and a small absolute margin) of the second's.
    q = max(1, len(rows) // 4)
    early, late = rows[q:2 * q] or rows[:1], rows[-q:]
    verdict = True
    for key in rows[0]:
        if key == "t":
            continue
        e = sum(r[key] for r in early) / len(early)
        l = sum(r[key] for r in late) / len(late)
        margin = {"rss_mib": 8, "fds": 8, "threads": 4, "tasks": 20, "clients": 4, "connections": 4}[key.split(".")[1]]
        flat = l <= e * 1.10 + margin
        verdict &= flat
        print(f"  {key:28} second quarter {e:9.1f}   last quarter {l:9.1f}   {'flat' if flat else 'GROWING'}")
    print("all flat" if verdict else "SOMETHING GREW")
    raise SystemExit(0 if verdict else 1)


if __name__ == "__main__":
    main()
