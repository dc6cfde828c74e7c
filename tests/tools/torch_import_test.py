"""fedcl-import and fedcl-export against PyTorch (issue 18, item 2).

For each PyTorch twin of fedcl's backbones (tests/bench/torch_models.py: MLP, CNN, ViT), with every
parameter random: save it as safetensors, import it with fedcl-import through a rename map, and
compare fedcl's logits on 100 random images with PyTorch's; then export the imported checkpoint
with fedcl-export, load it back into a fresh twin and compare again (the round trip).

Tolerance: 1e-4 * (1 + max |logit|). fedcl and PyTorch run the same float32 arithmetic in another
order (Eigen's and the BLAS's summation blocking, fused multiply-adds), so logits agree to a few
ulps of their magnitude, not bit for bit. The round trip copies values exactly, so its logits
must be PyTorch's own, bit for bit.

Needs Debian's python3-torch and python3-numpy (/usr/bin/python3); labelled `long` and `torch` in
CTest, so CI (which does not install torch) skips it: run it with `ctest -L torch`.
"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import torch


def save_safetensors(path, tensors):
    """The safetensors layout: 8-byte header length, JSON header, data (float32, C order)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", entry
        b, e = entry["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data[b:e], dtype="<f4").reshape(entry["shape"]).copy())
    return out


def fedcl_name(kind, name):
    """The twin's state_dict key -> fedcl's tensor name (docs/pretraining.md lists fedcl's)."""
    if name.startswith("head."):
        return name
    if kind == "mlp":
        m = re.fullmatch(r"body\.(\d+)\.(weight|bias)", name)
        return f"layers.{int(m.group(1)) // 3}.{m.group(2)}"
    if kind == "cnn":
        m = re.fullmatch(r"body\.(\d+)\.(weight|bias)", name)
        return {0: "conv1", 4: "conv2", 9: "fc"}[int(m.group(1))] + "." + m.group(2)
    name = re.sub(r"^patch_embed\.", "patch_embed.proj.", name)
    name = {"cls": "cls_token", "pos": "pos_embed"}.get(name, name)
    return re.sub(r"^blocks\.(\d+)\.(fc1|fc2)\.", r"blocks.\1.mlp.\2.", name)


DESCRIPTIONS = {
    "mlp": 'backbone: "mlp" mlp { hidden: [256, 128] } num_classes: 10',
    "cnn": 'backbone: "cnn" cnn { conv1_channels: 32 conv2_channels: 32 hidden: 128 } '
           'num_classes: 10',
    "vit": 'backbone: "vit" vit { patch: 7 dim: 64 depth: 4 heads: 4 mlp_ratio: 4 } '
           'num_classes: 10',
}


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fedcl_import", required=True)
    parser.add_argument("--fedcl_export", required=True)
    parser.add_argument("--torch_models", required=True, help="directory of torch_models.py")
    parser.add_argument("--work_dir", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.torch_models)
    import torch_models  # noqa: E402

    os.makedirs(args.work_dir, exist_ok=True)
    torch.manual_seed(7)
    images = torch.rand(100, 1, 28, 28)
    np.save(os.path.join(args.work_dir, "images.npy"), images.reshape(100, 784).numpy())
    failures = []
    for kind in ("mlp", "cnn", "vit"):
        twin = torch_models.build(kind, ssf=False).eval()
        with torch.no_grad():
            for p in twin.parameters():  # every value random: no zero bias or unit weight
                p.copy_(0.3 * torch.randn_like(p))
            expected = twin(images)
        state = twin.state_dict()
        base = os.path.join(args.work_dir, kind)
        save_safetensors(base + ".safetensors", {f"model.{k}": v for k, v in state.items()})
        with open(base + ".map", "w") as f:
            for k in state:
                f.write(f"model.{k} {fedcl_name(kind, k)}\n")
        run([args.fedcl_import, f"--safetensors={base}.safetensors", f"--rename_map={base}.map",
             f"--model={DESCRIPTIONS[kind]}", f"--output={base}.ckpt",
             f"--logits_for={args.work_dir}/images.npy", f"--logits_out={base}.logits.npy"])
        got = torch.from_numpy(np.load(base + ".logits.npy"))
        imported = (got - expected).abs().max().item()
        tolerance = 1e-4 * (1 + expected.abs().max().item())

        run([args.fedcl_export, f"--checkpoint={base}.ckpt", f"--output={base}.rt.safetensors"])
        back = load_safetensors(base + ".rt.safetensors")
        reverse = {fedcl_name(kind, k): k for k in state}
        fresh = torch_models.build(kind, ssf=False).eval()
        fresh.load_state_dict({reverse[name]: t.reshape(state[reverse[name]].shape)
                               for name, t in back.items()})
        with torch.no_grad():
            round_trip = (fresh(images) - expected).abs().max().item()
        print(f"{kind}: max |logit difference| after import {imported:.3g} "
              f"(tolerance {tolerance:.3g}, max |logit| {expected.abs().max().item():.3g}), "
              f"after the round trip back into PyTorch {round_trip:.3g}")
        if not imported <= tolerance:
            failures.append(f"{kind}: import differs by {imported} > {tolerance}")
        if round_trip != 0.0:
            failures.append(f"{kind}: the round trip differs by {round_trip}")
    if failures:
        sys.exit("\n".join(failures))
    print(f"torch {torch.__version__}; all three backbones within tolerance")


if __name__ == "__main__":
    main()
