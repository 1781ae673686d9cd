#!/usr/bin/env bash
# Torrent creation: one file (1 GiB of random bytes by default) packaged by Ferry's packager and
# by mktorrent with the same piece length (Ferry's choice for the size: 1 MiB for 1 GiB), both
# using every core, alternately, RUNS times each, the file already in the page cache. Prints
# both medians and the ratio Ferry/mktorrent (target ≤ 1.0); librqbit's `create_torrent` is
# timed once for reference (it is what Ferry would use without its own packager). Also checks
# that Ferry and mktorrent produce the same info hash.
#
#   bench/package.sh                # SIZE_MIB=1024 RUNS=5
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-5}
command -v mktorrent >/dev/null || { echo "bench: mktorrent is missing (scripts/test-deps.sh installs it)" >&2; exit 1; }

echo "building (release)…" >&2
cargo build --release -q -p ferry-bench
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH="$target/release/ferry-bench"

W=$(mktemp -d /tmp/ferry-package.XXXXXX)
trap 'rm -rf "$W"' EXIT
FILE="$W/release.iso"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$FILE"
cat "$FILE" > /dev/null   # warm the page cache for both

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { echo "$1" | sed -E "s/.*$2=([^ ]+).*/\1/"; }
# A first, untimed run learns the piece length Ferry picks for this size.
piece=$(field "$("$BENCH" package --file "$FILE")" piece_length)
log2=$(python3 -c "print(($piece).bit_length()-1)")
ferry_t=(); mk_t=(); peak=0; ferry_hash=""
for i in $(seq 1 "$RUNS"); do
  out=$("$BENCH" package --file "$FILE" --piece-length "$piece" --out "$W/ferry.torrent")
  t=$(field "$out" seconds); rss=$(field "$out" peak_rss_kib); ferry_hash=$(field "$out" info_hash)
  ferry_t+=("$t"); [ "$rss" -gt "$peak" ] && peak=$rss
  rm -f "$W/mk.torrent"
  t0=$(now); mktorrent -p -l "$log2" -a http://127.0.0.1:6969/announce -o "$W/mk.torrent" "$FILE" >/dev/null; t1=$(now)
  m=$(calc "$t1 - $t0"); mk_t+=("$m")
  printf 'run %d: ferry %.2fs (peak RSS %d MiB), mktorrent %.2fs\n' "$i" "$t" $((rss / 1024)) "$m"
done
lib=$("$BENCH" package --file "$FILE" --piece-length "$piece" --engine librqbit)
mk_hash=$(python3 - "$W/mk.torrent" <<'PY'
import hashlib, sys
data = open(sys.argv[1], 'rb').read()
# Find the info dictionary's bytes: bdecode just enough to know where it ends.
def end(b, i):
    c = b[i:i+1]
    if c == b'i': return b.index(b'e', i) + 1
    if c in (b'l', b'd'):
        i += 1
        while b[i:i+1] != b'e': i = end(b, i)
        return i + 1
    colon = b.index(b':', i); return colon + 1 + int(b[i:colon])
start = data.index(b'4:info') + 6
print(hashlib.sha1(data[start:end(data, start)]).hexdigest())
PY
)
fm=$(printf '%s\n' "${ferry_t[@]}" | median); mm=$(printf '%s\n' "${mk_t[@]}" | median)
printf '\n%d MiB, piece length %d KiB, %d runs each, %d cores\n' "$SIZE_MIB" $((piece / 1024)) "$RUNS" "$(nproc)"
printf 'ferry     median %.2fs (%.0f MiB/s)\n' "$fm" "$(calc "$SIZE_MIB / $fm")"
printf 'mktorrent median %.2fs (%.0f MiB/s)\n' "$mm" "$(calc "$SIZE_MIB / $mm")"
printf 'librqbit create_torrent (reference, 1 run) %.2fs\n' "$(field "$lib" seconds)"
printf 'ratio ferry/mktorrent: %.2f (target <= 1.00)\n' "$(calc "$fm / $mm")"
printf 'CPU: %s (SHA extensions: %s)\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  "$(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
printf "ferry's SHA-1: %s, chosen by measuring at start (single-thread MiB/s: %s)\n" \
  "$(field "$out" sha1)" "$(field "$out" sha1_mib_s)"
if command -v openssl >/dev/null; then
  printf 'openssl speed -evp sha1 (1 MiB blocks, one thread): %s\n' \
    "$(openssl speed -evp sha1 -seconds 1 -bytes 1048576 2>/dev/null | awk '/^sha1/ {printf "%.0f MiB/s", $2 * 1000 / 1048576}')"
fi
printf 'ferry peak RSS: %d MiB\n' $((peak / 1024))
if [ "$ferry_hash" = "$mk_hash" ]; then echo "same info hash as mktorrent: $ferry_hash"
else echo "info hash differs: ferry $ferry_hash, mktorrent $mk_hash"; fi
