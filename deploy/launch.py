#!/usr/bin/python3
"""Runs fedcl's Kubernetes topology as plain processes on 127.0.0.1.

The command lines are not written here: they are read from the manifests in deploy/k8s (the
server StatefulSet and its init container, the device StatefulSet, the simulation overlay's
server patch and worker Job), and their $(VAR) references are expanded from the same
environment file the ConfigMap is generated from (deploy/k8s/base/fedcl.env), with addresses and
paths pointed at a local directory. What runs here is what the pods run.

  deploy/launch.py run --devices 4 --rounds 20          # up, wait for the devices, down
  deploy/launch.py run --simulation --shards 2          # server + simulator worker shards
  deploy/launch.py up --devices 4 && deploy/launch.py status
  deploy/launch.py restart-server [--kill]              # e.g. to watch devices ride it out
  deploy/launch.py wait && deploy/launch.py down

State, logs, TLS material and tokens go to --root (default out/local): server/ (its state dir,
metrics.jsonl), device-<i>/, secrets/ (development CA and tokens from
deploy/k8s/make_dev_secrets.sh), logs/<process>.log and launch.json (what is running).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(REPO, "deploy", "k8s")
ENV_FILE = os.path.join(K8S, "base", "fedcl.env")


def read_env_file(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def manifest(path, kind, name):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{path}: no {kind} {name}")


def pod_spec(path, kind, name):
    return manifest(path, kind, name)["spec"]["template"]["spec"]


def container(spec, name, init=False):
    for c in spec.get("initContainers" if init else "containers", []):
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name}")


def expand(text, env):
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ escapes, others stay."""
    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, text)


