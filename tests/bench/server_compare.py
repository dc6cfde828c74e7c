#!/usr/bin/python3
"""End-to-end aggregation server benchmark over loopback: fedcl-server against a Python baseline.

Usage (from the repository root, after building):
    /usr/bin/python3 tests/bench/server_compare.py [--quick] [--only-python]
        [--clients 8,32,128] [--values 10000,100000,1000000] [--rounds 5] [--min-updates 200]
        [--warmup 1]
        [--repetitions 1] [--raw results.jsonl]

What it does (issue #3), for every K clients × D values:
  * starts each server as a real process on 127.0.0.1:0 and reads "listening on HOST:PORT" from
    its stdout: (a) fedcl-server with the update journal off, (b) fedcl-server with the journal
    on (the real configuration: SQLite, synchronous=full), (c) the Python baseline
    (python_baseline_server.py: grpcio + numpy, the same validation and FedAU averaging);
  * drives it with fedcl_submit_load: K concurrent clients, one D-value update each per round,
    `--warmup` rounds then max(`--rounds`, `--min-updates` / K) measured rounds; the round
    closes when all K are in;
  * reads the server's peak RSS (VmHWM from /proc/PID/status) before stopping it;
  * prints a markdown table: updates/s and p50/p99 submit latency per server, fedcl / Python
    (journal off), what the journal costs, and peak RSS (which must grow O(D), not O(K·D)).

updates/s is measured over the submit phase of each round (barrier release to the last
response: all K clients submitting at once, the round close included); the load generator's JSON
also has the end-to-end rate, which adds the round turnover: clients that already submitted poll
GetWork at the delay the server suggests, capped by --poll-ms for both servers alike. Targets with
the journal off: fedcl ≥ 10× the Python baseline at D = 10k and ≥ 3× at D = 1M.

The load generator runs on the same machine and takes CPU from the server: the progress lines
show both processes' CPU per update (whole run), which tells whether a figure measures the server
or the machine.

fedcl-server serves a real model, so D is the size of its module: the whole backbone of a
one-hidden-layer MLP (784·h + h values, h chosen so that this is closest to D; the checkpoint is
made once with fedcl-pretrain and cached). The Python baseline gets exactly the same D.
"""
import argparse
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BASELINE = os.path.join(HERE, "python_baseline_server.py")
PYTHON = "/usr/bin/python3"
LISTENING = re.compile(r"listening on (\S+:\d+)")
MAX_MESSAGE_BYTES = 4 << 20  # both servers: fedcl's default limits
CHUNK_BYTES = 1 << 20


# ---- fedcl-server: command line and configuration ------------------------------------------------
# Everything that depends on fedcl-server's flags and ServerConfig is in this section.

MLP_INPUTS = 28 * 28


def fedcl_module_values(values):
    """(exact D, hidden width h): the MLP backbone module with 784·h + h values closest to D."""
    hidden = max(1, round(values / (MLP_INPUTS + 1)))
    return hidden * (MLP_INPUTS + 1), hidden


