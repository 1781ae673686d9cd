#!/usr/bin/env bash
# Restore drill: proves that a backup of Ferry, taken while it serves, restores to an
# installation that serves the same files (docs/operations.md, "Back up and restore").
#
#   scripts/restore-drill.sh             # PostgreSQL (as docker-compose.yml runs Ferry)
#   scripts/restore-drill.sh --sqlite    # SQLite (ferry serve's default)
#
# What it does, all on loopback, in a folder of its own:
#  1. starts `ferry serve` on a fresh database, fetches two files from a local web server as
#     URL jobs, makes a personal token and a signed file link, and notes every job, file
#     and SHA-256;
#  2. backs it up while it runs, as docs/operations.md says: the database first (pg_dump, or
#     SQLite's online .backup), then the storage folder, and the secret key;
#  3. destroys the original (stops it, drops its database, deletes its folder);
#  4. restores the backup into a new database and folder and starts `ferry serve` on it
#     (the migrations run at start);
#  5. checks that the restored Ferry lists the same jobs with the same files, serves every
#     file with the same bytes (SHA-256), accepts the personal token made before the backup,
#     and still honours the signed link made before it (same secret key).
# It prints "restore drill passed" and exits 0, or says what differed and exits 1.
#
# Settings (environment):
#   FERRY_BIN              the ferry binary (default: `ferry` on PATH, else target/release or
#                          target/debug of this checkout, built if missing)
#   FERRY_DRILL_POSTGRES   a PostgreSQL server and role that may CREATE DATABASE
#                          (default postgres://postgres@127.0.0.1:5432/postgres); the drill
#                          creates and drops databases named ferry_drill_*
#   FERRY_DRILL_KEEP=1     keep the drill's folder (logs, backup) and print where it is
set -euo pipefail

MODE=postgres
case "${1:-}" in
  --sqlite) MODE=sqlite ;;
  --postgres | "") ;;
  *) echo "usage: $0 [--postgres|--sqlite]" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_ADMIN="${FERRY_DRILL_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferry-restore-drill.XXXXXX")"
PIDS=()
DATABASES=()

