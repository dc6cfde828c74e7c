#!/bin/sh
# Writes development TLS material and tokens for the Kubernetes overlays into
# deploy/k8s/overlays/dev/secrets/ (or OUT_DIR): a CA and a server certificate for the in-cluster
# names of fedcl-server, a token per device (client-<i>.token) and per simulator shard
# (shard-<i>.token), and the server's tokens.txt (hashes only). Never commit them.
#
#   deploy/k8s/make_dev_secrets.sh [OUT_DIR] [DEVICES] [SIM_CLIENTS] [SIM_SHARDS]
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out=${1:-$here/overlays/dev/secrets}
devices=${2:-4}
sim_clients=${3:-200}
shards=${4:-2}
"$here/../dev_ca.sh" "$out" fedcl-server fedcl-server.fedcl fedcl-server.fedcl.svc \
  fedcl-server.fedcl.svc.cluster.local > /dev/null
# Devices take ids 0..devices-1. Simulated clients are another population whose ids also start at
# 0, so their worker tokens go to a tokens file of their own (sim-tokens.txt), which only the
# simulation overlay's server reads.
"$here/../make_tokens.sh" "$out" client "0-$((devices - 1))" > /dev/null
"$here/../make_tokens.sh" "$out/sim" shards "$sim_clients-$shards" > /dev/null
mv "$out"/sim/shard-*.token "$out/"
mv "$out/sim/tokens.txt" "$out/sim-tokens.txt"
rmdir "$out/sim"
echo "make_dev_secrets: wrote $out"