def fedcl_checkpoint(args, work, hidden):
    """A backbone checkpoint of a [784 → h] MLP, made once with fedcl-pretrain (a tiny run)."""
    path = os.path.join(work, "checkpoints", f"mlp-{hidden}.ckpt")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        log(f"  pretraining {os.path.basename(path)} ...")
        subprocess.run([args.pretrain, "--model=mlp", f"--mlp_hidden={hidden}", "--epochs=1",
                        "--train_end=512", "--progress_interval=0", f"--output={path}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def write_fedcl_tokens(path, tokens):
    """The server's tokens file (server/token_auth.h): one client token per id, as SHA-256."""
    with open(path, "w") as f:
        for client_id, token in sorted(tokens.items()):
            f.write(f"client {client_id} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")


def fedcl_state_dir(work, clients, values, journal):
    """Where one run keeps its state (made afresh for the run, removed after it)."""
    name = f"fedcl-k{clients}-d{values}-journal-{'on' if journal else 'off'}"
    return os.path.join(work, "state", name)


def fedcl_server_command(args, work, clients, values, journal, tokens):
    """The fedcl-server command line for one run, after writing its config and tokens file."""
    _, hidden = fedcl_module_values(values)
    checkpoint = fedcl_checkpoint(args, work, hidden)
    state_dir = fedcl_state_dir(work, clients, values, journal)
    name = os.path.basename(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    os.makedirs(state_dir)
    tokens_file = os.path.join(state_dir, "tokens.txt")
    write_fedcl_tokens(tokens_file, tokens)
    # Without the journal the server promises crash safety only (state files unsynced); with it,
    # every acknowledged update is fsynced (--journal-sync, "full" by default).
    sync = args.journal_sync if journal else "normal"
    config = f"""\
state_dir: "{state_dir}"
backbone_checkpoint: "{checkpoint}"
module {{ name: "backbone" role: "backbone" }}
aggregator {{ kind: "adaptive" global_learning_rate: 1.0 }}
round {{ duration_ms: 600000 min_participants: {clients} max_participants: {clients} }}
limits {{ max_message_bytes: {MAX_MESSAGE_BYTES} chunk_bytes: {CHUNK_BYTES} }}
tokens_file: "{tokens_file}"
journal {{ disabled: {'false' if journal else 'true'} sync: "{sync}" }}
"""
    config_file = os.path.join(work, "configs", f"{name}.textproto")
    os.makedirs(os.path.dirname(config_file), exist_ok=True)
    with open(config_file, "w") as f:
        f.write(config)
    return [args.fedcl_server, "--listen=127.0.0.1:0", f"--config={config_file}"]


# ---- Python baseline -----------------------------------------------------------------------------

def python_server_command(clients, values):
    return [PYTHON, BASELINE, "--listen=127.0.0.1:0", f"--values={values}",
            f"--clients={clients}", f"--max-message-bytes={MAX_MESSAGE_BYTES}",
            f"--chunk-bytes={CHUNK_BYTES}"]


# ---- Running one server --------------------------------------------------------------------------

def log(message):
    print(message, file=sys.stderr, flush=True)


class Server:
    """A server process: started, its address read from stdout, its peak RSS read, stopped."""

    def __init__(self, command, log_path, start_timeout):
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log_file,
                                        text=True, cwd=REPO)
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + start_timeout
        self.address = None
        while self.address is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"no 'listening on' line within {start_timeout} s; see "
                                   f"{log_path}")
            if line is None:
                self.stop()
                raise RuntimeError(f"{command[0]} exited with status {self.process.returncode}"
                                   f" before listening: {self.tail()}")
            match = LISTENING.search(line)
            self.address = match.group(1) if match else None
        self.idle_rss_kib = self.status_kib("VmRSS")

    def _pump(self, lines):
        for line in self.process.stdout:
            lines.put(line)
        self.process.wait()
        lines.put(None)

    def status_kib(self, field):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines=5):
        if not self.log_file.closed:
            self.log_file.flush()
        with open(self.log_path) as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s; warns if the server did not exit cleanly."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        if self.process.returncode not in (0, -signal.SIGTERM):
            log(f"  warning: the server exited with status {self.process.returncode} when "
                f"stopped: {self.tail(2)}")


