#!/usr/bin/python3
"""The local launcher (deploy/launch.py) runs the deployment topology as plain processes on
127.0.0.1 with TLS and tokens: three devices train with a server that is killed (SIGKILL) and
restarted under them mid-run, and every device still gets all its updates acknowledged; then a
sharded simulation (server + two worker shards) runs to its last round.

  launcher_test.py REPO BIN_DIR SCRATCH_DIR
"""
import json
import os
import shutil
import subprocess
import sys
import time


def launch(repo, *args):
    result = subprocess.run(["/usr/bin/python3", os.path.join(repo, "deploy", "launch.py"), *args],
                            capture_output=True, text=True, timeout=900)
    print(result.stdout.strip())
    if result.returncode != 0:
        raise AssertionError(f"launch.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def metrics(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def main(repo, bin_dir, scratch):
    shutil.rmtree(scratch, ignore_errors=True)
    root = os.path.join(scratch, "devices")
    common = ["--root", root, "--bin", bin_dir]
    rounds = 6
    launch(repo, "up", *common, "--devices", "3", "--rounds", str(rounds),
           "--env", "FEDCL_PRETRAIN_CLASSES=0-1")
    try:
        server_metrics = os.path.join(root, "server", "metrics.jsonl")
        deadline = time.time() + 180
        while len(metrics(server_metrics)) < 2:
            if time.time() > deadline:
                raise AssertionError("no two rounds closed within 180 s")
            time.sleep(0.5)
        before = len(metrics(server_metrics))
        launch(repo, "restart-server", "--kill", *common)
        launch(repo, "wait", *common, "--timeout", "600")
        after = metrics(server_metrics)
        if len(after) <= before:
            raise AssertionError(f"no round closed after the restart ({before} before)")
        for i in range(3):
            log = open(os.path.join(root, "logs", f"device-{i}.log")).read()
            if f"done: {rounds} updates acknowledged" not in log:
                raise AssertionError(f"device {i} did not finish its {rounds} updates:\n{log[-2000:]}")
        server_log = open(os.path.join(root, "logs", "server.log")).read()
        if "plaintext" in server_log:
            raise AssertionError("the server ran without TLS")
        print(f"devices: {len(after)} rounds closed ({before} before the server was killed)")
    finally:
        launch(repo, "down", *common)

    sim_root = os.path.join(scratch, "simulation")
    out = launch(repo, "run", "--simulation", "--shards", "2", "--root", sim_root, "--bin", bin_dir,
                 "--timeout", "600")
    rounds_closed = len(metrics(os.path.join(sim_root, "server", "metrics.jsonl")))
    if rounds_closed != 300 or "last accuracy" not in out:
        raise AssertionError(f"the sharded simulation closed {rounds_closed} of 300 rounds")
    # The simulation's report, from the server's metrics log (what the README does after a run
    # across pods).
    report = os.path.join(scratch, "report")
    made = subprocess.run([os.path.join(bin_dir, "fedcl-sim"),
                           f"--scenario={repo}/deploy/k8s/base/sim.textproto",
                           f"--report_from={sim_root}/server/metrics.jsonl", f"--out={report}"],
                          capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        raise AssertionError("fedcl-sim --report_from failed:\n" + made.stderr)
    summary = json.load(open(os.path.join(report, "summary.json")))
    evaluated = [m["accuracy"] for m in metrics(os.path.join(sim_root, "server", "metrics.jsonl"))
                 if m["accuracy"] is not None]
    final = sum(evaluated[-3:]) / 3  # the last 10% of 30 evaluations
    if abs(summary["methods"][0]["final_accuracy_mean"] - final) > 1e-9:
        raise AssertionError(f"report says {summary['methods'][0]}, server metrics give {final}")
    if os.path.getsize(os.path.join(report, "report.html")) < 100000:
        raise AssertionError("report.html is missing its charting library")

    # Nothing is left running.
    for state in (root, sim_root):
        for p in json.load(open(os.path.join(state, "launch.json")))["processes"]:
            if os.path.exists(f"/proc/{p['pid']}"):
                status = open(f"/proc/{p['pid']}/stat").read().split(")")[-1].split()[0]
                if status != "Z":
                    raise AssertionError(f"{p['name']} (pid {p['pid']}) is still running")
    print("launcher: devices survived a server kill; sharded simulation completed")


if __name__ == "__main__":
    main(*sys.argv[1:])
