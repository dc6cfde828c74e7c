#!/bin/sh
# A continual scenario with real processes (docs/simulator.md, "Continual learning on devices"): a local
# fedcl-server and one process per device of sim/scenarios/cl_domains.textproto (fedcl-sim
# --device: the edge SDK on the stream the in-process run gives that device), then the
# scenario's table from the devices' reports and the server's pool.
#
#   tests/bench/cl_sdk_scenario.sh [BUILD_DIR] [METHOD] [SCENARIO] [SEED]
#
# METHOD: sema (default), sema_replay, sequential_adapter, linear_head, lae, fedins, simple_cil
# or fed_simple_cil (the scenario's learner { fedins_pool_size } must stay at its default 8). The scenario's
# model.checkpoint is the backbone the server serves (fedcl-pretrain, see docs/pretraining.md).
set -eu
build=${1:-build}
method=${2:-sema}
scenario=${3:-sim/scenarios/cl_domains.textproto}
seed=${4:-1}
out=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "outputs in $out"
trap 'kill $server_pid $device_pids 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$out"' EXIT
server_pid=
device_pids=
devices=$(sed -n 's/.*num_clients: *\([0-9]*\).*/\1/p' "$scenario")
checkpoint=$(sed -n 's/.*checkpoint: *"\([^"]*\)".*/\1/p' "$scenario")
backbone=$(cd "$(dirname "$scenario")" && realpath "$checkpoint")
port=$((20000 + $$ % 20000))

case "$method" in
  sema|sema_replay) modules='module { name: "head" role: "head" }
pool { expandable_blocks: 2 expandable_blocks: 3 base_experts: true round_window: 30 }' ;;
  sequential_adapter) modules='module { name: "adapter" role: "pet" pet { kind: "adapter" adapter_bottleneck: 8 site_prefixes: "blocks.2" site_prefixes: "blocks.3" } }
module { name: "head" role: "head" }' ;;
  lae) modules='module { name: "adapter" role: "pet" pet { kind: "adapter" adapter_bottleneck: 8 site_prefixes: "blocks.0" site_prefixes: "blocks.1" } }
module { name: "head" role: "head" }' ;;
  fedins) modules='fedins { pool_size: 8 }' ;;
  linear_head|simple_cil) modules='module { name: "head" role: "head" }' ;;
  fed_simple_cil) modules='module { name: "class_statistics" role: "class_statistics" }' ;;
  *) echo "unknown method $method" >&2; exit 2 ;;
esac
cat > "$out/server.textproto" <<CONFIG
state_dir: "$out/state"
backbone_checkpoint: "$backbone"
num_classes: 10
$modules
round { duration_ms: 700 min_participants: 0 }
journal { sync: "normal" }
CONFIG

# Devices first (each builds its tasks, then waits for the server), the server once all are
# ready, so that round 0 finds every device.
start=$(date +%s)
i=0
while [ "$i" -lt "$devices" ]; do
  "$build/bin/fedcl-sim" --scenario="$scenario" --device=$i --method="$method" --seed="$seed" \
    --server="127.0.0.1:$port" --storage_dir="$out/device-$i" --out="$out/reports" \
    --progress=false 2> "$out/device-$i.log" &
  device_pids="$device_pids $!"
  i=$((i + 1))
done
i=0
while [ "$i" -lt "$devices" ]; do
  until grep -q "ready" "$out/device-$i.log" 2>/dev/null; do sleep 1; done
  i=$((i + 1))
done
"$build/bin/fedcl-server" --config="$out/server.textproto" --listen="127.0.0.1:$port" \
  2> "$out/server.log" &
server_pid=$!
status=0
for pid in $device_pids; do
  wait "$pid" || { echo "a device exited with status $?"; status=1; }
done
device_pids=
echo "$method, seed $seed: $devices device processes and fedcl-server, $(($(date +%s) - start)) s"
[ $status -eq 0 ] || { tail -5 "$out"/device-*.log; exit 1; }
"$build/bin/fedcl-sim" --scenario="$scenario" --report_devices="$out/reports" --progress=false
echo
/usr/bin/python3 "$(dirname "$0")/pool_summary.py" "$out/state/metrics.jsonl"
kill $server_pid
wait $server_pid 2>/dev/null || true
server_pid=
