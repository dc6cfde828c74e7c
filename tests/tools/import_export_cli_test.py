"""fedcl-import and fedcl-export as a user runs them, with nothing but Python's standard library
(CI has no numpy or torch; torch_import_test.py compares against PyTorch itself).

A small MLP (2x3 RGB images, 5 hidden units, 3 classes) written as safetensors under PyTorch-style
names: fedcl-import through a rename map gives the logits computed here in double precision (within
1e-5); fedcl-export of the checkpoint gives back the same values bit for bit, with the model's
description, so fedcl-import needs no --model for it; a file lacking a tensor fails with exit code 1,
names the tensor, and writes nothing; bad flags exit with 2.
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys


def safetensors(tensors):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def read_safetensors(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, entry in header.items():
        if name != "__metadata__":
            b, e = entry["data_offsets"]
            out[name] = list(struct.unpack(f"<{(e - b) // 4}f", raw[8 + n + b:8 + n + e]))
    return out, header.get("__metadata__", {})


def npy(rows, cols, values):
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + \
        struct.pack(f"<{len(values)}f", *values)


def read_npy(raw):
    (n,) = struct.unpack("<H", raw[8:10])
    body = raw[10 + n:]
    return list(struct.unpack(f"<{len(body) // 4}f", body))


def run(cmd, expect):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != expect:
        sys.exit(f"{' '.join(cmd)}: exit {done.returncode}, expected {expect}\n{done.stdout}{done.stderr}")
    return done


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fedcl_import", required=True)
    parser.add_argument("--fedcl_export", required=True)
    parser.add_argument("--work_dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    path = lambda name: os.path.join(args.work_dir, name)  # noqa: E731
    rng = random.Random(5)
    inputs, hidden, classes, n = 18, 5, 3, 4
    w1 = [rng.gauss(0, 0.5) for _ in range(hidden * inputs)]
    b1 = [rng.gauss(0, 0.5) for _ in range(hidden)]
    w2 = [rng.gauss(0, 0.5) for _ in range(classes * hidden)]
    b2 = [rng.gauss(0, 0.5) for _ in range(classes)]
    tensors = {"net.0.weight": ([hidden, inputs], w1), "net.0.bias": ([hidden], b1),
               "out.weight": ([classes, hidden], w2), "out.bias": ([classes], b2)}
    with open(path("model.safetensors"), "wb") as f:
        f.write(safetensors(tensors))
    with open(path("names.txt"), "w") as f:
        f.write("# PyTorch name, fedcl name\nnet.0.weight layers.0.weight\nnet.0.bias layers.0.bias\n"
                "out.weight head.weight\nout.bias head.bias\n")
    images = [rng.random() for _ in range(n * inputs)]
    with open(path("images.npy"), "wb") as f:
        f.write(npy(n, inputs, images))
    description = ('backbone: "mlp" mlp { hidden: [5] } image_channels: 3 image_height: 2 '
                   'image_width: 3 num_classes: 3')
    run([args.fedcl_import, f"--safetensors={path('model.safetensors')}",
         f"--rename_map={path('names.txt')}", f"--model={description}",
         f"--output={path('model.ckpt')}", f"--logits_for={path('images.npy')}",
         f"--logits_out={path('logits.npy')}"], 0)
    with open(path("logits.npy"), "rb") as f:
        got = read_npy(f.read())
    worst = 0.0
    for i in range(n):
        x = images[i * inputs:(i + 1) * inputs]
        h = [max(0.0, b1[j] + sum(w1[j * inputs + k] * x[k] for k in range(inputs)))
             for j in range(hidden)]
        for c in range(classes):
            expected = b2[c] + sum(w2[c * hidden + j] * h[j] for j in range(hidden))
            worst = max(worst, abs(got[i * classes + c] - expected))
    if worst > 1e-5:
        sys.exit(f"imported logits differ from the reference by {worst}")

    run([args.fedcl_export, f"--checkpoint={path('model.ckpt')}",
         f"--output={path('back.safetensors')}"], 0)
    with open(path("back.safetensors"), "rb") as f:
        back, metadata = read_safetensors(f.read())
    renamed = {"layers.0.weight": w1, "layers.0.bias": b1, "head.weight": w2, "head.bias": b2}
    for name, values in renamed.items():
        if back.get(name) != [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]:
            sys.exit(f"the export's {name} is not the imported values")
    if "fedcl.model_config" not in metadata:
        sys.exit("the export does not describe its model")
    run([args.fedcl_import, f"--safetensors={path('back.safetensors')}",
         f"--output={path('again.ckpt')}"], 0)

    del tensors["out.bias"]
    with open(path("lacking.safetensors"), "wb") as f:
        f.write(safetensors(tensors))
    refused = run([args.fedcl_import, f"--safetensors={path('lacking.safetensors')}",
                   f"--rename_map={path('names.txt')}", f"--model={description}",
                   f"--output={path('lacking.ckpt')}"], 1)
    if "head.bias" not in refused.stderr or os.path.exists(path("lacking.ckpt")):
        sys.exit(f"a file lacking head.bias: {refused.stderr!r}, output written: "
                 f"{os.path.exists(path('lacking.ckpt'))}")
    run([args.fedcl_import, "--output=x.ckpt"], 2)
    run([args.fedcl_export, f"--checkpoint={path('model.ckpt')}"], 2)
    print(f"import within {worst:.2g} of the reference logits; export exact; refusals as expected")


if __name__ == "__main__":
    main()
