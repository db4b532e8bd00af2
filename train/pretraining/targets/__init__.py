"""Reconstruction targets: one file each, one dict to pick them by name.

Each target is a `Target`: the batch keys it reads (`needs`), its per-token output size
derived from the schema and the clip geometry (`out_dim`), the decoder heads that predict it
(`heads`, `train.pretraining.model.Head`: one Linear for most; MME's trajectory and HOG heads), the
per-token normalizations it knows (`norms`, the first its default), `build(batch, tubelet,
patch, normalize, norm) -> (target, weight)`, both (B, N, C) over all tokens in (t, h, w)
order, and `loss(pred, target, weight, mask)`. The weight is 0 where a value must not count
(MME's points that left the frame) and carries the loss's coefficients where the reference
weighs parts differently (MME). `normalize=False` turns off the per-token normalization
(VideoMAE's `normlize_target` flag); `norm` picks one of `norms` (`TrainConfig.target_norm`).
Losses: a weighted mean squared error over the hidden tokens (`masked_mse`: pixel, hog,
mme_single), or weighted squared errors summed per hidden token (`token_sum`: mme).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from train.pretraining.model import Head
from train.pretraining.targets import hog, mme, mme_single, pixel
from train.pretraining.targets.common import masked_mse, token_sum

__all__ = ["TARGETS", "Target", "get_target", "masked_mse", "token_sum"]


@dataclass(frozen=True)
class Target:
    name: str
    needs: frozenset[str]
    out_dim: Callable[..., int]   # (tubelet, patch, traj_len) -> C
    build: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (batch, tubelet, patch, normalize=True, norm=default)
    norms: tuple[str, ...]        # per-token normalizations `build` knows; the first is the default
    heads: Callable[..., tuple[Head, ...]]  # (tubelet, patch, traj_len) -> heads, dims summing to out_dim
    loss: Callable[..., torch.Tensor]       # (pred (B,Nm,C), target, weight (B,N,C), mask (B,N)) -> ()
    default_ratio: float = 0.9    # the mask ratio its paper trains with (TrainConfig.mask_ratio: none)
    cost: int = 0                 # relative loader cost (0 = none beyond the clip)

    def norm(self, name: str = "") -> str:
        """`name` checked against `norms`; "" = the default."""
        if not name:
            return self.norms[0]
        if name not in self.norms:
            raise ValueError(f"target {self.name!r} has no normalization {name!r}; known: {', '.join(self.norms)}")
        return name


TARGETS: dict[str, Target] = {
    m.NAME: Target(m.NAME, m.NEEDS, m.out_dim, m.build, m.NORMS, m.heads, m.loss, m.DEFAULT_RATIO, m.COST)
    for m in (pixel, hog, mme, mme_single)
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]
