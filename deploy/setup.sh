#!/bin/sh
# Installs everything fedcl's build, tests and default data need on Debian 12, as root.
# Idempotent: when every package is already installed it touches nothing (no apt-get update).
set -eu

PACKAGES="
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libeigen3-dev libtbb-dev libabsl-dev zlib1g-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  openssl chromium python3-yaml yamllint
  dataset-fashion-mnist
"

# npm and kubectl (for its built-in kustomize) come from Debian unless the machine already has
# them: another kubectl package would conflict with Debian's kubernetes-client.
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES="$PACKAGES npm"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  PACKAGES="$PACKAGES kubernetes-client"
fi

missing=""
for package in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done

if [ -z "$missing" ]; then
  echo "setup: all packages present"
  "$(dirname "$0")/vendor_echarts.sh"
  "$(dirname "$0")/vendor_k8s_validate.sh"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages:$missing; run this script as root to install them" >&2
  exit 1
fi

echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing
"$(dirname "$0")/vendor_echarts.sh"
"$(dirname "$0")/vendor_k8s_validate.sh"
