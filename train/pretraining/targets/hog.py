"""HOG target (MaskFeat-style, from the stored cell histograms): the 9-bin histograms of the
tubelet x (patch/8)^2 cells of each token, normalized per token (mean 0, std 1 over its values)."""
from __future__ import annotations

import torch

from shards.schema import CELL, HOG_BINS

from train.pretraining.targets.common import masked_mse, one_head

NAME = "hog"
NEEDS: frozenset[str] = frozenset({"hog"})
NORMS = ("token",)             # per token over all its values
DEFAULT_RATIO = 0.9  # as the pixel target it stands in for
COST = 0


def out_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    return tubelet * (patch // CELL) ** 2 * HOG_BINS


def norm_span(norm: str, tubelet: int, patch: int) -> tuple[int, str]:
    """(how many values, of what) each per-token statistic of `norm` is taken over."""
    return out_dim(tubelet, patch), "HOG values"


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True,
          norm: str = NORMS[0]) -> tuple[torch.Tensor, torch.Tensor]:
    hog = batch["hog"].float()                                      # (B,T,Hc,Wc,9)
    B, T, Hc, Wc, K = hog.shape
    c = patch // CELL
    x = hog.reshape(B, T // tubelet, tubelet, Hc // c, c, Wc // c, c, K)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(B, -1, tubelet * c * c * K)  # (B,N,C)
    if normalize:
        x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)
    return x, torch.ones_like(x)


heads = one_head(out_dim)
loss = masked_mse
