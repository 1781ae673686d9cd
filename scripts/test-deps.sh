#!/usr/bin/env bash
# Installs and starts what Ferry's tests talk to: BitTorrent peers (opentracker, aria2c,
# mktorrent, qbittorrent-nox), proxies (microsocks, tinyproxy), PostgreSQL and Redis. Idempotent; safe to run before every test run.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo" || { echo "test-deps: run as root or install sudo" >&2; exit 1; }
fi

need=()
for pair in opentracker:opentracker aria2c:aria2 mktorrent:mktorrent curl:curl \
            qbittorrent-nox:qbittorrent-nox microsocks:microsocks tinyproxy:tinyproxy \
            psql:postgresql redis-server:redis-server unshare:util-linux nsenter:util-linux \
            ip:iproute2; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  command -v "$cmd" >/dev/null || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# PostgreSQL on 127.0.0.1:5432 with trust auth for local tests.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -n "$version" ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  # A fresh cluster asks for a password over TCP; the tests use trust auth like CI.
  if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc 'select 1' >/dev/null 2>&1; then
    hba=$($SUDO -u postgres psql -Atc 'show hba_file' 2>/dev/null || runuser -u postgres -- psql -Atc 'show hba_file')
    echo "test-deps: enabling trust auth for 127.0.0.1 in $hba"
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main reload
  fi
  psql "postgres://postgres@127.0.0.1:5432/postgres" -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || psql "postgres://postgres@127.0.0.1:5432/postgres" -c "create database test" >/dev/null
else
  echo "test-deps: PostgreSQL is not running on 127.0.0.1:5432" >&2
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
TOOLS="$HOME/.cache/ferry-tools"
if [ ! -x "$TOOLS/bin/s3s-fs" ] && ! command -v s3s-fs >/dev/null; then
  echo "test-deps: building s3s-fs 0.14.1 (once, about 3 minutes)"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS" -q
fi

# The aws CLI reads back what Ferry delivers.
if ! command -v aws >/dev/null; then
  echo "test-deps: installing the aws CLI"
  python3 -m pip install -q awscli || $SUDO python3 -m pip install -q awscli
fi

# schemathesis checks the OpenAPI document against the running API (cli/tests/openapi.rs).
SCHEMATHESIS=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS"; then
  echo "test-deps: installing schemathesis $SCHEMATHESIS"
  python3 -m pip install -q "schemathesis==$SCHEMATHESIS" || $SUDO python3 -m pip install -q "schemathesis==$SCHEMATHESIS"
fi

echo "test-deps: ready (peers: $(command -v opentracker aria2c mktorrent qbittorrent-nox microsocks tinyproxy | xargs -n1 basename | tr '\n' ' '))"
