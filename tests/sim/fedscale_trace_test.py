#!/usr/bin/python3
"""FedScale's two device traces (pickled dicts, schema from FedScale's docs) convert into
fedcl-sim's CSV formats, a scenario replays them with stragglers and mid-round dropouts, and a
pickle that would run code is refused.

  fedscale_trace_test.py CONVERTER FEDCL_SIM WORK_DIR
"""
import json
import os
import pickle
import shutil
import subprocess
import sys


def run(*args, expect_ok=True):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    if expect_ok and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def main(converter, sim, work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # Twenty FedScale clients with ids 101..120: each is available for 400 s of every 1000 s, with
    # its window starting at a client-dependent offset; capacities vary tenfold.
    behave, capacity = {}, {}
    for i in range(20):
        start = 50 * i
        behave[101 + i] = {"duration": 1000, "finish_time": 1000, "model": "phone",
                           "active": [start], "inactive": [start + 400]}
        capacity[101 + i] = {"computation": 20.0 + 20.0 * i, "communication": 20000.0}
    with open(os.path.join(work, "client_behave_trace"), "wb") as f:
        pickle.dump(behave, f)
    with open(os.path.join(work, "client_device_capacity"), "wb") as f:
        pickle.dump(capacity, f)

    trace = os.path.join(work, "trace.csv")
    profiles = os.path.join(work, "profiles.csv")
    out = run(converter, "--availability", os.path.join(work, "client_behave_trace"),
              "--capacity", os.path.join(work, "client_device_capacity"),
              "--trace_out", trace, "--profiles_out", profiles, "--horizon_s", "5000")
    print(out.stdout.strip())
    rows = [l for l in open(trace) if l[0].isdigit()]
    assert len(rows) == 20 * 5, len(rows)  # five periods unrolled
    assert rows[0].strip() == "0,0,400", rows[0]
    assert "19,950,1350" in [r.strip() for r in rows], rows[:10]
    prows = [l.strip() for l in open(profiles) if l[0].isdigit()]
    assert prows[0] == "0,20,20000" and prows[19] == "19,400,20000", prows

    scenario = os.path.join(work, "trace.textproto")
    with open(scenario, "w") as f:
        f.write(f"""
name: "fedscale trace replay"
model {{ backbone: "mlp" mlp_hidden: 8 }}
data {{ partition: "iid" max_train_samples: 2000 max_test_samples: 200 }}
population {{ num_clients: 20 }}
participation {{ pattern: "trace" trace_file: "trace.csv" }}
devices {{ profile_file: "profiles.csv" round_deadline_s: 25 }}
rounds: 120
eval_every: 20
""")
    run(sim, f"--scenario={scenario}", f"--out={work}/out", "--progress=false")
    summary = json.load(open(os.path.join(work, "out", "summary.json")))
    method = summary["methods"][0]
    # 80 samples at 20 + 20·i ms: clients 15..19 need more than 25 s and always straggle; windows
    # that close during a round cost dropouts.
    assert method["stragglers"] > 0, method
    assert method["dropouts"] > 0, method
    metrics = [json.loads(l) for l in open(os.path.join(work, "out", "metrics.jsonl"))]
    assert metrics[-1]["virtual_seconds"] > 1000, metrics[-1]
    print(f"replayed: {method['stragglers']} stragglers, {method['dropouts']} dropouts, "
          f"{metrics[-1]['virtual_seconds']:.0f} virtual seconds")

    # A pickle that would run code is refused, and nothing is written.
    with open(os.path.join(work, "evil"), "wb") as f:
        pickle.dump({1: RunsCode()}, f)
    bad = run(converter, "--availability", os.path.join(work, "evil"), "--trace_out",
              os.path.join(work, "evil.csv"), expect_ok=False)
    assert bad.returncode == 1 and "refusing to load" in bad.stderr, bad.stderr
    assert not os.path.exists(os.path.join(work, "evil.csv"))
    # A trace missing a field is named.
    with open(os.path.join(work, "broken"), "wb") as f:
        pickle.dump({1: {"active": [0], "finish_time": 10}}, f)
    bad = run(converter, "--availability", os.path.join(work, "broken"), "--trace_out",
              os.path.join(work, "broken.csv"), expect_ok=False)
    assert bad.returncode == 1 and "'inactive'" in bad.stderr, bad.stderr
    print("bad pickles refused")


if __name__ == "__main__":
    main(*sys.argv[1:])
