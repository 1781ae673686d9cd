#!/usr/bin/env bash
# The dependency rule of ARCHITECTURE.md §1, checked: the domain does no I/O and the
# application knows no database, queue, HTTP, cloud, BitTorrent or token/password crypto library.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(sea-orm|sea-query|sqlx|redis|reqwest|hyper|aws-|google-|poem|librqbit|tracing-loki|opentelemetry|jsonwebtoken|openidconnect|argon2)'
status=0
for crate in ferry-domain ferry-application; do
  deps=$(cargo tree -p "$crate" -e normal --prefix none --offline 2>/dev/null || cargo tree -p "$crate" -e normal --prefix none)
  bad=$(echo "$deps" | awk '{print $1}' | grep -E "$forbidden" | sort -u || true)
  if [ -n "$bad" ]; then
    echo "check-layers: $crate depends on: $bad" >&2
    status=1
  fi
  features=$(cargo tree -p "$crate" -e normal,features --prefix none 2>/dev/null | grep -E '^tokio feature "(net|fs|process|signal|io-std|rt-multi-thread)"' | sort -u || true)
  if [ -n "$features" ]; then
    echo "check-layers: $crate pulls tokio's I/O drivers: $features" >&2
    status=1
  fi
done
if cargo tree -p ferry-domain -e normal --prefix none | awk '{print $1}' | grep -qx tokio; then
  echo "check-layers: ferry-domain depends on tokio" >&2
  status=1
fi
[ $status -eq 0 ] && echo "check-layers: domain and application are clean"
exit $status
