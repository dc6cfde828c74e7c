#!/bin/sh
# Vendors the report's charting library (ECharts) from the npm registry at a pinned version,
# checked against the registry's integrity hash, into third_party/echarts/ (never committed).
# Idempotent. deploy/setup.sh and the Dockerfile call it.
set -eu
ECHARTS_VERSION=5.6.0
ECHARTS_INTEGRITY=sha512-oTbVTsXfKuEhxftHqL5xprgLoc0k7uScAwtryCgWF6hPYFLRwOUHiFmHGCBKP5NPFNkDVopOieyUqYGH8Fa3kA==
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/third_party/echarts"
if [ -f "$target/echarts.min.js" ] && [ "$(cat "$target/VERSION" 2>/dev/null)" = "$ECHARTS_VERSION" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "echarts@$ECHARTS_VERSION" >/dev/null)
actual="sha512-$(openssl dgst -sha512 -binary "$work/echarts-$ECHARTS_VERSION.tgz" | base64 -w0)"
if [ "$actual" != "$ECHARTS_INTEGRITY" ]; then
  echo "vendor_echarts: echarts-$ECHARTS_VERSION.tgz does not match its pinned integrity hash" >&2
  exit 1
fi
mkdir -p "$target"
tar -xzf "$work/echarts-$ECHARTS_VERSION.tgz" -C "$work" package/dist/echarts.min.js package/LICENSE
cp "$work/package/dist/echarts.min.js" "$work/package/LICENSE" "$target/"
echo "$ECHARTS_VERSION" > "$target/VERSION"
echo "vendor_echarts: vendored echarts $ECHARTS_VERSION into third_party/echarts"
