#!/usr/bin/env bash
# A Quern cluster of separate hosts on one Linux machine, by hand: the coordinator and three
# workers each in its own network namespace (own address, temporary and working directory),
# sharing nothing but an S3 server (s3s-fs) on a bridge in the root namespace. Runs a word
# count of INPUT_DIR with input, output and store on s3://, prints the result (KEY<TAB>COUNT
# lines) on stdout, and tears everything down on exit.
#
#   sudo scripts/netns-cluster.sh INPUT_DIR [QUERN_BINARY]      # default target/release/quern
#   sudo scripts/netns-cluster.sh examples/data/ | sort -t$'\t' -k2,2nr | head
#
# Needs root, iproute2 and s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary
# --locked). Addresses: NET+1 (bridge, S3) to NET+5 in the /28 block NET of TEST-NET-1
# (RFC 5737), 192.0.2.192/28 by default; set NET=192.0.2.X (X a multiple of 16) if this
# machine uses any address of that block.
set -euo pipefail

input=${1:?usage: $0 INPUT_DIR [QUERN_BINARY]}
quern=$(realpath "${2:-target/release/quern}")
net=${NET:-192.0.2.192}
base=${net%.*} first=${net##*.}
gw=$base.$((first + 1)) coord=$base.$((first + 2))
tag=quern-$$ bridge=qb$$ work=$(mktemp -d)
hosts=(coord w0 w1 w2)
[[ $(id -u) == 0 ]] || { echo "run as root (network namespaces)" >&2; exit 1; }
for i in $(seq 0 15); do
    a=$base.$((first + i))
    if { ip -4 -o addr show; ip -4 route show; ip -4 neigh show; } | grep -qwF "$a"; then
        echo "$a is in use on this machine; pick another block with NET=" >&2; exit 1
    fi
done

cleanup() {
    for h in "${hosts[@]}"; do
        ip netns pids "$tag-$h" 2>/dev/null | xargs -r kill -9
        ip netns del "$tag-$h" 2>/dev/null || true
    done
    if [[ -n ${s3:-} ]]; then kill "$s3" 2>/dev/null || true; fi
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip link add "$bridge" type bridge
ip addr add "$gw/28" dev "$bridge"
ip link set "$bridge" up
for i in "${!hosts[@]}"; do
    ns=$tag-${hosts[i]} veth=qv$$-$i
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$bridge" up
    ip -n "$ns" addr add "$base.$((first + 2 + i))/28" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    mkdir -p "$work/${hosts[i]}/tmp"
done

# s3s-fs serves the files under its root: the bucket "quern" is a directory, so the input is
# put in place by copying it.
mkdir -p "$work/s3/quern/in"
cp -r "$input"/. "$work/s3/quern/in/"
s3s-fs --host "$gw" --port 9000 --access-key quern --secret-key quern-secret "$work/s3" >"$work/s3.log" 2>&1 &
s3=$!
aws=(AWS_ENDPOINT="http://$gw:9000" AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=quern
     AWS_SECRET_ACCESS_KEY=quern-secret AWS_REGION=us-east-1 AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false)

# Runs QUERN ARGS... inside host $1, with only the S3 settings, its own TMPDIR and directory.
on() {
    local h=$1; shift
    (cd "$work/$h" && ip netns exec "$tag-$h" env -i PATH="$PATH" TMPDIR="$work/$h/tmp" "${aws[@]}" "$quern" "$@")
}

on coord coordinator --listen "$coord:7070" --store s3://quern/store/ 2>"$work/coord.log" &
for _ in $(seq 60); do grep -q "coordinator listening" "$work/coord.log" && break; sleep 0.5; done
grep -q "coordinator listening" "$work/coord.log" || { cat "$work/coord.log" >&2; exit 1; }
for w in w0 w1 w2; do
    on "$w" worker --coordinator "http://$coord:7070" --host "$w" 2>"$work/$w.log" &
done

start=$(date +%s%N)
on coord submit --coordinator "http://$coord:7070" --job wordcount --input s3://quern/in/ \
    --output s3://quern/out --reducers 3 --wait >&2
echo "word count on 3 worker hosts: $((($(date +%s%N) - start) / 1000000)) ms" >&2
cat "$work/s3/quern/out/"part-*
