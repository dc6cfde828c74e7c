#!/bin/sh
# Installs the offline Kubernetes schema validator's npm packages (kubernetes-models, js-yaml) at
# the versions pinned by deploy/k8s/validate/package-lock.json (integrity hashes included) into
# third_party/k8s-validate/ (never committed). Idempotent. deploy/setup.sh calls it.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="$root/deploy/k8s/validate"
target="$root/third_party/k8s-validate"
if [ -d "$target/node_modules" ] && cmp -s "$source_dir/package-lock.json" "$target/package-lock.json"; then
  exit 0
fi
mkdir -p "$target"
cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target/"
(cd "$target" && npm ci --silent --no-audit --no-fund)
echo "vendor_k8s_validate: installed the pinned validator packages into third_party/k8s-validate"
