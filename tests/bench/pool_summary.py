#!/usr/bin/python3
"""The growing pool after a fedcl-server's last round, from its metrics log (one JSON line per
round): modules, merges, and each module's block, version, contributors and holders.

  pool_summary.py STATE_DIR/metrics.jsonl
"""
import json
import sys


def main(path):
    last = [json.loads(line) for line in open(path) if line.strip()][-1]
    print("the server's pool after round %d: %d module(s), %d merge(s)"
          % (last["round"], len(last["pool"]), last["pool_merges"]))
    for name, module in sorted(last["pool"].items()):
        print("  %s: %s" % (name, json.dumps(module)))


if __name__ == "__main__":
    main(*sys.argv[1:])
