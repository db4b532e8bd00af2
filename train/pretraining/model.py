"""VideoMAE-style masked autoencoder built from timm `Block`s.

Data flow (shapes: B batch, C=3, T frames, H=W input pixels, N = t*h*w tokens with
t = T/tubelet, h = H/patch, w = W/patch, D encoder width, Dd decoder width):

    video (B,C,T,H,W) -> patch_embed.proj Conv3d -> tokens (B,N,D) + fixed sin-cos positions
    keep the visible tokens (B,Nv,D) -> encoder blocks -> (B,Nv,D)
    -> decoder_embed (B,Nv,Dd), append mask tokens (B,Nm,Dd), add decoder positions
    -> decoder blocks -> head(s) on the masked tokens -> (B,Nm,out_dim)

The output is one tensor whatever the target: a target with several heads (MME: trajectory
and HOG, `Head`) gets them side by side on the same decoder output, concatenated along C in
the order the target lists them (the order of its `build`'s channels).

Token order is (t, h, w) row-major, the order masks (`train/masks`) and targets
(`train/targets`) use. Predictions come out for masked tokens in increasing token index,
the same order as `target[mask]`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block


@dataclass(frozen=True)
class ModelSize:
    dim: int
    depth: int
    heads: int
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    mlp_ratio: float = 4.0


MODELS: dict[str, ModelSize] = {
    # tests and the CPU demo; not a published size
    "vit_pico": ModelSize(dim=64, depth=2, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2),
    "vit_tiny": ModelSize(dim=192, depth=12, heads=3, decoder_dim=96, decoder_depth=4, decoder_heads=3),
    "vit_small": ModelSize(dim=384, depth=12, heads=6, decoder_dim=192, decoder_depth=4, decoder_heads=3),
    "vit_base": ModelSize(dim=768, depth=12, heads=12, decoder_dim=384, decoder_depth=4, decoder_heads=6),
    "vit_large": ModelSize(dim=1024, depth=24, heads=16, decoder_dim=512, decoder_depth=4, decoder_heads=8),
}


@dataclass(frozen=True)
class Head:
    """One prediction head on the decoder output: `dim` values per masked token."""
    name: str
    dim: int
    hidden: int = 0     # 0: one Linear (VideoMAE); > 0: Linear -> GELU -> Linear (MME's heads)
    act: str = ""       # output activation, an ACTIVATIONS key

    def to_dict(self) -> dict:
        return asdict(self)


ACTIVATIONS: dict[str, type[nn.Module]] = {"": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
HeadsSpec = int | Sequence[Head] | Sequence[dict]


def as_heads(spec: HeadsSpec) -> tuple[Head, ...]:
    """An int (one Linear head of that size, checkpoints before heads were stored), Heads, or
    their dicts (as stored in a checkpoint) -> a tuple of Head."""
    if isinstance(spec, int):
        return (Head("out", spec),)
    return tuple(h if isinstance(h, Head) else Head(**h) for h in spec)


def make_head(in_dim: int, head: Head) -> nn.Module:
    if head.act not in ACTIVATIONS:
        raise KeyError(f"unknown head activation {head.act!r}; known: {', '.join(map(repr, ACTIVATIONS))}")
    if head.hidden <= 0 and not head.act:
        return nn.Linear(in_dim, head.dim)
    layers = ([nn.Linear(in_dim, head.hidden), nn.GELU(), nn.Linear(head.hidden, head.dim)] if head.hidden > 0
              else [nn.Linear(in_dim, head.dim)])
    return nn.Sequential(*layers, ACTIVATIONS[head.act]())


class Heads(nn.Module):
    """Several heads on the same decoder output, concatenated along C in order."""

    def __init__(self, in_dim: int, heads: Sequence[Head]):
        super().__init__()
        self.heads = nn.ModuleDict({h.name: make_head(in_dim, h) for h in heads})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads.values()], dim=-1)


def sincos_table(num_positions: int, dim: int) -> torch.Tensor:
    """(1, N, D) fixed 1-D sinusoid table over the flattened token index (as VideoMAE)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, -2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)[None]
    angle = pos * freq
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


