#!/usr/bin/python3
"""Side-by-side training and inference throughput: fedcl against PyTorch 1.13 on one CPU thread.

Usage (from the repository root, after building; as root, to install and switch the BLAS):
    /usr/bin/python3 tests/bench/torch_compare.py [--fedcl build/bin/fedcl_train_step_benchmark]
        [--repetitions 5] [--seconds 1.0] [--filter vit] [--no-require-openblas]

What it does:
  * installs what the comparison needs, if missing: Debian's python3-torch and the OpenBLAS
    system BLAS (libopenblas0-pthread), and selects OpenBLAS as libblas.so.3 (update-alternatives),
    so that PyTorch runs its matrix products at their best rather than on the reference BLAS
    python3-torch pulls in;
  * this process never imports torch: PyTorch runs in a worker process (this script with
    --worker) started only after the switch, so the worker's dynamic loader resolves libblas.so.3
    to whatever the alternative points at *then*. (Importing torch before the switch would map
    the reference BLAS for the rest of the process and make fedcl look 10-20x faster.)
  * the worker runs one torch.mm, then reports the library sgemm_ resolves to from libtorch_cpu
    and the BLAS/LAPACK libraries mapped (/proc/self/maps, resolved paths); both are printed in
    the results' header, and the run stops with a non-zero exit unless sgemm_ is OpenBLAS's and
    no file of the reference BLAS is mapped (unless --no-require-openblas);
  * pins both sides to one thread (OMP/OpenBLAS/MKL threads = 1, torch intra/inter-op threads = 1;
    fedcl's core is single-threaded);
  * for every case <backbone>/<mode>/<batch> runs fedcl's Google Benchmark and the PyTorch twin
    (torch_models.py) alternately, `--repetitions` times each, so drift hits both sides alike;
  * prints the median samples/second of each side and the ratio fedcl / PyTorch.

Modes: ssf = frozen backbone, SSF at every site + head trainable; full = everything trainable;
infer = forward only (torch.no_grad). A training step is forward, cross-entropy, backward and
SGD(momentum 0.9) on both sides.
"""
import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
REFERENCE_BLAS = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
BLAS_ALTERNATIVE = "libblas.so.3-x86_64-linux-gnu"
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BLAS_LIBRARY = re.compile(r"blas|lapack|mkl", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Parent: environment, fedcl runs, worker control. Never imports torch.
# --------------------------------------------------------------------------------------------

def blas_alternative():
    """The path libblas.so.3 currently points at, per update-alternatives ('' if unknown)."""
    query = subprocess.run(["update-alternatives", "--query", BLAS_ALTERNATIVE],
                           capture_output=True, text=True).stdout
    match = re.search(r"^Value: (.*)$", query, re.MULTILINE)
    return match.group(1).strip() if match else ""


def ensure_environment():
    """Installs python3-torch and OpenBLAS if needed and selects OpenBLAS as the system BLAS.

    Runs before any process imports torch; checks for torch without importing it.
    """
    need = []
    if importlib.util.find_spec("torch") is None:
        need.append("python3-torch")
    if not os.path.exists(OPENBLAS):
        need.append("libopenblas0-pthread")
    if need:
        print(f"installing {' '.join(need)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *need], check=True,
                       env=env, stdout=subprocess.DEVNULL)
    before = blas_alternative()
    if before != OPENBLAS:
        done = subprocess.run(["update-alternatives", "--set", BLAS_ALTERNATIVE, OPENBLAS],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"warning: could not select OpenBLAS as libblas.so.3 (needs root): "
                  f"{done.stderr.strip()}", file=sys.stderr)
        else:
            print(f"libblas.so.3: switched {before or '(unset)'} -> {OPENBLAS}", file=sys.stderr)
    return before


def fedcl_case(binary, name, seconds):
    out = subprocess.run(
        [binary, f"--benchmark_filter=^{name}/", f"--benchmark_min_time={seconds}",
         "--benchmark_format=json"], capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    runs = [b for b in report["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    return runs[0]["items_per_second"], report["context"].get("fedcl_isa", "unknown")


class Worker:
    """The PyTorch side: this script with --worker, one JSON request/reply per line."""

    def __init__(self):
        env = dict(os.environ, **THREAD_ENV)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            sys.exit(f"PyTorch worker exited ({code}) without replying; see its stderr above")
        return json.loads(line)

    def measure(self, backbone, mode, batch, seconds):
        self.proc.stdin.write(json.dumps(
            {"backbone": backbone, "mode": mode, "batch": batch, "seconds": seconds}) + "\n")
        self.proc.stdin.flush()
        return self._read()["samples_per_second"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def describe_blas(hello):
    """Header lines naming the BLAS PyTorch actually uses, and whether it is OpenBLAS.

    The verdict rests on the library sgemm_ resolves to from libtorch_cpu (OpenBLAS's
    liblapack.so.3 maps libopenblas even when libblas.so.3 is the reference one), and any mapped
    file from the reference BLAS's directory counts against it.
    """
    mapped, provider = hello["mapped_blas"], hello["sgemm_provider"]
    reference_dir = os.path.dirname(REFERENCE_BLAS)
    reference = any(os.path.dirname(path) == reference_dir for path in mapped + [provider])
    if provider:
        openblas = "openblas" in provider
    else:
        openblas = any("openblas" in os.path.dirname(path) and
                       os.path.basename(path).startswith("libblas") for path in mapped)
    lines = [f"PyTorch's BLAS (worker, after torch.mm): sgemm_ from "
             f"{provider or '(could not resolve sgemm_)'}",
             f"  mapped blas/lapack/mkl libraries (/proc/self/maps): "
             f"{', '.join(mapped) if mapped else '(none)'}"]
    if hello.get("build_blas"):
        lines.append(f"  PyTorch build configuration: {hello['build_blas']}")
    return lines, openblas and not reference


# --------------------------------------------------------------------------------------------
# Worker: imports torch, reports the BLAS it mapped, then measures on request.
# --------------------------------------------------------------------------------------------

def mapped_files():
    """Resolved paths of the files mapped into this process, in first-mapped order."""
    seen = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                path = fields[5].strip()
                if path not in seen:
                    seen.append(path)
    return seen


def sgemm_provider(mapped_files):
    """Resolved path of the library sgemm_ comes from, looked up as libtorch_cpu sees it ('' if
    that fails): dlsym on libtorch_cpu's handle searches it and its dependencies in load order."""
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        torch_cpu = next(p for p in mapped_files if os.path.basename(p).startswith("libtorch_cpu"))
        handle = ctypes.CDLL(torch_cpu, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        address = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
        info = DlInfo()
        if not ctypes.CDLL(None).dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
            return ""
        return os.path.realpath(info.dli_fname.decode())
    except (StopIteration, OSError, AttributeError):
        return ""


def build_blas_config(torch):
    """BLAS_INFO / LAPACK_INFO from torch.__config__.show() (what it was built against)."""
    config = torch.__config__.show()
    found = re.findall(r"(BLAS_INFO|LAPACK_INFO)=([^,\s]+)", config)
    return ", ".join(f"{k}={v}" for k, v in found)


def torch_case(torch, torch_models, backbone, mode, batch, seconds):
    """Single measurement: samples/second over `seconds` of steps after warm-up."""
    torch.manual_seed(0)
    model = torch_models.build(backbone, ssf=(mode == "ssf"))
    if mode == "ssf":
        torch_models.freeze_for_ssf(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 784)
    y = torch.randint(0, 10, (batch,))

    def step():
        if mode == "infer":
            with torch.no_grad():
                model(x)
            return
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        step()
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * batch / elapsed


def worker_main():
    # Replies go to the original stdout; anything else printed (Python or C) goes to stderr.
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, HERE)
    import torch_models

    a = torch.randn(256, 256)
    torch.mm(a, a)
    files = mapped_files()
    reply.write(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mapped_blas": [p for p in files if BLAS_LIBRARY.search(os.path.basename(p))],
        "sgemm_provider": sgemm_provider(files),
        "build_blas": build_blas_config(torch),
    }) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        value = torch_case(torch, torch_models, request["backbone"], request["mode"],
                           request["batch"], request["seconds"])
        reply.write(json.dumps({"samples_per_second": value}) + "\n")


# --------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fedcl", default="build/bin/fedcl_train_step_benchmark")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--require-openblas", action=argparse.BooleanOptionalAction,
                        default=True, help="exit non-zero unless PyTorch's sgemm_ is OpenBLAS's "
                        "(and no reference-BLAS file is mapped); default on")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main()
        return
    if not os.path.exists(args.fedcl):
        sys.exit(f"{args.fedcl} not found: build first (see README)")

    os.environ.update(THREAD_ENV)
    ensure_environment()
    worker = Worker()  # started only now, after the switch
    try:
        blas_lines, is_openblas = describe_blas(worker.hello)
        for line in blas_lines:
            print(line, file=sys.stderr)
        if not is_openblas:
            message = ("PyTorch is not running on OpenBLAS (see sgemm_ above): its "
                       "numbers would be those of the reference BLAS, several times slower. "
                       f"Select it with: update-alternatives --set {BLAS_ALTERNATIVE} {OPENBLAS} "
                       "(as root), and check LD_LIBRARY_PATH / LD_PRELOAD")
            if args.require_openblas:
                sys.exit(f"error: {message}")
            print(f"WARNING: {message}", file=sys.stderr)

        cases = [(b, m, n) for b in ("mlp", "cnn", "vit") for m in ("ssf", "full", "infer")
                 for n in (16, 128)]
        cases = [c for c in cases if args.filter in "/".join(map(str, c))]
        isa = "unknown"
        rows = []
        for backbone, mode, batch in cases:
            name = f"{backbone}/{mode}/{batch}"
            ours, theirs = [], []
            for _ in range(args.repetitions):
                value, isa = fedcl_case(args.fedcl, name, args.seconds)
                ours.append(value)
                theirs.append(worker.measure(backbone, mode, batch, args.seconds))
            a, b = statistics.median(ours), statistics.median(theirs)
            rows.append((name, a, b))
            print(f"  {name:16s} fedcl {a:10.0f}  torch {b:10.0f}  x{a / b:5.2f}",
                  file=sys.stderr)
    finally:
        worker.close()

    blas_name = "OpenBLAS" if is_openblas else "NOT OpenBLAS"
    print(f"\nfedcl ({isa}) vs PyTorch {worker.hello['torch']} + {blas_name}, 1 thread, "
          f"median of {args.repetitions} runs, samples/second")
    for line in blas_lines:
        print(line)
    print()
    print("| case (backbone/mode/batch) | fedcl | PyTorch | fedcl / PyTorch |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
