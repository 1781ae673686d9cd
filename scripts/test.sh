#!/usr/bin/env bash
# The test command: prepares the services and peers, checks the layering and the vendored
# librqbit, runs every test.
# Extra arguments go to the test runner (e.g. `scripts/test.sh e2e_torrent`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
scripts/check-layers.sh
scripts/check-vendor.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
