#!/bin/sh
# Installs everything fedcl's build, tests and default data need on Debian 12, as root.
# Idempotent: when every package is already installed it touches nothing (no apt-get update).
set -eu

PACKAGES="
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libeigen3-dev libtbb-dev libabsl-dev zlib1g-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  openssl chromium
  dataset-fashion-mnist
"

# The report's charting library, vendored from the npm registry at a pinned version and checked
# against the registry's integrity hash (never committed: third_party/ is ignored).
ECHARTS_VERSION=5.6.0
ECHARTS_INTEGRITY=sha512-oTbVTsXfKuEhxftHqL5xprgLoc0k7uScAwtryCgWF6hPYFLRwOUHiFmHGCBKP5NPFNkDVopOieyUqYGH8Fa3kA==
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

vendor_echarts() {
  target="$ROOT/third_party/echarts"
  if [ -f "$target/echarts.min.js" ] && [ "$(cat "$target/VERSION" 2>/dev/null)" = "$ECHARTS_VERSION" ]; then
    return 0
  fi
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent "echarts@$ECHARTS_VERSION" >/dev/null)
  actual="sha512-$(openssl dgst -sha512 -binary "$work/echarts-$ECHARTS_VERSION.tgz" | base64 -w0)"
  if [ "$actual" != "$ECHARTS_INTEGRITY" ]; then
    echo "setup: echarts-$ECHARTS_VERSION.tgz does not match its pinned integrity hash" >&2
    rm -rf "$work"
    exit 1
  fi
  mkdir -p "$target"
  tar -xzf "$work/echarts-$ECHARTS_VERSION.tgz" -C "$work" package/dist/echarts.min.js package/LICENSE
  cp "$work/package/dist/echarts.min.js" "$work/package/LICENSE" "$target/"
  echo "$ECHARTS_VERSION" > "$target/VERSION"
  rm -rf "$work"
  echo "setup: vendored echarts $ECHARTS_VERSION into third_party/echarts"
}

# npm comes from Debian unless the machine already has one.
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES="$PACKAGES npm"
fi

missing=""
for package in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done

if [ -z "$missing" ]; then
  echo "setup: all packages present"
  vendor_echarts
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
vendor_echarts
