#!/usr/bin/python3
"""The installed SDK used from outside fedcl's tree.

1. `cmake --install <build> --prefix <tmp> --component sdk`: the headers, libfedcl_client.so and
   .a, the CMake package and fedcl.pc land where they should.
2. tests/sdk/external (find_package(fedcl), fedcl::client and fedcl::client_static) configures
   with CMAKE_PREFIX_PATH=<tmp>, builds with Ninja and runs.
3. client/examples/device_loop.c builds with `cc $(pkg-config --cflags --libs fedcl)` against the
   shared library and with `pkg-config --static` against the archive; both start and print their
   usage.
4. The shared library exports the C and C++ APIs and nothing of fedcl's internals.
5. Against a running fedcl-server (127.0.0.1, plaintext, a backbone fedcl-pretrain makes in a
   few seconds): the pkg-config-built C example and the find_package-built C++ app each learn,
   sync and get an update acknowledged.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

SERVER_CONFIG = """state_dir: "{state}"
backbone_checkpoint: "{backbone}"
num_classes: 10
module {{ name: "adapter" role: "pet" pet {{ kind: "adapter" adapter_bottleneck: 8 site_prefixes: "blocks.2" site_prefixes: "blocks.3" }} }}
module {{ name: "head" role: "head" }}
round {{ duration_ms: 800 min_participants: 1 }}
journal {{ sync: "normal" }}
"""


def start_server(args):
    """Starts fedcl-server on 127.0.0.1:0; returns (process, address, the backbone it serves)."""
    backbone = os.path.join(args.work_dir, "vit.ckpt")
    run([args.pretrain, "--model=vit", "--epochs=1", "--train_end=512", f"--output={backbone}",
         f"--data_dir={args.data_dir}"])
    config = os.path.join(args.work_dir, "server.textproto")
    with open(config, "w") as f:
        f.write(SERVER_CONFIG.format(state=os.path.join(args.work_dir, "server"),
                                     backbone=backbone))
    log = open(os.path.join(args.work_dir, "server.log"), "w+")
    server = subprocess.Popen([args.server, f"--config={config}", "--listen=127.0.0.1:0"],
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        found = re.search(r"listening on (\S+)", log.read())
        if found:
            return server, found.group(1), backbone
        if server.poll() is not None:
            break
        time.sleep(0.1)
    server.kill()
    log.seek(0)
    sys.exit("FAILED: fedcl-server did not start:\n" + log.read())


def run(argv, env=None, expect=0, cwd=None):
    """Runs argv; fails the test unless the exit status is `expect`. Returns stdout+stderr."""
    started = time.monotonic()
    result = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=240)
    print(f"$ {' '.join(argv)}  [{time.monotonic() - started:.1f} s, exit {result.returncode}]")
    if result.returncode != expect:
        print(result.stdout)
        sys.exit(f"FAILED: exit status {result.returncode}, expected {expect}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser()
    for flag in ("cmake", "ninja", "cxx", "cc", "build_dir", "libdir", "project", "c_example",
                 "work_dir", "server", "pretrain", "data_dir"):
        parser.add_argument(f"--{flag}", required=True)
    args = parser.parse_args()

    shutil.rmtree(args.work_dir, ignore_errors=True)
    prefix = os.path.join(args.work_dir, "prefix")
    libdir = os.path.join(prefix, args.libdir)
    run([args.cmake, "--install", args.build_dir, "--prefix", prefix, "--component", "sdk"])
    for path in ("include/fedcl/client.h", "include/fedcl/fedcl_c.h",
                 f"{args.libdir}/libfedcl_client.so", f"{args.libdir}/libfedcl_client.so.0",
                 f"{args.libdir}/libfedcl_client.a", f"{args.libdir}/cmake/fedcl/fedclConfig.cmake",
                 f"{args.libdir}/cmake/fedcl/fedclConfigVersion.cmake",
                 f"{args.libdir}/pkgconfig/fedcl.pc"):
        if not os.path.exists(os.path.join(prefix, path)):
            sys.exit(f"FAILED: {path} was not installed")

    env = dict(os.environ, LD_LIBRARY_PATH=libdir,
               PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))

    # The CMake package.
    build = os.path.join(args.work_dir, "build")
    run([args.cmake, "-S", args.project, "-B", build, "-G", "Ninja",
         f"-DCMAKE_MAKE_PROGRAM={args.ninja}", f"-DCMAKE_CXX_COMPILER={args.cxx}",
         f"-DCMAKE_C_COMPILER={args.cc}", f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DCMAKE_BUILD_TYPE=Release"], env=env)
    run([args.cmake, "--build", build], env=env)
    for app in ("app", "app_static"):
        out = run([os.path.join(build, app)], env=env)
        if "ok" not in out.split():
            sys.exit(f"FAILED: {app} did not print ok:\n{out}")
    # The shared app found libfedcl_client.so.0 in the prefix; the static one needs no fedcl .so.
    ldd = run(["ldd", os.path.join(build, "app")], env=env)
    if os.path.join(libdir, "libfedcl_client.so.0") not in ldd:
        sys.exit(f"FAILED: app does not load the installed library:\n{ldd}")
    if "libfedcl_client" in run(["ldd", os.path.join(build, "app_static")], env=env):
        sys.exit("FAILED: app_static loads libfedcl_client.so")

    # pkg-config, from C.
    cflags = run(["pkg-config", "--cflags", "fedcl"], env=env).split()
    libs = run(["pkg-config", "--libs", "fedcl"], env=env).split()
    shared_c = os.path.join(args.work_dir, "device_loop")
    run([args.cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", shared_c, args.c_example]
        + cflags + libs + ["-lz"], env=env)
    usage = run([shared_c], env=env, expect=2)
    if "usage: device_loop" not in usage:
        sys.exit(f"FAILED: device_loop did not print its usage:\n{usage}")
    static_libs = run(["pkg-config", "--static", "--libs", "fedcl"], env=env).split()
    static_libs = ["-l:libfedcl_client.a" if f == "-lfedcl_client" else f for f in static_libs]
    static_c = os.path.join(args.work_dir, "device_loop_static")
    run([args.cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", static_c, args.c_example]
        + cflags + static_libs + ["-lz"], env=env)
    run([static_c], env=env, expect=2)

    # What the shared library exports.
    symbols = run(["nm", "-D", "--defined-only", "-C",
                   os.path.join(libdir, "libfedcl_client.so")]).splitlines()
    exported = [line.split(" ", 2)[2] for line in symbols if len(line.split(" ", 2)) == 3]
    for needed in ("fedcl_client_create", "fedcl_version", "fedcl::Client::Create(",
                   "fedcl::SyncStageName("):
        if not any(name.startswith(needed) for name in exported):
            sys.exit(f"FAILED: libfedcl_client.so does not export {needed}")
    allowed = ("fedcl_", "fedcl::Client::", "fedcl::SyncStageName(", "FEDCL_0")
    leaked = [name for name in exported if not name.startswith(allowed)]
    if leaked:
        sys.exit("FAILED: libfedcl_client.so exports internals:\n" + "\n".join(leaked[:20]))
    if any(name.startswith("fedcl::Client::Impl") for name in exported):
        sys.exit("FAILED: libfedcl_client.so exports fedcl::Client::Impl")
    print(f"OK: {len(exported)} exported symbols")

    # Both programs against a running server.
    if not os.path.exists(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")):
        print("no Fashion-MNIST: skipping the runs against a server")
        return
    server, address, backbone = start_server(args)
    try:
        out = run([shared_c, f"--server={address}", "--client_id=0",
                   f"--storage_dir={os.path.join(args.work_dir, 'device-c')}",
                   f"--backbone={backbone}",
                   f"--images={args.data_dir}/train-images-idx3-ubyte.gz",
                   f"--labels={args.data_dir}/train-labels-idx1-ubyte.gz",
                   "--samples=256", "--batch=32", "--sync_every=2", "--rounds=1",
                   "--max_seconds=60"], env=env)
        if "submissions=1" not in out:
            sys.exit(f"FAILED: the C example made no acknowledged submission:\n{out}")
        out = run([os.path.join(build, "app"), address, backbone], env=env)
        if "ok" not in out.split():
            sys.exit(f"FAILED: app did not sync with the server:\n{out}")
        print("OK: the C example and the C++ app synced with fedcl-server")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
