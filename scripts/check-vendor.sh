#!/usr/bin/env bash
# Checks that vendor/librqbit is upstream librqbit 9.1.0 as published on crates.io, less the
# folders and files Ferry does not ship, plus vendor/librqbit/ferry.patch — nothing else.
# The .crate comes from cargo's registry cache, or is fetched with cargo (checksum pinned below).
# `--update` rewrites ferry.patch from the folder instead (after a deliberate change to it).
set -euo pipefail
update=false
[ "${1:-}" = "--update" ] && update=true
cd "$(dirname "$0")/.."
root=$(pwd)

NAME=librqbit
VERSION=9.1.0
# The registry's checksum of librqbit-9.1.0.crate (as in any Cargo.lock that uses it).
SHA256=4e35a06e481e854f69141928d067406397b3ad7a47bfdc095bc31325f44f5d13
VENDOR=vendor/librqbit
# Published with the crate, not kept in vendor/: the web UI's sources and assets (the
# `webui` feature is off), and packaging metadata.
DROPPED=(webui resources .cargo_vcs_info.json .gitignore Cargo.lock Cargo.toml.orig)
# Ferry's own files in vendor/librqbit.
OURS=(FERRY-PATCH.md ferry.patch)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"

find_crate() { find "$cache" -maxdepth 2 -name "$NAME-$VERSION.crate" 2>/dev/null | head -n1; }
crate=$(find_crate)
if [ -z "$crate" ]; then
  # Let cargo download it: a throw-away package that depends on exactly this version. The
  # workspace's lock file keeps the rest of the graph at versions already cached.
  echo "check-vendor: fetching $NAME $VERSION with cargo"
  mkdir -p "$work/fetch/src"
  printf '[package]\nname = "ferry-vendor-check"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
    "$NAME" "$VERSION" > "$work/fetch/Cargo.toml"
  : > "$work/fetch/src/lib.rs"
  cp Cargo.lock "$work/fetch/Cargo.lock"
  host=$(rustc -vV | sed -n 's/^host: //p')
  (cd "$work/fetch" && cargo fetch -q --target "$host")
  crate=$(find_crate)
  [ -n "$crate" ] || { echo "check-vendor: cargo did not leave $NAME-$VERSION.crate in $cache" >&2; exit 1; }
fi
actual=$(sha256sum "$crate" | cut -d' ' -f1)
if [ "$actual" != "$SHA256" ]; then
  echo "check-vendor: $crate has SHA-256 $actual, expected $SHA256" >&2
  exit 1
fi

# Upstream, less what Ferry drops, plus the patch.
tar -xzf "$crate" -C "$work"
expected="$work/$NAME-$VERSION"
for d in "${DROPPED[@]}"; do rm -rf "${expected:?}/$d"; done
if $update; then
  mkdir -p "$work/a" "$work/b"
  cp -a "$expected/." "$work/a/"
  cp -a "$VENDOR/." "$work/b/"
  for f in "${OURS[@]}"; do rm -f "$work/b/$f"; done
  (cd "$work" && diff -ruN a b | grep -v '^diff -ruN' | sed -E 's/^(---|\+\+\+) ([ab]\/[^	]*)	.*/\1 \2/' > "$root/$VENDOR/ferry.patch") || true
  echo "check-vendor: wrote $VENDOR/ferry.patch ($(grep -c '^@@' "$VENDOR/ferry.patch") hunk(s))"
fi
if ! (cd "$expected" && patch -p1 --quiet --forward --no-backup-if-mismatch < "$root/$VENDOR/ferry.patch"); then
  echo "check-vendor: $VENDOR/ferry.patch does not apply to $NAME $VERSION" >&2
  exit 1
fi
for f in "${OURS[@]}"; do cp "$VENDOR/$f" "$expected/$f"; done

if ! diff -r "$expected" "$VENDOR" > "$work/diff"; then
  echo "check-vendor: $VENDOR differs from $NAME $VERSION + ferry.patch:" >&2
  sed 's|'"$work/"'|upstream/|g' "$work/diff" | head -n 100 >&2
  echo "check-vendor: put the change into $VENDOR/ferry.patch (and FERRY-PATCH.md), or undo it" >&2
  exit 1
fi
echo "check-vendor: $VENDOR is $NAME $VERSION from crates.io + ferry.patch ($(grep -c '^@@' "$VENDOR/ferry.patch") hunk(s))"
