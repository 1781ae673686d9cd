#!/usr/bin/env bash
# Upload throughput: one file (1 GiB by default) to a local S3-compatible server (s3s-fs,
# which verifies signatures) by Ferry's S3 adapter and by `aws s3 cp`, alternately, RUNS
# times each. Prints both medians, the ratio Ferry/aws (target ≤ 1.0) and Ferry's peak RSS
# (target < 256 MiB whatever the size).
#
#   bench/upload.sh                 # SIZE_MIB=1024 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
S3S=${FERRY_S3S_FS:-$HOME/.cache/ferry-tools/bin/s3s-fs}
[ -x "$S3S" ] || S3S=$(command -v s3s-fs || true)
[ -n "$S3S" ] || { echo "bench: s3s-fs is missing (scripts/test-deps.sh builds it)" >&2; exit 1; }
command -v aws >/dev/null || { echo "bench: the aws CLI is missing" >&2; exit 1; }

echo "building (release)…" >&2
cargo build --release -q -p ferry-bench
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH="$target/release/ferry-bench"

W=$(mktemp -d /tmp/ferry-upload.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/s3"
"$S3S" --host 127.0.0.1 --port "$port" --access-key AKIDBENCH --secret-key benchsecret "$W/s3" > "$W/s3s.log" 2>&1 & pid=$!
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=benchsecret AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$port" >/dev/null && break; sleep 0.1; done
aws --endpoint-url "http://127.0.0.1:$port" s3 mb s3://bench >/dev/null
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/file.bin"

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ferry_t=(); aws_t=(); peak=0
for i in $(seq 1 "$RUNS"); do
  out=$("$BENCH" upload --endpoint "http://127.0.0.1:$port" --bucket bench --access-key AKIDBENCH ${FERRY_ARGS:-} \
        --secret-key benchsecret --file "$W/file.bin")
  t=$(echo "$out" | sed -E 's/.*seconds=([0-9.]+).*/\1/'); rss=$(echo "$out" | sed -E 's/.*peak_rss_kib=([0-9]+).*/\1/')
  ferry_t+=("$t"); [ "$rss" -gt "$peak" ] && peak=$rss
  t0=$(now); aws --endpoint-url "http://127.0.0.1:$port" s3 cp --only-show-errors "$W/file.bin" s3://bench/aws/upload.bin; t1=$(now)
  a=$(calc "$t1 - $t0"); aws_t+=("$a")
  printf 'run %d: ferry %.2fs (peak RSS %d MiB), aws s3 cp %.2fs\n' "$i" "$t" $((rss / 1024)) "$a"
done
fm=$(printf '%s\n' "${ferry_t[@]}" | median); am=$(printf '%s\n' "${aws_t[@]}" | median)
printf '\n%d MiB to s3s-fs on loopback, %d runs each\n' "$SIZE_MIB" "$RUNS"
printf 'ferry  median %.2fs (%.0f MiB/s)\n' "$fm" "$(calc "$SIZE_MIB / $fm")"
printf 'aws    median %.2fs (%.0f MiB/s)\n' "$am" "$(calc "$SIZE_MIB / $am")"
printf 'ratio ferry/aws: %.2f (target <= 1.00)\n' "$(calc "$fm / $am")"
printf 'ferry peak RSS: %d MiB (target < 256 MiB)\n' $((peak / 1024))
