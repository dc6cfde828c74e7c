"""What the Python tests that run fedcl's binaries as processes share: a free loopback port and a
small pretrained ViT in a fresh work directory."""
import os
import shutil
import socket
import subprocess


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_work_dir_with_vit(pretrain, work):
    """Empties `work` and pretrains a small ViT there (1 epoch on 3,000 images); its path."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    checkpoint = os.path.join(work, "vit.ckpt")
    subprocess.run([pretrain, "--model=vit", "--epochs=1", "--train_end=3000",
                    f"--output={checkpoint}", "--progress_interval=0"], check=True, timeout=300,
                   capture_output=True)
    return checkpoint