def separable_sincos_table(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """(1, N, D) fixed sin-cos table with separate parts for t, h and w (D/4 for t, the rest split
    between h and w), in token order (t, h, w) row-major.

    VideoMAE's 1-D table over the flattened index gives "same place, one slice later" no
    shared code; here two tokens at the same (h, w) share 3/4 of their position vector, which a
    small decoder uses at once (docs/results.md: the copy task learns several times faster)."""
    t, h, w = grid
    d_t = 2 * (dim // 8)
    d_h = 2 * ((dim - d_t) // 4)
    d_w = dim - d_t - d_h
    parts = []
    for axis, (n, d) in enumerate(zip(grid, (d_t, d_h, d_w))):
        table = sincos_table(n, d)[0]                                  # (n, d)
        shape = [1, 1, 1, d]
        shape[axis] = n
        parts.append(table.reshape(shape).expand(t, h, w, d))
    return torch.cat(parts, dim=-1).reshape(1, t * h * w, dim)


# how a token's position becomes its fixed embedding: name -> (grid (t, h, w), dim) -> (1, N, D)
POSITIONS = {
    "videomae": lambda grid, dim: sincos_table(math.prod(grid), dim),
    "separable": separable_sincos_table,
}


class PatchEmbed3d(nn.Module):
    """(B,C,T,H,W) -> (B,N,D) with one Conv3d over tubelet x patch x patch cubes."""

    def __init__(self, dim: int, tubelet: int, patch: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B,D,t,h,w) -> (B,N,D)


class VideoMAE(nn.Module):
    def __init__(self, size: ModelSize, grid: tuple[int, int, int], out_dim: HeadsSpec, tubelet: int = 2,
                 patch: int = 16, decoder_depth: int | None = None, drop_path: float = 0.0,
                 positions: str = "videomae", decoder_dim: int | None = None):
        super().__init__()
        if positions not in POSITIONS:
            raise KeyError(f"unknown position table {positions!r}; known: {', '.join(POSITIONS)}")
        self.grid = tuple(grid)  # (t, h, w) tokens
        self.tubelet, self.patch = tubelet, patch
        norm = partial(nn.LayerNorm, eps=1e-6)

        self.patch_embed = PatchEmbed3d(size.dim, tubelet, patch)
        self.register_buffer("pos_embed", POSITIONS[positions](self.grid, size.dim), persistent=False)
        dpr = [drop_path * i / max(size.depth - 1, 1) for i in range(size.depth)]  # stochastic depth rule
        self.blocks = nn.Sequential(*[
            Block(size.dim, size.heads, size.mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm)
            for i in range(size.depth)])
        self.norm = norm(size.dim)

        depth = size.decoder_depth if decoder_depth is None else decoder_depth
        dd = size.decoder_dim if decoder_dim is None else decoder_dim
        self.decoder_embed = nn.Linear(size.dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", POSITIONS[positions](self.grid, dd), persistent=False)
        self.decoder_blocks = nn.Sequential(*[
            Block(dd, size.decoder_heads, size.mlp_ratio, qkv_bias=True, norm_layer=norm)
            for _ in range(depth)])
        self.decoder_norm = norm(dd)
        self.head_specs = as_heads(out_dim)
        self.out_dim = sum(h.dim for h in self.head_specs)
        # one plain head stays a bare Linear: the state-dict keys of every checkpoint so far
        self.head = (make_head(dd, self.head_specs[0]) if len(self.head_specs) == 1
                     else Heads(dd, self.head_specs))
        self.apply(self._init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv3d):  # as a Linear on the flattened cube (MAE)
            nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
            nn.init.zeros_(m.bias)

    def forward_features(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """video (B,C,T,H,W), mask (B,N) True = hidden -> encoded visible tokens (B,Nv,D).

        mask=None encodes every token (B,N,D): the features of evaluation and fine-tuning."""
        x = self.patch_embed(video) + self.pos_embed                    # (B,N,D)
        B, N, D = x.shape
        if mask is not None:
            x = x[~mask].reshape(B, -1, D)                              # (B,Nv,D), same Nv per sample
        return self.norm(self.blocks(x))

    def forward_head(self, latent: torch.Tensor, mask: torch.Tensor, decode: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """Visible latents (B,Nv,D) -> predictions for the masked tokens (B,Nm,out_dim).

        With `decode` (B,N), a subset of `mask` (dual masking, train/pretraining/dual.py), the
        decoder sees the visible tokens and those alone, and predicts those (B,Nd,out_dim)."""
        x = self.decoder_embed(latent)                                  # (B,Nv,Dd)
        B, Nv, Dd = x.shape
        pos = self.decoder_pos_embed.expand(B, -1, -1)                  # (B,N,Dd)
        vis_pos = pos[~mask].reshape(B, Nv, Dd)
        mask_pos = pos[mask if decode is None else decode].reshape(B, -1, Dd)   # (B,Nm,Dd) or (B,Nd,Dd)
        x = torch.cat([x + vis_pos, self.mask_token + mask_pos], dim=1)  # (B,Nv+Nm,Dd)
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.head(x[:, Nv:])                                     # (B,Nm,out_dim)

    def forward(self, video: torch.Tensor, mask: torch.Tensor, decode: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(video, mask), mask, decode)


def build_model(name: str, grid: tuple[int, int, int], out_dim: HeadsSpec, tubelet: int = 2, patch: int = 16,
                decoder_depth: int | None = None, drop_path: float = 0.0, positions: str = "videomae",
                decoder_dim: int | None = None) -> VideoMAE:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return VideoMAE(MODELS[name], grid, out_dim, tubelet, patch, decoder_depth, drop_path, positions, decoder_dim)
