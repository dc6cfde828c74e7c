#!/bin/sh
# The simulator at scale: N = 10k, 100k and 1M virtual clients with about 1,000 participants per
# round (sim/scenarios/scale_*.textproto), one after another so they do not compete for cores.
# Prints rounds and client updates per second (rounds only: set-up, i.e. partition, p_n and
# enrolment, is shown apart), peak RSS, and the bytes per dormant client implied by the RSS
# growth between sizes (the shared data set and the model replicas are the same at every N, so
# the difference is what the extra dormant clients cost).
#
#   tests/bench/sim_scale.sh [BUILD_DIR]
set -eu
build=${1:-build}
root="$(cd "$(dirname "$0")/../.." && pwd)"
out=$(mktemp -d)
for n in 10k 100k 1m; do
  "$build/bin/fedcl-sim" --scenario="$root/sim/scenarios/scale_$n.textproto" --out="$out/$n" \
    --progress=false > "$out/$n.log"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for name in ("10k", "100k", "1m"):
    s = json.load(open(f"{out}/{name}/summary.json"))
    m = s["methods"][0]
    rounds_wall = m["wall_seconds"] - m["setup_seconds"]
    rows.append((s["clients"], s["rounds"] / rounds_wall, m["updates"] / rounds_wall,
                 m["updates"] / s["rounds"], s["peak_rss_bytes"], m["rss_bytes_at_end"],
                 m["setup_seconds"]))
print(f"{'clients':>9} {'rounds/s':>9} {'updates/s':>10} {'upd/round':>10} "
      f"{'peak RSS MiB':>13} {'RSS at end MiB':>15} {'setup s':>8}")
for n, rps, ups, upr, peak, end, setup in rows:
    print(f"{n:>9} {rps:>9.2f} {ups:>10.0f} {upr:>10.0f} {peak / 2**20:>13.1f} "
          f"{end / 2**20:>15.1f} {setup:>8.1f}")
# The peak includes a transient of loading the data set (larger than 10k and 100k clients), so
# the per-client cost comes from the resident set at the end of the run, every client held.
for a, b in ((0, 1), (1, 2), (0, 2)):
    (n0, *_, end0, _), (n1, *_, end1, _) = rows[a], rows[b]
    print(f"bytes per dormant client, {n0} -> {n1}: {(end1 - end0) / (n1 - n0):.1f}")
PY
rm -rf "$out"
