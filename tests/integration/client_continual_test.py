#!/usr/bin/python3
"""fedcl-client's continual mode with real processes: pretrains a small ViT, then
  1. fedcl-server with the SEMA pool and two `fedcl-client --method=sema` devices whose streams
     are contrast-inverted from batch 200: both grow for the shift, and the pool keeps one module
     for it at the first expandable block, held by both;
  2. fedcl-server with LAE's adapter and two `fedcl-client --method=lae` devices for 3 rounds.
Each device must exit 0 with its summary line.

  client_continual_test.py FEDCL_PRETRAIN FEDCL_SERVER FEDCL_CLIENT WORK_DIR
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from fedcl_processes import free_port, fresh_work_dir_with_vit  # noqa: E402

SERVER = """
state_dir: "{state}"
backbone_checkpoint: "{checkpoint}"
num_classes: 10
{modules}
round {{ duration_ms: 800 min_participants: 1 }}
journal {{ sync: "normal" }}
"""
SEMA = """module { name: "head" role: "head" }
pool { expandable_blocks: 2 expandable_blocks: 3 base_experts: true round_window: 40 }"""
LAE = """module { name: "adapter" role: "pet" pet { kind: "adapter" adapter_bottleneck: 8
  site_prefixes: "blocks.0" site_prefixes: "blocks.1" } }
module { name: "head" role: "head" }"""


def run(server, client, work, checkpoint, name, modules, flags):
    config = os.path.join(work, f"{name}.textproto")
    state = os.path.join(work, f"{name}-state")
    with open(config, "w") as f:
        f.write(SERVER.format(state=state, checkpoint=checkpoint, modules=modules))
    address = f"127.0.0.1:{free_port()}"
    server_process = subprocess.Popen([server, f"--config={config}", f"--listen={address}"],
                                      stderr=open(os.path.join(work, f"{name}-server.log"), "w"))
    summaries = []
    try:
        devices = [subprocess.Popen(
            [client, f"--server={address}", f"--client_id={d}", "--num_partitions=2",
             f"--state_dir={os.path.join(work, f'{name}-device-{d}')}", "--max_samples=4000",
             "--max_poll=1s"] + flags, stdout=subprocess.PIPE, text=True,
            stderr=open(os.path.join(work, f"{name}-device-{d}.log"), "w")) for d in range(2)]
        for d, p in enumerate(devices):
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, (name, d, out,
                                       open(os.path.join(work, f"{name}-device-{d}.log")).read())
            summaries.append(out)
    finally:
        server_process.terminate()
        server_process.wait(timeout=30)
    lines = [json.loads(l) for l in open(os.path.join(state, "metrics.jsonl"))]
    return summaries, lines


def main(pretrain, server, client, work):
    checkpoint = fresh_work_dir_with_vit(pretrain, work)

    summaries, lines = run(server, client, work, checkpoint, "sema", SEMA,
                           ["--method=sema", "--shift_after=200", "--batches_per_sync=20",
                            "--rounds=24"])
    for out in summaries:
        m = re.search(r"done \(sema\): (\d+) batches, prequential accuracy ([0-9.]+), (\d+) "
                      r"rounds, (\d+) updates acknowledged .* (\d+) adapters", out)
        assert m, out
        assert int(m.group(3)) == 24 and int(m.group(4)) >= 20, out
        assert int(m.group(5)) >= 3, out  # the two base experts and at least one grown
        # 620-820 batches, 200 of them before the inversion, which this short run barely learns:
        # 0.15-0.24 in 3 runs; chance is 0.10 (+-0.002 over the 20,000-26,000 scored images).
        assert float(m.group(2)) > 0.11, out
    pool = lines[-1]["pool"]
    block2 = [m for m in pool.values() if m["block"] == 2]
    assert len(block2) == 1 and block2[0]["holders"] == 2, lines[-1]
    assert lines[-1]["pool_merges"] >= 1, lines[-1]

    summaries, lines = run(server, client, work, checkpoint, "lae", LAE,
                           ["--method=lae", "--batches_per_sync=5", "--rounds=3"])
    for out in summaries:
        m = re.search(r"done \(lae\): \d+ batches, prequential accuracy ([0-9.]+), 3 rounds, "
                      r"3 updates acknowledged", out)
        assert m, out
        assert float(m.group(1)) > 0.25, out  # 0.35-0.40 in 3 runs; chance 0.1
    assert lines[-1]["modules"]["adapter"] >= 1, lines[-1]


if __name__ == "__main__":
    main(*sys.argv[1:])
