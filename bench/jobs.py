"""Driver of bench/jobs.sh: submits N .torrent jobs as a logged-in user, or times the list
operations and the jobs page once they are finished (p50/p99 of sequential requests on one
kept-alive connection)."""

import argparse
import hashlib
import http.client
import json
import os
import statistics
import time
import urllib.parse
import uuid


def bencode(v) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)


def torrent(n: int, files: int) -> bytes:
    """A multi-file torrent as users add them: an album or a season, `files` files."""
    piece = 1 << 20
    sizes = [(7 + i) * 3_000_000 + n for i in range(files)]
    pieces = (sum(sizes) + piece - 1) // piece
    return bencode({
        "info": {
            "name": f"bench-{n:05} {uuid.uuid4().hex[:8]}",
            "piece length": piece,
            "pieces": hashlib.sha1(str(n).encode()).digest() * pieces,
            "files": [{"length": s, "path": [f"disc {i // 10 + 1}", f"track {i:02}.flac"]}
                      for i, s in enumerate(sizes)],
        },
    })


class Client:
    def __init__(self, url: str):
        u = urllib.parse.urlsplit(url)
        self.origin = url
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, body=None, headers=None):
        h = {"Origin": self.origin, **(headers or {})}
        if self.cookie:
            h["Cookie"] = self.cookie
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                self.cookie = v.split(";", 1)[0]
        return r.status, data

    def login(self, user: str, password: str):
        s, body = self.request("POST", "/api/v1/auth/login",
                               json.dumps({"username": user, "password": password}),
                               {"Content-Type": "application/json"})
        assert s == 200, body


def submit(c: Client, jobs: int, files: int):
    started = time.monotonic()
    for n in range(jobs):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; "
                f"filename=\"{n}.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").encode() \
            + torrent(n, files) + f"\r\n--{boundary}--\r\n".encode()
        s, data = c.request("POST", "/api/v1/jobs/torrent", body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert s == 201, data
    print(f"submitted {jobs} jobs of {files} files in {time.monotonic() - started:.1f} s")


def timed(c: Client, label: str, path: str, requests: int):
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        s, body = c.request("GET", path)
        times.append((time.perf_counter() - t0) * 1000)
        assert s == 200, (path, s, body[:300])
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"  {label:<44} p50 {statistics.median(times):6.1f} ms   p99 {p99:6.1f} ms   "
          f"({len(body) / 1024:.0f} KiB){'' if p99 < 50 else '   OVER 50 ms'}")
    return p99


def measure(c: Client, requests: int):
    s, body = c.request("GET", "/api/v1/jobs?limit=200")
    page = json.loads(body)
    # A cursor deep in the list: 20 pages of 200 in.
    cursor = None
    for _ in range(20):
        s, body = c.request("GET", "/api/v1/jobs?limit=200" + (f"&before={cursor}" if cursor else ""))
        cursor = json.loads(body).get("next_cursor") or cursor
    name = page["items"][len(page["items"]) // 2]["name"].split(" ")[0]
    worst = max(
        timed(c, "GET /jobs (first page, 50)", "/api/v1/jobs", requests),
        timed(c, "GET /jobs?limit=200", "/api/v1/jobs?limit=200", requests),
        timed(c, "GET /jobs?status=completed", "/api/v1/jobs?status=completed", requests),
        timed(c, "GET /jobs?status=failed (the rare ones)", "/api/v1/jobs?status=failed", requests),
        timed(c, f"GET /jobs?q={name} (one match)", f"/api/v1/jobs?q={urllib.parse.quote(name)}", requests),
        timed(c, "GET /jobs?q=no-such-name (scans all)", "/api/v1/jobs?q=no-such-name", requests),
        timed(c, "GET /jobs?before=<4,000 rows deep>", f"/api/v1/jobs?before={cursor}", requests),
        timed(c, "GET / (the jobs page)", "/", requests),
        timed(c, "GET /?status=failed (the jobs page, filtered)", "/?status=failed", requests),
    )
    print(f"  worst p99 {worst:.1f} ms (target < 50 ms: {worst / 50:.2f}x of the target)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["submit", "measure"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--requests", type=int, default=300)
    a = ap.parse_args()
    c = Client(a.url)
    c.login("bench", os.environ["BENCH_PASSWORD"])
    if a.command == "submit":
        submit(c, a.jobs, a.files)
    else:
        measure(c, a.requests)


if __name__ == "__main__":
    main()