say() { echo "restore-drill: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

cleanup() {
  local pid db
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for db in "${DATABASES[@]}"; do
    psql "$PG_ADMIN" -qAtc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  done
  if [ -n "${FERRY_DRILL_KEEP:-}" ]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'say "FAILED: line $LINENO: $BASH_COMMAND (exit $?)"' ERR

need() { command -v "$1" >/dev/null || fail "$1 is not installed"; }
need curl
need python3
need sha256sum
if [ "$MODE" = postgres ]; then
  need psql; need pg_dump; need pg_restore
  psql "$PG_ADMIN" -qAtc 'select 1' >/dev/null 2>&1 \
    || fail "cannot reach PostgreSQL at $PG_ADMIN (set FERRY_DRILL_POSTGRES)"
else
  need sqlite3
fi

# The ferry binary.
FERRY="${FERRY_BIN:-}"
if [ -z "$FERRY" ]; then
  FERRY="$(command -v ferry || true)"
fi
if [ -z "$FERRY" ]; then
  TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
  for candidate in "$TARGET/release/ferry" "$TARGET/debug/ferry"; do
    [ -x "$candidate" ] && FERRY="$candidate" && break
  done
fi
if [ -z "$FERRY" ]; then
  say "building ferry"
  (cd "$ROOT" && cargo build -q --bin ferry)
  FERRY="${CARGO_TARGET_DIR:-$ROOT/target}/debug/ferry"
fi
[ -x "$FERRY" ] || fail "no ferry binary at $FERRY"

# JSON from stdin: the Python expression $1 over `d`.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# A database URL on the same server as PG_ADMIN, for database $1.
db_url() { python3 -c "import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path='/' + sys.argv[2])))" "$PG_ADMIN" "$1"; }

# Creates a database for $1 (dropped at exit); sets DB_URL.
new_database() {
  local name="ferry_drill_$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')_$1"
  psql "$PG_ADMIN" -qAtc "create database $name" >/dev/null
  DATABASES+=("$name")
  DB_URL="$(db_url "$name")"
}

# Starts `ferry serve` on data folder $1 (and database URL $2 if not SQLite); sets BASE,
# TOKEN and FERRY_PID.
start_ferry() {
  local dir="$1" url="${2:-}" log="$1.log"
  local env=(PATH="$PATH" HOME="$HOME" FERRY_LOG__FORMAT=json FERRY_TORRENT__LISTEN=off
             FERRY_TORRENT__DHT=false FERRY_FETCH__ALLOW='["127.0.0.1/32"]'
             RUST_LOG=warn,ferry=info)
  [ -n "$url" ] && env+=(FERRY_DATABASE_URL="$url")
  env -i "${env[@]}" "$FERRY" serve --listen 127.0.0.1:0 --data-dir "$dir" >"$log" 2>&1 &
  FERRY_PID=$!
  PIDS+=("$FERRY_PID")
  local port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.* is ready on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$FERRY_PID" 2>/dev/null || { cat "$log" >&2; fail "ferry serve exited"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$log" >&2; fail "ferry serve did not get ready in 30 s"; }
  BASE="http://127.0.0.1:$port"
  TOKEN="$(cat "$dir/api-token")"
}

stop_ferry() {
  kill -TERM "$FERRY_PID"
  wait "$FERRY_PID" || fail "ferry serve did not stop cleanly"
}

api() { curl -fsS -H "Authorization: Bearer ${2:-$TOKEN}" "$BASE/api/v1$1"; }

# The SHA-256 of what the API serves for file $2 of job $1.
served_sha() { api "/jobs/$1/files/$2" | sha256sum | cut -d' ' -f1; }

# -- 1. A Ferry with jobs ---------------------------------------------------------------------
mkdir -p "$WORK/origin"
head -c $((1024 * 1024)) /dev/urandom >"$WORK/origin/one.bin"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$WORK/origin/two.bin"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$WORK/origin" >"$WORK/origin.log" 2>&1 &
PIDS+=("$!")
ORIGIN=""
for _ in $(seq 1 300); do
  ORIGIN_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/origin.log" | head -n1)
  [ -n "$ORIGIN_PORT" ] && ORIGIN="http://127.0.0.1:$ORIGIN_PORT" && break
  sleep 0.1
done
[ -n "$ORIGIN" ] || fail "the local web server did not start"

SOURCE_URL=""
if [ "$MODE" = postgres ]; then
  new_database source
  SOURCE_URL="$DB_URL"
fi
start_ferry "$WORK/source" "$SOURCE_URL"
say "source: ferry serve ($MODE) on $BASE"

JOBS=()
for name in one.bin two.bin; do
  id=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
         -d "{\"source\": {\"url\": \"$ORIGIN/$name\"}}" "$BASE/api/v1/jobs" | json 'd["id"]')
  JOBS+=("$id")
done
for id in "${JOBS[@]}"; do
  status=""
  for _ in $(seq 1 600); do
    status=$(api "/jobs/$id" | json 'd["status"]')
    [ "$status" = completed ] && break
    [ "$status" = failed ] && fail "job $id failed: $(api "/jobs/$id")"
    sleep 0.1
  done
  [ "$status" = completed ] || fail "job $id stayed $status"
done

PAT=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d '{"name": "restore drill", "scopes": ["read"]}' "$BASE/api/v1/me/tokens" | json 'd["token"]')
LINK_PATH=$(api "/jobs/${JOBS[0]}/files/0/link" | json 'd["url"].split("/api/v1", 1)[1]')

