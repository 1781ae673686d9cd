#!/usr/bin/env bash
# Installs and starts what Ferry's tests talk to: BitTorrent peers (opentracker, aria2c,
# mktorrent, qbittorrent-nox), proxies (microsocks, tinyproxy), PostgreSQL and Redis, an
# OpenID Connect provider (node + npm oidc-provider), a browser (chromium, Playwright for
# Python, axe-core) and ffmpeg (with ffprobe) for the web page's and the streaming tests.
# Idempotent; safe to run before every test run.
# It changes no server's configuration on a developer's machine unless asked (see PostgreSQL).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo" || { echo "test-deps: run as root or install sudo" >&2; exit 1; }
fi

need=()
for pair in opentracker:opentracker aria2c:aria2 mktorrent:mktorrent curl:curl \
            qbittorrent-nox:qbittorrent-nox microsocks:microsocks tinyproxy:tinyproxy \
            psql:postgresql redis-server:redis-server unshare:util-linux nsenter:util-linux \
            ip:iproute2 node:nodejs npm:npm chromium:chromium ffmpeg:ffmpeg ffprobe:ffmpeg \
            prometheus:prometheus promtool:prometheus sqlite3:sqlite3 \
            unzip:unzip bsdtar:libarchive-tools; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# PostgreSQL: the tests create and drop databases of their own through
# FERRY_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test, the local server).
# When the tests cannot log in, this script changes the server's authentication only in CI
# (CI=true) or when asked (FERRY_TEST_SETUP_POSTGRES=1); otherwise it says what to do, and the
# PostgreSQL tests fail with the same words (they read them from $PG_HELP).
TOOLS="$HOME/.cache/ferry-tools"
PG_HELP="$TOOLS/postgres-setup-needed"
mkdir -p "$TOOLS"
rm -f "$PG_HELP"
pg_help() {
  { echo "PostgreSQL for the tests: $1"; shift; printf '%s\n' "$@"; } | tee "$PG_HELP" >&2
}
if [ -n "${FERRY_TEST_POSTGRES_URL:-}" ]; then
  # The developer's own server and role: used as given, nothing is changed.
  if ! err=$(psql "$FERRY_TEST_POSTGRES_URL" -Atc 'select 1' 2>&1 >/dev/null); then
    pg_help "cannot connect to FERRY_TEST_POSTGRES_URL ($err)." \
      "Fix the URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE, a role that may CREATE DATABASE)," \
      "or unset it to use the local server on 127.0.0.1:5432."
  fi
else
  local_url="postgres://postgres@127.0.0.1:5432/postgres"
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -n "$version" ]; then
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
  fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_help "nothing answers on 127.0.0.1:5432." \
      "Start your PostgreSQL server, or set FERRY_TEST_POSTGRES_URL to one you have."
  elif ! psql "$local_url" -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh cluster asks for a password over TCP; the tests log in as postgres without one.
    hba=$($SUDO -u postgres psql -Atc 'show hba_file' 2>/dev/null || runuser -u postgres -- psql -Atc 'show hba_file' 2>/dev/null || echo "pg_hba.conf")
    if [ "${CI:-}" = "true" ] || [ "${FERRY_TEST_SETUP_POSTGRES:-}" = "1" ]; then
      echo "test-deps: setting trust authentication for host connections from 127.0.0.1/32 in $hba, and reloading PostgreSQL"
      $SUDO sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main reload
      psql "$local_url" -Atc 'select 1' >/dev/null 2>&1 \
        || pg_help "still cannot log in to $local_url after setting trust in $hba."
    else
      pg_help "cannot log in to $local_url without a password." \
        "Do one of these, once:" \
        "  - point the tests at a database of yours (a role that may CREATE DATABASE; the tests" \
        "    create and drop databases named ferry_*):" \
        "      export FERRY_TEST_POSTGRES_URL=postgres://USER:PASSWORD@127.0.0.1:5432/postgres" \
        "  - or let scripts/test-deps.sh allow local connections without a password: it sets" \
        "    'trust' for 'host all all 127.0.0.1/32' in $hba (with sudo) and reloads PostgreSQL:" \
        "      FERRY_TEST_SETUP_POSTGRES=1 scripts/test-deps.sh" \
        "Until then the PostgreSQL tests fail with this message."
    fi
  fi
  if [ ! -e "$PG_HELP" ]; then
    psql "$local_url" -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
      || psql "$local_url" -c "create database test" >/dev/null
  fi
