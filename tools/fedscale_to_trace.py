#!/usr/bin/python3
"""Converts FedScale's device traces into fedcl-sim's CSV formats (sim/world/trace.h).

FedScale ships two pickled dicts keyed by client id (its docs, "Device Trace File Formats"):
  client_behave_trace     {id: {'duration': int, 'inactive': [int], 'finish_time': int,
                                'active': [int], 'model': str}}
                          client id is available from active[i] until inactive[i] (seconds), and
                          the pattern repeats every finish_time seconds;
  client_device_capacity  {id: {'computation': float, 'communication': float}}
                          milliseconds per sample and bandwidth in kbit/s.

Output:
  --trace_out     client,from_s,until_s        (windows unrolled up to --horizon_s)
  --profiles_out  client,ms_per_sample,bandwidth_kbps

FedScale ids are mapped to fedcl ids 0..N-1 in increasing FedScale id order (the mapping is
written as a comment at the top of each file); --max_clients keeps the first N. Only plain
Python containers and numbers are unpickled: the loader refuses any other class, so a crafted
pickle cannot run code.

  /usr/bin/python3 tools/fedscale_to_trace.py --availability client_behave_trace \\
      --capacity client_device_capacity --trace_out trace.csv --profiles_out profiles.csv \\
      --max_clients 1000 --horizon_s 172800
"""

import argparse
import math
import os
import pickle
import sys


class PlainUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings and numbers only."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: FedScale traces hold only plain containers")


def load(path):
    with open(path, "rb") as f:
        data = PlainUnpickler(f).load()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict keyed by client id, found {type(data).__name__}")
    return data


def number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a finite number, found {value!r}")
    return float(value)


def windows(entry, client, horizon):
    """The availability windows of one client, unrolled over [0, horizon)."""
    for key in ("active", "inactive", "finish_time"):
        if key not in entry:
            raise ValueError(f"client {client}: availability entry has no '{key}'")
    active, inactive = entry["active"], entry["inactive"]
    if len(active) != len(inactive):
        raise ValueError(f"client {client}: {len(active)} 'active' times but "
                         f"{len(inactive)} 'inactive' times")
    period = number(entry["finish_time"], f"client {client} finish_time")
    base = []
    for start, end in zip(active, inactive):
        start = number(start, f"client {client} active")
        end = number(end, f"client {client} inactive")
        if end > start:
            base.append((start, end))
    if period <= 0 or not base:
        return base
    out = []
    offset = 0.0
    while offset < horizon:
        for start, end in base:
            if offset + start >= horizon:
                break
            out.append((offset + start, min(offset + end, horizon)))
        offset += period
    return out


def write(path, lines):
    """Writes the whole file or nothing: a failed conversion leaves no half-written CSV."""
    temporary = path + ".tmp"
    with open(temporary, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--availability", help="FedScale client_behave_trace (pickle)")
    parser.add_argument("--capacity", help="FedScale client_device_capacity (pickle)")
    parser.add_argument("--trace_out", help="where to write the availability CSV")
    parser.add_argument("--profiles_out", help="where to write the device-profile CSV")
    parser.add_argument("--max_clients", type=int, default=0, help="keep the first N (0 = all)")
    parser.add_argument("--horizon_s", type=float, default=7 * 86400.0,
                        help="unroll periodic availability up to this time (default one week)")
    args = parser.parse_args(argv)
    if bool(args.availability) != bool(args.trace_out) or bool(args.capacity) != bool(args.profiles_out):
        parser.error("--availability goes with --trace_out, --capacity with --profiles_out")
    if not args.availability and not args.capacity:
        parser.error("give --availability and/or --capacity")
    if args.horizon_s <= 0:
        parser.error("--horizon_s must be positive")

    sources = {}
    if args.availability:
        sources["availability"] = load(args.availability)
    if args.capacity:
        sources["capacity"] = load(args.capacity)
    ids = sorted(set().union(*[set(d.keys()) for d in sources.values()]))
    if args.max_clients > 0:
        ids = ids[: args.max_clients]
    mapping = "# fedcl id = position of the FedScale id in increasing order; first ids: " + \
        ", ".join(f"{i}<-{fid}" for i, fid in enumerate(ids[:10]))

    if args.availability:
        trace = sources["availability"]
        lines = [f"# converted from FedScale {args.availability}, horizon {args.horizon_s} s",
                 mapping, "client,from_s,until_s"]
        for fedcl_id, fedscale_id in enumerate(ids):
            entry = trace.get(fedscale_id)
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise ValueError(f"client {fedscale_id}: availability entry is not a dict")
            for start, end in windows(entry, fedscale_id, args.horizon_s):
                lines.append(f"{fedcl_id},{start:g},{end:g}")
        write(args.trace_out, lines)
        print(f"{args.trace_out}: {len(lines) - 3} windows for {len(ids)} clients")

    if args.capacity:
        capacity = sources["capacity"]
        lines = [f"# converted from FedScale {args.capacity}", mapping,
                 "client,ms_per_sample,bandwidth_kbps"]
        for fedcl_id, fedscale_id in enumerate(ids):
            entry = capacity.get(fedscale_id)
            if entry is None:
                continue
            if not isinstance(entry, dict) or "computation" not in entry or "communication" not in entry:
                raise ValueError(f"client {fedscale_id}: capacity entry needs 'computation' "
                                 "and 'communication'")
            ms = number(entry["computation"], f"client {fedscale_id} computation")
            kbps = number(entry["communication"], f"client {fedscale_id} communication")
            if ms < 0 or kbps < 0:
                raise ValueError(f"client {fedscale_id}: negative capacity")
            lines.append(f"{fedcl_id},{ms:g},{kbps:g}")
        write(args.profiles_out, lines)
        print(f"{args.profiles_out}: {len(lines) - 3} profiles")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as error:
        print(f"fedscale_to_trace: {error}", file=sys.stderr)
        sys.exit(1)