# What the restored Ferry must show: jobs (id, status) and files (job, index, path, sha256).
inventory() {
  local out="$1" id
  api "/jobs?limit=100" "${2:-}" | json '"\n".join(sorted(j["id"] + " " + j["status"] for j in d["items"]))' >"$out"
  for id in "${JOBS[@]}"; do
    api "/jobs/$id/files" "${2:-}" \
      | json '"\n".join("%s %s %s" % (f["index"], f["path"], f["sha256"]) for f in d)' \
      | sed "s/^/$id /" >>"$out"
  done
}
inventory "$WORK/before.txt"
before_sha=()
for id in "${JOBS[@]}"; do before_sha+=("$(served_sha "$id" 0)"); done
[ "${before_sha[0]}" = "$(sha256sum <"$WORK/origin/one.bin" | cut -d' ' -f1)" ] || fail "the source served other bytes"
[ "${before_sha[1]}" = "$(sha256sum <"$WORK/origin/two.bin" | cut -d' ' -f1)" ] || fail "the source served other bytes"
say "source holds ${#JOBS[@]} completed jobs; a personal token and a signed link made"

# -- 2. Back up while it serves: database first, then storage, then the key -------------------
BACKUP="$WORK/backup"
mkdir -p "$BACKUP"
if [ "$MODE" = postgres ]; then
  pg_dump --format=custom --no-owner --file="$BACKUP/ferry.dump" "$SOURCE_URL"
else
  sqlite3 "$WORK/source/ferry.db" ".backup '$BACKUP/ferry.db'"
fi
tar -C "$WORK/source" -cf "$BACKUP/storage.tar" storage
cp "$WORK/source/secret-key" "$WORK/source/api-token" "$BACKUP/"
say "backup: $(du -sh "$BACKUP" | cut -f1) ($(ls "$BACKUP" | tr '\n' ' '))"

# -- 3. The original is lost -----------------------------------------------------------------
stop_ferry
if [ "$MODE" = postgres ]; then
  psql "$PG_ADMIN" -qAtc "drop database $(basename "$SOURCE_URL") with (force)"
fi
rm -rf "$WORK/source"

# -- 4. Restore into a new database and folder ------------------------------------------------
RESTORED="$WORK/restored"
mkdir -p "$RESTORED"
RESTORED_URL=""
if [ "$MODE" = postgres ]; then
  new_database restored
  RESTORED_URL="$DB_URL"
  pg_restore --no-owner --exit-on-error --dbname="$RESTORED_URL" "$BACKUP/ferry.dump"
else
  cp "$BACKUP/ferry.db" "$RESTORED/ferry.db"
fi
tar -C "$RESTORED" -xf "$BACKUP/storage.tar"
cp "$BACKUP/secret-key" "$BACKUP/api-token" "$RESTORED/"
start_ferry "$RESTORED" "$RESTORED_URL"
say "restored: ferry serve on $BASE"

# -- 5. The same jobs, files and bytes; the token and the link still work ---------------------
inventory "$WORK/after.txt"
diff -u "$WORK/before.txt" "$WORK/after.txt" >&2 || fail "the restored Ferry lists other jobs or files"
i=0
for id in "${JOBS[@]}"; do
  [ "$(served_sha "$id" 0)" = "${before_sha[$i]}" ] || fail "job $id's file has other bytes after the restore"
  i=$((i + 1))
done
inventory "$WORK/after-pat.txt" "$PAT"
cmp -s "$WORK/before.txt" "$WORK/after-pat.txt" || fail "the personal token made before the backup sees other jobs"
link_sha=$(curl -fsS "$BASE/api/v1$LINK_PATH" | sha256sum | cut -d' ' -f1)
[ "$link_sha" = "${before_sha[0]}" ] || fail "the signed link made before the backup does not serve the file"
files=$(grep -c '' "$WORK/after.txt")
echo "restore drill passed ($MODE): ${#JOBS[@]} jobs and their files restored, same bytes (SHA-256), the personal token and the signed link made before the backup still work ($((files - ${#JOBS[@]})) files checked)"