def measured_rounds(args, clients):
    """--rounds, or more for small K so that every run measures at least --min-updates."""
    return max(args.rounds, -(-args.min_updates // clients))


def drive(args, address, clients, values, token_file, server_pid):
    """Runs fedcl_submit_load against `address`; returns its JSON report."""
    command = [args.load, f"--target={address}", f"--clients={clients}", f"--values={values}",
               f"--server_pid={server_pid}",
               f"--rounds={measured_rounds(args, clients)}", f"--warmup_rounds={args.warmup}",
               f"--token_file={token_file}", f"--timeout_seconds={args.timeout}",
               f"--max_retry_after_ms={args.poll_ms}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout + 30)
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"fedcl_submit_load exited with {done.returncode}: "
                           f"{done.stderr.strip()[-500:]}")
    if not report["ok"]:
        raise RuntimeError(f"fedcl_submit_load: {report['error']} (errors {report['errors']})")
    return report


def run_case(args, work, kind, clients, values, tokens, token_file):
    """One server run of one kind ("python", "fedcl-off", "fedcl-on"): the report plus RSS."""
    if kind == "python":
        command = python_server_command(clients, values)
    else:
        command = fedcl_server_command(args, work, clients, values, kind == "fedcl-on", tokens)
    log_path = os.path.join(work, "logs", f"{kind}-k{clients}-d{values}.log")
    server = Server(command, log_path, args.start_timeout)
    try:
        report = drive(args, server.address, clients, values, token_file, server.process.pid)
        report["peak_rss_kib"] = server.status_kib("VmHWM")
        report["server_cpu_seconds"] = server.cpu_seconds()
        report["idle_rss_kib"] = server.idle_rss_kib
    finally:
        server.stop()
        if kind != "python" and not args.keep_state:  # a journal of 1M-value updates is large
            shutil.rmtree(fedcl_state_dir(work, clients, values, kind == "fedcl-on"),
                          ignore_errors=True)
    report["server"] = kind
    return report


def median_report(reports):
    """The median of each figure over repetitions (one report if there is one)."""
    if len(reports) == 1:
        return reports[0]
    out = dict(reports[-1])
    for key in ("updates_per_second", "end_to_end_updates_per_second", "peak_rss_kib",
                "server_cpu_ms_per_update"):
        if all(key in r for r in reports):
            out[key] = statistics.median(r[key] for r in reports)
    out["latency_ms"] = {q: statistics.median(r["latency_ms"][q] for r in reports)
                         for q in reports[0]["latency_ms"]}
    return out


# ---- Report --------------------------------------------------------------------------------------

def cpu_ms(report, key):
    """CPU milliseconds per update: the server's over the measured rounds (the load generator
    reads /proc/PID/stat at their start and end), else over the whole run (start-up and warm-up
    included)."""
    if key == "server_cpu_seconds" and "server_cpu_ms_per_update" in report:
        return report["server_cpu_ms_per_update"]
    updates = report["updates"] * (1 + report["warmup_rounds"] / max(1, report["measured_rounds"]))
    return 1000 * report[key] / max(1.0, updates)


def mib(kib):
    return f"{kib / 1024:,.0f}"


def latency(report):
    return f"{report['latency_ms']['p50']:.1f} / {report['latency_ms']['p99']:.1f}"


def print_table(rows, kinds, args):
    print(f"\nfedcl-server vs Python grpcio + numpy baseline over loopback: max({args.rounds}, "
          f"{args.min_updates}/K) rounds after {args.warmup} warm-up, median of "
          f"{args.repetitions}; updates/s over the submit phase, latency p50 / p99 ms, peak RSS "
          f"MiB (VmHWM)\n")
    header = ["K", "D"]
    names = {"python": "Python", "fedcl-off": "fedcl", "fedcl-on": "fedcl + journal"}
    for kind in kinds:
        header.append(f"{names[kind]} upd/s")
    if "fedcl-off" in kinds and "python" in kinds:
        header.append("fedcl / Python")
    if "fedcl-on" in kinds and "fedcl-off" in kinds:
        header.append("journal cost")
    header += [f"{names[k]} p50 / p99" for k in kinds]
    header += [f"{names[k]} server CPU ms/upd" for k in kinds]
    if "fedcl-off" in kinds and "python" in kinds:
        header.append("CPU/upd Python / fedcl")
    header += [f"{names[k]} RSS" for k in kinds]
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for (clients, values), results in rows:
        cells = [str(clients), f"{values:,}"]
        cells += [f"{results[k]['updates_per_second']:,.0f}" for k in kinds]
        if "fedcl-off" in kinds and "python" in kinds:
            ratio = results["fedcl-off"]["updates_per_second"] / results["python"][
                "updates_per_second"]
            cells.append(f"{ratio:.1f}x")
        if "fedcl-on" in kinds and "fedcl-off" in kinds:
            on, off = (results[k]["updates_per_second"] for k in ("fedcl-on", "fedcl-off"))
            cells.append(f"{100 * (1 - on / off):.0f}% of upd/s")
        cells += [latency(results[k]) for k in kinds]
        cells += [f"{cpu_ms(results[k], 'server_cpu_seconds'):.3f}" for k in kinds]
        if "fedcl-off" in kinds and "python" in kinds:
            cells.append(f"{cpu_ms(results['python'], 'server_cpu_seconds') / cpu_ms(results['fedcl-off'], 'server_cpu_seconds'):.1f}x")
        cells += [mib(results[k]["peak_rss_kib"]) for k in kinds]
        print("| " + " | ".join(cells) + " |")
    if "fedcl-off" in kinds and "python" in kinds:
        print()
        for nominal, target in ((10_000, 10.0), (1_000_000, 3.0)):
            ratios = [r["fedcl-off"]["updates_per_second"] / r["python"]["updates_per_second"]
                      for (_, values), r in rows if fedcl_module_values(nominal)[0] == values]
            if ratios:
                verdict = "met" if min(ratios) >= target else "NOT met"
                print(f"- target fedcl ≥ {target:.0f}× Python at D ≈ {nominal:,}: {verdict} "
                      f"(lowest {min(ratios):.1f}×)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fedcl-server", default="build/bin/fedcl-server")
    parser.add_argument("--pretrain", default="build/bin/fedcl-pretrain")
    parser.add_argument("--load", default="build/bin/fedcl_submit_load")
    parser.add_argument("--clients", default="8,32,128", help="K values, comma-separated")
    parser.add_argument("--values", default="10000,100000,1000000", help="D values")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-updates", type=int, default=200,
                        help="measure at least this many updates (more rounds for small K)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: K 8,32 × D 10k,100k, 3 rounds, at least 64 updates")
    parser.add_argument("--only-python", action="store_true", help="skip fedcl-server")
    parser.add_argument("--servers", default="python,fedcl-off,fedcl-on",
                        help="which servers to run: python, fedcl-off (journal off), fedcl-on")
    parser.add_argument("--poll-ms", type=int, default=50,
                        help="cap on the ACTION_WAIT delay the clients obey, so that rounds turn "
                             "over quickly whatever delay a server suggests")
    parser.add_argument("--journal-sync", default="full", help="fedcl journal: full or normal")
    parser.add_argument("--work-dir", default="build/bench/server_compare",
                        help="checkpoints, configs, state and logs (on a real disk, not tmpfs)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per load run, seconds")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--raw", help="also write every load report here, one JSON per line")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep fedcl-server's state directories (removed after each run)")
    args = parser.parse_args()
    os.chdir(REPO)
    if args.quick:
        args.clients, args.values, args.rounds, args.min_updates = "8,32", "10000,100000", 3, 64
    ks = [int(k) for k in args.clients.split(",")]
    ds = [int(d) for d in args.values.split(",")]
    kinds = ["python"] if args.only_python else args.servers.split(",")
    if not kinds or any(k not in ("python", "fedcl-off", "fedcl-on") for k in kinds):
        sys.exit(f"--servers: expected some of python, fedcl-off, fedcl-on; got {args.servers}")
    needed = [args.load] + ([args.fedcl_server, args.pretrain] if kinds != ["python"] else [])
    for binary in needed:
        if not os.path.exists(binary):
            sys.exit(f"{binary} not found: build first (see README)")
    work = os.path.abspath(args.work_dir)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)

    raw = open(args.raw, "w") if args.raw else None
    rows = []
    for values in ds:
        exact, _ = fedcl_module_values(values)
        for clients in ks:
            tokens = {1 + i: secrets.token_hex(16) for i in range(clients)}
            token_file = os.path.join(work, f"client-tokens-k{clients}.txt")
            with open(token_file, "w") as f:
                f.writelines(f"{i} {t}\n" for i, t in tokens.items())
            runs = {kind: [] for kind in kinds}
            for _ in range(args.repetitions):
                for kind in kinds:  # alternate, so that drift hits every server alike
                    log(f"K={clients} D={exact:,} {kind} ...")
                    report = run_case(args, work, kind, clients, exact, tokens, token_file)
                    log(f"  {report['updates_per_second']:,.1f} updates/s, latency p50 "
                        f"{report['latency_ms']['p50']:.1f} ms p99 "
                        f"{report['latency_ms']['p99']:.1f} ms, peak RSS "
                        f"{mib(report['peak_rss_kib'])} MiB; CPU per update: server "
                        f"{cpu_ms(report, 'server_cpu_seconds'):.2f} ms, load generator "
                        f"{cpu_ms(report, 'cpu_seconds'):.2f} ms")
                    runs[kind].append(report)
                    if raw:
                        raw.write(json.dumps(report) + "\n")
                        raw.flush()
            rows.append(((clients, exact), {k: median_report(v) for k, v in runs.items()}))
    print_table(rows, kinds, args)


if __name__ == "__main__":
    main()
