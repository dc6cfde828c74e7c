#!/usr/bin/python3
"""Side-by-side training and inference throughput: fedcl against PyTorch 1.13 on one CPU thread.

Usage (from the repository root, after building):
    /usr/bin/python3 tests/bench/torch_compare.py [--fedcl build/bin/fedcl_train_step_benchmark]
        [--repetitions 5] [--seconds 1.0] [--filter vit]

What it does:
  * installs what the comparison needs, if missing: Debian's python3-torch and the OpenBLAS
    system BLAS (libopenblas0-pthread), and selects OpenBLAS as libblas.so.3, so that PyTorch runs
    its matrix products at their best rather than on the reference BLAS python3-torch pulls in;
  * pins both sides to one thread (OMP/OpenBLAS/torch threads = 1; fedcl's core is single-threaded);
  * for every case <backbone>/<mode>/<batch> runs fedcl's Google Benchmark and the PyTorch twin
    (torch_models.py) alternately, `--repetitions` times each, so drift hits both sides alike;
  * prints the median samples/second of each side and the ratio fedcl / PyTorch.

Modes: ssf = frozen backbone, SSF at every site + head trainable; full = everything trainable;
infer = forward only (torch.no_grad). A training step is forward, cross-entropy, backward and
SGD(momentum 0.9) on both sides.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
BLAS_ALTERNATIVE = "libblas.so.3-x86_64-linux-gnu"


def ensure_environment():
    """Installs python3-torch and OpenBLAS if needed and selects OpenBLAS as the system BLAS."""
    need = []
    try:
        import torch  # noqa: F401
    except ImportError:
        need.append("python3-torch")
    if not os.path.exists(OPENBLAS):
        need.append("libopenblas0-pthread")
    if need:
        print(f"installing {' '.join(need)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *need], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        if "python3-torch" in need:
            # torch was imported by a fresh process below; re-exec so this one sees it.
            os.execv(sys.executable, [sys.executable] + sys.argv)
    current = subprocess.run(["update-alternatives", "--query", BLAS_ALTERNATIVE],
                             capture_output=True, text=True).stdout
    if f"Value: {OPENBLAS}" not in current:
        subprocess.run(["update-alternatives", "--set", BLAS_ALTERNATIVE, OPENBLAS], check=True,
                       stdout=subprocess.DEVNULL)


def torch_setup():
    import torch
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, HERE)
    import torch_models
    return torch, torch_models


def torch_case(torch, torch_models, backbone, mode, batch, seconds):
    """Median-free single measurement: samples/second over `seconds` of steps after warm-up."""
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


def fedcl_case(binary, name, seconds):
    out = subprocess.run(
        [binary, f"--benchmark_filter=^{name}/", f"--benchmark_min_time={seconds}",
         "--benchmark_format=json"], capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    runs = [b for b in report["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    return runs[0]["items_per_second"], report["context"].get("fedcl_isa", "unknown")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fedcl", default="build/bin/fedcl_train_step_benchmark")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    args = parser.parse_args()
    if not os.path.exists(args.fedcl):
        sys.exit(f"{args.fedcl} not found: build first (see README)")

    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    ensure_environment()
    torch, torch_models = torch_setup()

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
            theirs.append(torch_case(torch, torch_models, backbone, mode, batch, args.seconds))
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append((name, a, b))
        print(f"  {name:16s} fedcl {a:10.0f}  torch {b:10.0f}  x{a / b:5.2f}", file=sys.stderr)

    print(f"\nfedcl ({isa}) vs PyTorch {torch.__version__} + OpenBLAS, 1 thread, "
          f"median of {args.repetitions} runs, samples/second\n")
    print("| case (backbone/mode/batch) | fedcl | PyTorch | fedcl / PyTorch |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