def argv_of(c, env):
    return [expand(part, env) for part in c.get("command", []) + c.get("args", [])]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launcher:
    def __init__(self, root, bin_dir):
        self.root = os.path.abspath(root)
        self.bin_dir = os.path.abspath(bin_dir)
        self.state_path = os.path.join(self.root, "launch.json")

    # ---- environment -----------------------------------------------------------------------

    def environment(self, base, overrides):
        env = dict(os.environ)
        env.update(base)
        env.update(overrides)
        env["PATH"] = self.bin_dir + os.pathsep + env.get("PATH", "")
        return env

    def local_env(self, args, server_port, health_port):
        env = read_env_file(ENV_FILE)
        secrets = os.path.join(self.root, "secrets")
        env.update({
            "FEDCL_SERVER_PORT": str(server_port),
            "FEDCL_HEALTH_PORT": str(health_port),
            "FEDCL_SERVER_ADDRESS": f"127.0.0.1:{server_port}",
            "FEDCL_CONFIG_DIR": os.path.join(K8S, "base"),
            "FEDCL_TLS_DIR": secrets,
            "FEDCL_TOKENS_DIR": secrets,
            "FEDCL_STATE_DIR": os.path.join(self.root, "server"),
            "FEDCL_NUM_DEVICES": str(args.devices),
            "FEDCL_DEVICE_ROUNDS": str(args.rounds),
            "FEDCL_SIM_SHARDS": str(args.shards),
        })
        for item in args.env or []:
            name, _, value = item.partition("=")
            env[name] = value
        return env

    # ---- processes ---------------------------------------------------------------------------

    def start(self, name, argv, env):
        logs = os.path.join(self.root, "logs")
        os.makedirs(logs, exist_ok=True)
        log = open(os.path.join(logs, f"{name}.log"), "ab")
        exit_file = os.path.join(logs, f"{name}.exit")
        if os.path.exists(exit_file):
            os.remove(exit_file)
        # A shell records the exit status, since a later `wait` is not the process's parent. Each
        # process leads its own session, so `down` stops it with everything it started.
        wrapped = ["/bin/sh", "-c", '"$@"; echo $? > "$0"', exit_file] + argv
        process = subprocess.Popen(wrapped, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        return {"name": name, "pid": process.pid, "argv": argv}

    def wait_for_health(self, env, timeout=120):
        probe = [os.path.join(self.bin_dir, "fedcl-server"),
                 f"--probe=127.0.0.1:{env['FEDCL_HEALTH_PORT']}"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            if subprocess.run(probe, capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("the server did not become healthy; see "
                           + os.path.join(self.root, "logs", "server.log"))

    def save(self, state):
        with open(self.state_path, "w") as f:
            json.dump(state, f, indent=2)

    def load(self):
        if not os.path.exists(self.state_path):
            raise RuntimeError(f"nothing launched in {self.root}")
        return json.load(open(self.state_path))

    # ---- commands ----------------------------------------------------------------------------

    def up(self, args):
        if os.path.exists(self.state_path) and any(alive(p["pid"]) for p in self.load()["processes"]):
            raise RuntimeError(f"already running in {self.root}: run 'down' first")
        os.makedirs(self.root, exist_ok=True)
        if not args.keep_state:
            # A fresh federation: a server resuming the last run's state would pick up where it
            # ended (a finished simulation would finish at once).
            for entry in os.listdir(self.root):
                if entry == "server" or entry.startswith("device-") or entry == "logs":
                    shutil.rmtree(os.path.join(self.root, entry))
        secrets = os.path.join(self.root, "secrets")
        # What the secrets were issued for: shard tokens cover client ranges, so another number
        # of shards (or devices, or simulated clients) needs a new, consistent set.
        issued_for = {"devices": args.devices, "shards": args.shards, "sim_clients": sim_clients()}
        record = os.path.join(secrets, "issued_for.json")
        if not os.path.exists(record) or json.load(open(record)) != issued_for:
            shutil.rmtree(secrets, ignore_errors=True)
            subprocess.run([os.path.join(K8S, "make_dev_secrets.sh"), secrets, str(args.devices),
                            str(sim_clients()), str(args.shards)], check=True,
                           stdout=subprocess.DEVNULL)
            with open(record, "w") as f:
                json.dump(issued_for, f)
        base = self.local_env(args, free_port(), free_port())
        env = self.environment(base, {})
        server_spec = pod_spec(os.path.join(K8S, "base", "server.yaml"), "StatefulSet", "fedcl-server")
        server = container(server_spec, "server")
        processes = []
        if args.simulation:
            patch = pod_spec(os.path.join(K8S, "overlays", "simulation", "server-simulation.yaml"),
                             "StatefulSet", "fedcl-server")
            init = container(patch, "emit-config", init=True)
            # The patch replaces the server's args (a strategic merge replaces scalar lists).
            server = dict(server, args=container(patch, "server")["args"])
            subprocess.run(argv_of(init, env), env=env, check=True, stdout=subprocess.DEVNULL)
        else:
            init = container(server_spec, "pretrain", init=True)
            os.makedirs(base["FEDCL_STATE_DIR"], exist_ok=True)
            subprocess.run(argv_of(init, env), env=env, check=True,
                           stdout=open(os.path.join(self.root, "pretrain.log"), "wb"),
                           stderr=subprocess.STDOUT)
        processes.append(self.start("server", argv_of(server, env), env))
        self.save({"env": base, "simulation": args.simulation, "processes": processes})
        self.wait_for_health(env)
        if args.simulation:
            job = manifest(os.path.join(K8S, "overlays", "simulation", "sim-workers.yaml"), "Job",
                           "fedcl-sim-worker")
            worker = container(job["spec"]["template"]["spec"], "sim-worker")
            for shard in range(args.shards):
                shard_env = self.environment(base, {"JOB_COMPLETION_INDEX": str(shard)})
                processes.append(self.start(f"sim-worker-{shard}", argv_of(worker, shard_env),
                                            shard_env))
        else:
            device = container(pod_spec(os.path.join(K8S, "base", "devices.yaml"), "StatefulSet",
                                        "fedcl-device"), "device")
            for index in range(args.devices):
                device_env = self.environment(base, {
                    "FEDCL_DEVICE_INDEX": str(index),
                    "FEDCL_DEVICE_STATE_DIR": os.path.join(self.root, f"device-{index}")})
                processes.append(self.start(f"device-{index}", argv_of(device, device_env),
                                            device_env))
        self.save({"env": base, "simulation": args.simulation, "processes": processes})
        print(f"launch: server on {base['FEDCL_SERVER_ADDRESS']} (health "
              f"127.0.0.1:{base['FEDCL_HEALTH_PORT']}), {len(processes) - 1} "
              f"{'worker shard' if args.simulation else 'device'}(s); logs in {self.root}/logs")

    def status(self, _args):
        state = self.load()
        for p in state["processes"]:
            print(f"{p['name']:<14} pid {p['pid']:<8} {'running' if alive(p['pid']) else 'exited'}")

    def restart_server(self, args):
        state = self.load()
        server = next(p for p in state["processes"] if p["name"] == "server")
        stop([server], signal.SIGKILL if args.kill else signal.SIGTERM, grace=10)
        env = self.environment(state["env"], {})
        restarted = self.start("server", server["argv"], env)
        state["processes"] = [restarted if p["name"] == "server" else p
                              for p in state["processes"]]
        self.save(state)
        self.wait_for_health(env)
        print(f"launch: server restarted (pid {restarted['pid']})")

    def wait(self, args):
        """Waits for the devices or worker shards to exit; fails if any failed."""
        state = self.load()
        others = [p for p in state["processes"] if p["name"] != "server"]
        deadline = time.time() + args.timeout
        while any(alive(p["pid"]) for p in others):
            if time.time() > deadline:
                raise RuntimeError(f"still running after {args.timeout} s")
            time.sleep(0.5)
        failed = [p["name"] for p in others if exit_code(self.root, p) != 0]
        if failed:
            raise RuntimeError("failed: " + ", ".join(failed) + f" (logs in {self.root}/logs)")
        print(f"launch: {len(others)} process(es) finished")

    def down(self, _args):
        if not os.path.exists(self.state_path):
            return
        state = self.load()
        stop(state["processes"], signal.SIGTERM, grace=15)
        print("launch: stopped")

    def run(self, args):
        try:
            self.up(args)
            self.wait(args)
        finally:
            self.down(args)
        metrics = os.path.join(self.root, "server", "metrics.jsonl")
        if os.path.exists(metrics):
            lines = [json.loads(l) for l in open(metrics)]
            accuracies = [l["accuracy"] for l in lines if l.get("accuracy") is not None]
            print(f"launch: {len(lines)} rounds closed"
                  + (f", last accuracy {accuracies[-1]:.4f}" if accuracies else "")
                  + f"; metrics in {metrics}")


def sim_clients():
    text = open(os.path.join(K8S, "base", "sim.textproto")).read()
    match = re.search(r"num_clients:\s*(\d+)", text)
    return int(match.group(1))


def alive(pid):
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of another launcher invocation counts as exited.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def exit_code(root, process):
    """The exit status the process's wrapper recorded, or None if it never finished."""
    try:
        return int(open(os.path.join(root, "logs", f"{process['name']}.exit")).read())
    except (OSError, ValueError):
        return None


def stop(processes, sig, grace):
    for p in processes:
        if alive(p["pid"]):
            try:
                os.killpg(p["pid"], sig)
            except ProcessLookupError:
                pass
    deadline = time.time() + grace
    while any(alive(p["pid"]) for p in processes) and time.time() < deadline:
        time.sleep(0.1)
    for p in processes:
        if alive(p["pid"]):
            os.killpg(p["pid"], signal.SIGKILL)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "run", "status", "restart-server", "wait", "down"])
    parser.add_argument("--root", default=os.path.join(REPO, "out", "local"))
    parser.add_argument("--bin", default=os.path.join(REPO, "build", "bin"))
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20, help="updates each device sends")
    parser.add_argument("--simulation", action="store_true",
                        help="server + simulator worker shards instead of devices")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--kill", action="store_true", help="restart-server: SIGKILL, not SIGTERM")
    parser.add_argument("--keep_state", action="store_true",
                        help="up/run: resume the server and devices from --root instead of starting "
                             "a fresh federation (secrets are always kept if they fit)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--env", action="append", metavar="NAME=VALUE",
                        help="override a variable of fedcl.env (repeatable)")
    args = parser.parse_args(argv)
    launcher = Launcher(args.root, args.bin)
    try:
        getattr(launcher, args.command.replace("-", "_"))(args)
    except (RuntimeError, subprocess.CalledProcessError, KeyError, OSError) as error:
        print(f"launch: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
