"""The jobs page under load, in headless Chromium (Playwright, Debian's chromium).

Driven by bench/web.sh against a release `ferry-api` (PostgreSQL + Redis):

1. 1,000 jobs of one user; the first page of the jobs list: HTML bytes (raw and gzip -6,
   Ferry sends it uncompressed), time to first byte and to a complete render (the load
   event: HTML, stylesheet and script done), median of RUNS navigations.
2. Live updates for 200 running jobs: progress events for each job at 2 per second (the
   workers' default progress interval) written to the user's feed in Redis, as workers
   would; the share of the page's main thread busy with tasks over 10 s (Chrome's
   TaskDuration), and a check that the visible rows really change.

Targets (issue 10): first page <= 100 KB compressed, rendered in under 300 ms here; main
thread under 20 % busy with 200 live jobs.
"""

import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import threading
import time
import uuid
from datetime import datetime, timezone

from playwright.sync_api import sync_playwright


def resp(*args) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Feed(threading.Thread):
    """Writes progress events for `jobs` into the owner's feed stream, `per_second` each."""

    def __init__(self, redis: str, key: str, owner: str, jobs, per_second: float):
        super().__init__(daemon=True)
        host, port = redis.removeprefix("redis://").split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.key, self.owner, self.jobs, self.period = key, owner, jobs, 1 / per_second
        self.stop = threading.Event()
        self.sent = 0

    def drain(self):
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        self.sock.setblocking(True)

    def run(self):
        total = 4 << 30
        started = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            elapsed = time.monotonic() - started
            batch = []
            for i, job in enumerate(self.jobs):
                done = min(total, int((elapsed * 3e6 + i * 1e6)) % total)
                event = {
                    "job_id": job,
                    "owner": self.owner,
                    "kind": "progress",
                    "status": "downloading",
                    "progress": {
                        "bytes_done": done,
                        "bytes_total": total,
                        "download_rate": 3_000_000 + i * 1000 + tick,
                        "upload_rate": 0,
                        "uploaded_bytes": 0,
                        "peers": 1 + (tick + i) % 40,
                        "eta_seconds": (total - done) // 3_000_000,
                    },
                    "error": None,
                    "at": datetime.now(timezone.utc).isoformat(),
                }
                batch.append(resp("XADD", self.key, "MAXLEN", "~", 200, "*", "e", json.dumps(event), "id", f"{int(time.time() * 1000)}-{tick * 1000 + i}"))
            self.sock.sendall(b"".join(batch))
            self.drain()
            self.sent += len(batch)
            tick += 1
            next_at = started + tick * self.period
            time.sleep(max(0.0, next_at - time.monotonic()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--live", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        context = browser.new_context(base_url=a.url, viewport={"width": 1280, "height": 800})
        api = context.request
        r = api.post("/api/v1/auth/login", data={"username": "bench", "password": os.environ["BENCH_PASSWORD"]})
        assert r.ok, r.text()
        origin = {"Origin": a.url}
        owner = api.get("/api/v1/me").json()["user"]["id"]
        started = time.monotonic()
        ids = []
        for n in range(a.jobs):
            magnet = f"magnet:?xt=urn:btih:{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}&dn=bench-{n:04}"
            r = api.post("/api/v1/jobs", data={"source": {"magnet": magnet}}, headers=origin)
            assert r.status == 201, r.text()
            ids.append(r.json()["id"])
        print(f"submitted {a.jobs} jobs in {time.monotonic() - started:.1f} s")

        html = api.get("/").body()
        packed = len(gzip.compress(html, 6))
        page = context.new_page()
        ttfb, loaded = [], []
        for _ in range(a.runs):
            page.goto("/")
            nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            nav = json.loads(nav)
            ttfb.append(nav["responseStart"] - nav["requestStart"])
            loaded.append(nav["loadEventEnd"] - nav["startTime"])
        rows = page.locator("#jobs-rows tr").count()
        print(f"first page: {rows} rows, {len(html) / 1024:.1f} KiB HTML, {packed / 1024:.1f} KiB gzip -6 "
              f"(target <= 100 KB compressed: {packed / 100_000:.2f}x of the target)")
        print(f"time to first byte: median {statistics.median(ttfb):.1f} ms; complete render (load event): "
              f"median {statistics.median(loaded):.1f} ms, max {max(loaded):.1f} ms "
              f"(target < 300 ms: {statistics.median(loaded) / 300:.2f}x of the target)")

        # Live: the newest `live` jobs (the page shows the newest 50) get events.
        live = ids[-a.live:]
        key = f"{a.prefix}:progress-owner:{owner}"
        page.goto("/")
        page.wait_for_timeout(1000)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        first = page.locator("#jobs-rows tr [data-f=percent]").first.text_content()
        feed = Feed(a.redis, key, owner, live, 2.0)
        feed.start()
        time.sleep(2)  # steady state
        m0 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        t0 = time.monotonic()
        time.sleep(a.seconds)
        m1 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        t1 = time.monotonic()
        feed.stop.set()
        feed.join()
        busy = (m1["TaskDuration"] - m0["TaskDuration"]) / (t1 - t0)
        script = (m1["ScriptDuration"] - m0["ScriptDuration"]) / (t1 - t0)
        layout = (m1["LayoutDuration"] - m0["LayoutDuration"]) / (t1 - t0)
        last = page.locator("#jobs-rows tr [data-f=percent]").first.text_content()
        assert last != first, f"the rows did not change ({first} → {last})"
        print(f"live: {a.live} jobs x 2 events/s ({feed.sent} events written); "
              f"main thread busy {busy * 100:.1f}% (script {script * 100:.1f}%, layout {layout * 100:.1f}%) "
              f"(target < 20%: {busy / 0.2:.2f}x of the target)")
        browser.close()


if __name__ == "__main__":
    main()
