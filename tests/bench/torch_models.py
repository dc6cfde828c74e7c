"""PyTorch twins of fedcl's backbones, for the side-by-side speed comparison.

Each model mirrors core/nn exactly (layer order, sizes, where SSF sits), so both sides do the
same arithmetic. Run only through torch_compare.py.
"""
import torch
from torch import nn


class Ssf(nn.Module):
    """x * gamma + beta over the last dim, or per channel (dim 1) for NCHW maps."""

    def __init__(self, dim, channel_dim=-1):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim) + 0.02 * torch.randn(dim))
        self.shift = nn.Parameter(0.02 * torch.randn(dim))
        self.channel_dim = channel_dim

    def forward(self, x):
        if self.channel_dim == 1:
            return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        return x * self.scale + self.shift


def maybe_ssf(enabled, dim, channel_dim=-1):
    return Ssf(dim, channel_dim) if enabled else nn.Identity()


class Mlp(nn.Module):
    def __init__(self, hidden=(256, 128), classes=10, ssf=False):
        super().__init__()
        layers, width = [], 784
        for h in hidden:
            layers += [nn.Linear(width, h), maybe_ssf(ssf, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


class Cnn(nn.Module):
    """The FedAU reference CNN for Fashion-MNIST."""

    def __init__(self, classes=10, ssf=False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), maybe_ssf(ssf, 32, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), maybe_ssf(ssf, 32, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1568, 128), maybe_ssf(ssf, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        return self.head(self.body(x.view(-1, 1, 28, 28)))


class Attention(nn.Module):
    def __init__(self, dim, heads, ssf):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.qkv_ssf = maybe_ssf(ssf, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_ssf = maybe_ssf(ssf, dim)

    def forward(self, x):
        b, t, d = x.shape
        qkv = self.qkv_ssf(self.qkv(x)).reshape(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj_ssf(self.proj(out))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, ssf):
        super().__init__()
        self.norm1, self.norm1_ssf = nn.LayerNorm(dim), maybe_ssf(ssf, dim)
        self.attn = Attention(dim, heads, ssf)
        self.norm2, self.norm2_ssf = nn.LayerNorm(dim), maybe_ssf(ssf, dim)
        hidden = dim * mlp_ratio
        self.fc1, self.fc1_ssf = nn.Linear(dim, hidden), maybe_ssf(ssf, hidden)
        self.fc2, self.fc2_ssf = nn.Linear(hidden, dim), maybe_ssf(ssf, dim)
        self.act = nn.GELU()

    def forward(self, x):
        x = x + self.attn(self.norm1_ssf(self.norm1(x)))
        h = self.act(self.fc1_ssf(self.fc1(self.norm2_ssf(self.norm2(x)))))
        return x + self.fc2_ssf(self.fc2(h))


class Vit(nn.Module):
    """Small ViT for 28x28: patch 7 -> 16 tokens + CLS, pre-LN blocks, head on CLS."""

    def __init__(self, dim=64, depth=4, heads=4, mlp_ratio=4, patch=7, classes=10, ssf=False):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Linear(patch * patch, dim)
        self.patch_ssf = maybe_ssf(ssf, dim)
        tokens = (28 // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, ssf) for _ in range(depth)])
        self.norm, self.norm_ssf = nn.LayerNorm(dim), maybe_ssf(ssf, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        b, p = x.shape[0], self.patch
        g = 28 // p
        patches = x.view(b, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(b, g * g, p * p)
        tok = self.patch_ssf(self.patch_embed(patches))
        tok = torch.cat([self.cls.expand(b, -1, -1), tok], dim=1) + self.pos
        tok = self.norm_ssf(self.norm(self.blocks(tok)))
        return self.head(tok[:, 0])


def build(name, ssf):
    return {"mlp": Mlp, "cnn": Cnn, "vit": Vit}[name](ssf=ssf)


def freeze_for_ssf(model):
    """Backbone frozen; only SSF parameters and the head train."""
    for pname, param in model.named_parameters():
        param.requires_grad = ".scale" in pname or ".shift" in pname or pname.startswith("head.")
