#!/usr/bin/env bash
# Requests and bytes per GiB of input on S3: word count over ~1 GiB of text and TeraSort of
# 10,737,664 records (1 GiB), each run by `quern run` with input, output and store on a local
# S3 API server (s3s-fs). Prints the job's STORE_* counters (the tasks' requests) and the
# process's total (tasks + coordinator: listing, commits, journal, lease, cleanup).
#
#   cargo build --release --workspace
#   cargo install s3s-fs --version 0.14.1 --features binary --locked
#   tests/bench/s3-requests.sh [MIB]       # input size, default 1024
set -euo pipefail
cd "$(dirname "$0")/../.."
mib=${1:-1024}
quern=${QUERN:-target/release/quern}
root=$(mktemp -d /tmp/quern-s3-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$root"' EXIT
mkdir -p "$root/bench/wc-in"
port=$((20000 + RANDOM % 20000))
s3s-fs --host 127.0.0.1 --port "$port" --access-key bench --secret-key bench-secret "$root" >/dev/null 2>&1 &
export AWS_ENDPOINT=http://127.0.0.1:$port AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
       AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
sleep 1

# s3s-fs serves the files under its root as objects: 8 files of the books repeated.
per_file=$((mib * 1024 * 1024 / 8))
for f in 0 1 2 3 4 5 6 7; do
  while [ "$(stat -c %s "$root/bench/wc-in/part-$f.txt" 2>/dev/null || echo 0)" -lt "$per_file" ]; do
    cat examples/data/* >> "$root/bench/wc-in/part-$f.txt"
  done
done
input_bytes=$(du -cb "$root/bench/wc-in" | tail -1 | cut -f1)

# One line of figures from `quern run`'s text summary on stderr.
report() {
  local name=$1 bytes=$2 log=$3
  local c
  c() { awk -v k="$1" '$1 == k { print $2 }' "$log"; }
  local all
  all=$(grep '^store requests (all)' "$log")
  echo "$name input_bytes=$bytes wall=$(grep '^wall time' "$log" | cut -d' ' -f3)" \
       "maps=$(awk '$1 == "maps" { print $2 }' "$log") reduces=$(awk '$1 == "reduces" { print $2 }' "$log")"
  echo "  tasks: GET $(c STORE_GET) PUT $(c STORE_PUT) LIST $(c STORE_LIST) DELETE $(c STORE_DELETE)" \
       "read $(c STORE_BYTES_READ) written $(c STORE_BYTES_WRITTEN) retries $(c STORE_RETRIES)"
  echo "  ${all}"
}

"$quern" run --job wordcount --input "s3://bench/wc-in/" --output s3://bench/wc-out \
  --store s3://bench/store-wc/ 2> "$root/wc.log" >/dev/null
report wordcount "$input_bytes" "$root/wc.log"

rows=$((mib * 10486))
"$quern" run --job teragen --param "rows=$rows" --maps 8 --output s3://bench/tera-in \
  --store s3://bench/store-gen/ 2> "$root/gen.log" >/dev/null
report teragen 0 "$root/gen.log"
"$quern" run --job terasort --input s3://bench/tera-in/ --output s3://bench/tera-out --reducers 8 \
  --store s3://bench/store-sort/ 2> "$root/sort.log" >/dev/null
report terasort "$((rows * 100))" "$root/sort.log"
