#!/bin/sh
# The edge SDK's figures (docs/sdk.md, "Figures"):
#   1. stripped sizes of libfedcl_client.so, libfedcl_client.a and the C example;
#   2. peak RSS of C example devices (fedcl-device-loop, linked with the shared library) running
#      the pretrained small ViT with its adapter and head through a predict/learn/sync loop
#      against a local fedcl-server (plaintext, 127.0.0.1), with their prequential accuracy;
#   3. prediction latency per sample (p50/p99) and heap allocations per prediction call
#      (fedcl_sdk_latency).
#
#   tests/bench/sdk_bench.sh [BUILD_DIR] [BACKBONE]      (BACKBONE defaults to out/vit.ckpt)
set -eu
build=${1:-build}
backbone=${2:-out/vit.ckpt}
devices=${DEVICES:-4}
rounds=${ROUNDS:-5}
data=/usr/share/datasets/fashion-mnist
out=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "outputs in $out"
trap 'kill $server_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
server_pid=

size() { stat -c %s "$1"; }
strip -o "$out/lib.so" "$build"/client/sdk/libfedcl_client.so.*.*.*
strip -o "$out/example" "$build/bin/fedcl-device-loop"
echo "sizes (bytes, stripped):"
printf '  %-28s %10d\n' libfedcl_client.so "$(size "$out/lib.so")"
printf '  %-28s %10d\n' "libfedcl_client.a (unstripped)" "$(size "$build/client/sdk/libfedcl_client.a")"
printf '  %-28s %10d\n' fedcl-device-loop "$(size "$out/example")"

cat > "$out/server.textproto" <<EOF
state_dir: "$out/state"
backbone_checkpoint: "$backbone"
num_classes: 10
module { name: "adapter" role: "pet" pet { kind: "adapter" adapter_bottleneck: 8 site_prefixes: "blocks.2" site_prefixes: "blocks.3" } }
module { name: "head" role: "head" }
recipe { local_steps: 5 batch_size: 32 learning_rate: 0.05 }
round { duration_ms: 1500 min_participants: 1 }
journal { sync: "normal" }
EOF
port=$((20000 + $$ % 20000))
"$build/bin/fedcl-server" --config="$out/server.textproto" --listen="127.0.0.1:$port" \
  2> "$out/server.log" &
server_pid=$!
sleep 1

i=0
device_pids=
while [ $i -lt "$devices" ]; do
  /usr/bin/time -f "%M" -o "$out/rss-$i" "$build/bin/fedcl-device-loop" \
    --server="127.0.0.1:$port" --client_id=$i --storage_dir="$out/device-$i" \
    --backbone="$backbone" \
    --images="$data/train-images-idx3-ubyte.gz" --labels="$data/train-labels-idx1-ubyte.gz" \
    --offset=$((i * 2000)) --samples=2000 --batch=32 --sync_every=5 --rounds="$rounds" \
    --max_seconds=240 > "$out/summary-$i" 2> "$out/device-$i.log" &
  device_pids="$device_pids $!"
  i=$((i + 1))
done
for pid in $device_pids; do
  wait "$pid" || echo "a device exited with status $?"
done
echo "C example devices against fedcl-server ($devices devices, $rounds acknowledged rounds each):"
i=0
while [ $i -lt "$devices" ]; do
  printf '  device %d: peak RSS %6.1f MiB  %s\n' $i "$(awk "BEGIN { print $(cat "$out/rss-$i") / 1024 }")" \
    "$(tail -1 "$out/summary-$i")"
  i=$((i + 1))
done
kill $server_pid
wait $server_pid 2>/dev/null || true
server_pid=

"$build/bin/fedcl_sdk_latency" --backbone="$backbone" --storage_dir="$out/latency"