fi

# Redis on 127.0.0.1:6379, nothing kept on disk.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ferry-tests.log
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
# An S3-compatible server that checks signatures (s3s-fs; 0.14.1 is the last for Rust 1.95),
# built once into ~/.cache/ferry-tools.
if [ ! -x "$TOOLS/bin/s3s-fs" ] && ! command -v s3s-fs >/dev/null; then
  echo "test-deps: building s3s-fs 0.14.1 (once, about 3 minutes)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS" -q
fi

# The aws CLI reads back what Ferry delivers.
if ! command -v aws >/dev/null; then
  echo "test-deps: installing the aws CLI"
  python3 -m pip install -q awscli || $SUDO python3 -m pip install -q awscli
fi

# A second S3 implementation (moto, which answers some calls unlike S3) for the storage
# contract and an end-to-end delivery.
if ! command -v moto_server >/dev/null; then
  echo "test-deps: installing moto (an S3 emulator)"
  python3 -m pip install -q 'moto[server]' || $SUDO python3 -m pip install -q 'moto[server]'
fi

# schemathesis checks the OpenAPI document against the running API (cli/tests/openapi.rs).
SCHEMATHESIS=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS"; then
  echo "test-deps: installing schemathesis $SCHEMATHESIS"
  python3 -m pip install -q "schemathesis==$SCHEMATHESIS" || $SUDO python3 -m pip install -q "schemathesis==$SCHEMATHESIS"
fi

# The qBittorrent-compatible API is driven by the Python client scripts use (cli/tests/qbittorrent.rs).
QBITTORRENT_API=2026.10.1
if ! python3 -c "import sys, importlib.metadata as m; sys.exit(m.version('qbittorrent-api') != '$QBITTORRENT_API')" 2>/dev/null; then
  echo "test-deps: installing qbittorrent-api $QBITTORRENT_API"
  python3 -m pip install -q "qbittorrent-api==$QBITTORRENT_API" || $SUDO python3 -m pip install -q "qbittorrent-api==$QBITTORRENT_API"
fi

# The browser tests (cli/tests/web.rs) drive Debian's chromium with Playwright for Python;
# Playwright's own browser download is never used.
PLAYWRIGHT=1.56.0
if ! python3 -c "import playwright, sys; from playwright._repo_version import version; sys.exit(version != '$PLAYWRIGHT')" 2>/dev/null; then
  echo "test-deps: installing playwright $PLAYWRIGHT (PyPI; it drives the system chromium)"
  python3 -m pip install -q "playwright==$PLAYWRIGHT" || $SUDO python3 -m pip install -q "playwright==$PLAYWRIGHT"
fi

# axe-core, which the browser tests inject to check each page's accessibility.
WEB_DIR="$(cd "$(dirname "$0")/.." && pwd)/cli/tests/web"
web_sum=$(sha256sum "$WEB_DIR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$WEB_DIR/node_modules/.ferry-lock-sha256" 2>/dev/null)" != "$web_sum" ]; then
  echo "test-deps: installing axe-core for the browser tests (npm ci in cli/tests/web)"
  npm ci --prefix "$WEB_DIR" --no-audit --no-fund --loglevel=error
  echo "$web_sum" > "$WEB_DIR/node_modules/.ferry-lock-sha256"
fi

# The OpenID Connect provider of the identity tests (testkit/src/oidc.rs): npm oidc-provider
# from testkit/oidc/package-lock.json into testkit/oidc/node_modules (git-ignored), again only
# when the lock file changed. It needs node >= 20.19.
OIDC_DIR="$(cd "$(dirname "$0")/.." && pwd)/testkit/oidc"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || echo "test-deps: node $(node --version) is older than 20.19; oidc-provider 9 needs 20.19 or later" >&2
lock_sum=$(sha256sum "$OIDC_DIR/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$OIDC_DIR/node_modules/.ferry-lock-sha256" 2>/dev/null)" != "$lock_sum" ]; then
  echo "test-deps: installing the test OpenID Connect provider (npm ci in testkit/oidc)"
  npm ci --prefix "$OIDC_DIR" --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > "$OIDC_DIR/node_modules/.ferry-lock-sha256"
fi

echo "test-deps: ready (peers: $(command -v opentracker aria2c mktorrent qbittorrent-nox microsocks tinyproxy chromium | xargs -n1 basename | tr '\n' ' '))"
