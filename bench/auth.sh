#!/usr/bin/env bash
# What authentication costs: requests/s of `GET /api/v1/jobs` authenticated by a session cookie,
# a personal token (ferry_pat_…), an identity provider's JWT access token and the bootstrap
# token, against the open `GET /api/v1/health` (and `/version`), on one release `ferry serve`
# with a real OpenID Connect provider (npm oidc-provider, testkit/oidc), in the same run.
# Target: auth costs under 10 % of throughput (session, PAT and JWT each ≥ 0.9× the bootstrap
# token, whose check is a constant-time compare, and compared with /health).
#
#   bench/auth.sh                       # SECONDS_PER_RUN=5 CONNECTIONS=16 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "bench: node is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }
[ -d testkit/oidc/node_modules/oidc-provider ] || npm ci --prefix testkit/oidc --silent
echo "building (release)…" >&2
cargo build --release -q -p ferry-bench -p ferry
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
CI=true "$target/release/ferry-bench" auth --ferry "$target/release/ferry" \
  --seconds "${SECONDS_PER_RUN:-5}" --connections "${CONNECTIONS:-16}" --rounds "${ROUNDS:-3}"
