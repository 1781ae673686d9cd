"""Drives Ferry's qBittorrent-compatible API with the `qbittorrent-api` client, as a script
(or an *arr app) would drive qBittorrent: log in, make a category, add a magnet in it, poll
until complete, read the files at `content_path`, set share limits, delete with files.

Usage: arr_client.py BASE_URL USER TOKEN MAGNET HASH EXPECTED_JSON
EXPECTED_JSON maps each file's path (relative to content_path's parent) to its SHA-256.
Prints one JSON line with what it saw; exits non-zero on the first mismatch.
"""

import hashlib
import json
import os
import sys
import time

import qbittorrentapi

base, user, token, magnet, info_hash, expected = sys.argv[1:7]
expected = json.loads(expected)
seen = {}


def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, "seen": seen}, default=str))
        sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# A wrong token is refused as qBittorrent refuses a wrong password.
bad = qbittorrentapi.Client(host=base, username=user, password="ferry_pat_wrong")
try:
    bad.auth_log_in()
    check(False, "a wrong token logged in")
except qbittorrentapi.LoginFailed:
    pass

qbt = qbittorrentapi.Client(host=base, username=user, password=token, REQUESTS_ARGS={"timeout": 30})
qbt.auth_log_in()
seen["webapi"] = qbt.app.web_api_version
seen["version"] = qbt.app.version
check(seen["webapi"].startswith("2.11"), "webapi version")
prefs = qbt.app.preferences
check(isinstance(prefs["save_path"], str), "preferences.save_path")

qbt.torrents_create_category(name="tv-sonarr")
categories = qbt.torrents_categories()
check("tv-sonarr" in categories, "category listed")
seen["category_path"] = categories["tv-sonarr"]["savePath"]

check(qbt.torrents_add(urls=magnet, category="tv-sonarr", tags="ferry,test") == "Ok.", "add")

deadline = time.time() + 120
states = []
torrent = None
while time.time() < deadline:
    listed = qbt.torrents_info(category="tv-sonarr")
    mine = [t for t in listed if t["hash"] == info_hash]
    if mine:
        torrent = mine[0]
        if not states or states[-1] != torrent["state"]:
            states.append(torrent["state"])
        if torrent["progress"] == 1 and torrent["state"] in ("stoppedUP", "pausedUP", "uploading", "stalledUP"):
            break
    time.sleep(0.2)
seen["states"] = states
check(torrent is not None, "torrent listed in its category")
check(torrent["progress"] == 1, "complete")
check(isinstance(torrent["size"], int) and isinstance(torrent["eta"], int), "integers")
check(torrent["category"] == "tv-sonarr", "category kept")
check(sorted(t.strip() for t in torrent["tags"].split(",")) == ["ferry", "test"], "tags")
content = torrent["content_path"]
seen["content_path"] = content
seen["save_path"] = torrent["save_path"]
check(content.startswith(seen["category_path"]), "content under the category's folder")
parent = os.path.dirname(content)
for rel, digest in expected.items():
    path = os.path.join(parent, rel)
    check(os.path.isfile(path), f"file {path}")
    check(sha256(path) == digest, f"sha256 of {rel}")

files = qbt.torrents_files(torrent_hash=info_hash)
check(len(files) == len(expected), "files listed")
props = qbt.torrents_properties(torrent_hash=info_hash)
check(props["save_path"] == torrent["save_path"], "properties.save_path")

qbt.torrents_set_share_limits(ratio_limit=1.5, seeding_time_limit=60, inactive_seeding_time_limit=-2, torrent_hashes=info_hash)
limited = qbt.torrents_info(torrent_hashes=info_hash)[0]
seen["ratio_limit"] = limited["ratio_limit"]
seen["seeding_time_limit"] = limited["seeding_time_limit"]
check(limited["ratio_limit"] == 1.5 and limited["seeding_time_limit"] == 60, "share limits")

try:
    qbt.torrents_properties(torrent_hash="0" * 40)
    check(False, "properties of an unknown hash answered")
except qbittorrentapi.NotFound404Error:
    pass

qbt.torrents_delete(delete_files=True, torrent_hashes=info_hash)
deadline = time.time() + 60
while time.time() < deadline:
    if not qbt.torrents_info(torrent_hashes=info_hash) and not os.path.exists(content):
        break
    time.sleep(0.2)
check(not qbt.torrents_info(torrent_hashes=info_hash), "deleted from the list")
check(not os.path.exists(content), "files deleted")
qbt.auth_log_out()
print(json.dumps({"ok": True, "seen": seen}))
