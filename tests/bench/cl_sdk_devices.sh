#!/bin/sh
# SEMA self-expansion with real processes (docs/simulator.md, "Continual learning on devices"): a local
# fedcl-server whose pool serves base experts at blocks 2 and 3, and DEVICES C example devices
# (fedcl-device-loop over libfedcl_client.so, method sema, plaintext on 127.0.0.1), each
# streaming its own slice of Fashion-MNIST. The even-numbered devices see their data's contrast
# invert at their own batch (170, 190, 210, ...); the odd ones never see a shift. Prints what
# each device grew and proposed, its prequential accuracy (every batch scored before it is
# learned), and the server's pool at the end: modules, merges and holders.
#
#   tests/bench/cl_sdk_devices.sh [BUILD_DIR] [BACKBONE]      (BACKBONE defaults to out/vit.ckpt)
set -eu
build=${1:-build}
backbone=${2:-out/vit.ckpt}
devices=${DEVICES:-8}
batches=${BATCHES:-320}
data=/usr/share/datasets/fashion-mnist
out=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "outputs in $out"
trap 'kill $server_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
server_pid=

cat > "$out/server.textproto" <<CONFIG
state_dir: "$out/state"
backbone_checkpoint: "$backbone"
num_classes: 10
module { name: "head" role: "head" }
pool { expandable_blocks: 2 expandable_blocks: 3 base_experts: true round_window: 20 }
recipe { local_steps: 10 batch_size: 32 learning_rate: 0.05 }
round { duration_ms: 1500 min_participants: 1 }
journal { sync: "normal" }
CONFIG
port=$((20000 + $$ % 20000))
"$build/bin/fedcl-server" --config="$out/server.textproto" --listen="127.0.0.1:$port" \
  2> "$out/server.log" &
server_pid=$!
sleep 1

start=$(date +%s)
i=0
device_pids=
while [ $i -lt "$devices" ]; do
  shift_flag=
  [ $((i % 2)) -eq 0 ] && shift_flag="--invert_after=$((170 + 10 * i))"
  "$build/bin/fedcl-device-loop" --method=sema $shift_flag \
    --server="127.0.0.1:$port" --client_id=$i --storage_dir="$out/device-$i" \
    --backbone="$backbone" \
    --images="$data/train-images-idx3-ubyte.gz" --labels="$data/train-labels-idx1-ubyte.gz" \
    --offset=$((i * 6000)) --samples=6000 --batch=32 --sync_every=10 \
    --max_batches="$batches" --max_seconds=600 > "$out/summary-$i" 2> "$out/device-$i.log" &
  device_pids="$device_pids $!"
  i=$((i + 1))
done
for pid in $device_pids; do
  wait "$pid" || echo "a device exited with status $?"
done
echo "SEMA devices against fedcl-server ($devices devices, $batches batches of 32 each," \
  "$(($(date +%s) - start)) s):"
i=0
while [ $i -lt "$devices" ]; do
  shift_at=never; [ $((i % 2)) -eq 0 ] && shift_at="batch $((170 + 10 * i))"
  printf '  device %d (inversion at %s): grew %d, founded %d, joined %d; %s\n' $i "$shift_at" \
    "$(grep -c 'grew adapter' "$out/device-$i.log" || true)" \
    "$(grep -c 'founded the pool' "$out/device-$i.log" || true)" \
    "$(grep -c 'joined' "$out/device-$i.log" || true)" \
    "$(tail -1 "$out/summary-$i" | cut -d' ' -f1-3)"
  i=$((i + 1))
done
/usr/bin/python3 "$(dirname "$0")/pool_summary.py" "$out/state/metrics.jsonl"
kill $server_pid
wait $server_pid 2>/dev/null || true
server_pid=
