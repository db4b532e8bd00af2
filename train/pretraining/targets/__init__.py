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
`norm_span(norm, tubelet, patch) -> (n, what)` says how many values each per-token statistic of a
normalization is taken over: a statistic over 1 value standardizes it to 0, so `check` refuses
such a geometry before a run trains on a constant target (MME's `points` at patch 8).
Losses: a weighted mean squared error over the hidden tokens (`masked_mse`: pixel, hog,
mme_single), or weighted squared errors summed per hidden token (`token_sum`: mme).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from shards.schema import CELL
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
    norm_span: Callable[..., tuple[int, str]]  # (norm, tubelet, patch) -> (values per statistic, of what); 0 = none
    default_ratio: float = 0.9    # the mask ratio its paper trains with (TrainConfig.mask_ratio: none)
    cost: int = 0                 # relative loader cost (0 = none beyond the clip)

    def norm(self, name: str = "") -> str:
        """`name` checked against `norms`; "" = the default."""
        if not name:
            return self.norms[0]
        if name not in self.norms:
            raise ValueError(f"target {self.name!r} has no normalization {name!r}; known: {', '.join(self.norms)}")
        return name

    def check(self, norm: str, tubelet: int, patch: int) -> None:
        """Refuse (ValueError, one line naming the fix) a normalization whose per-token statistic
        would be taken over a single value at this geometry: the target would be constant."""
        n, what = self.norm_span(norm, tubelet, patch)
        if n != 1:
            return
        bigger = next((p for p in range(patch + CELL, 33 * CELL, CELL)
                       if self.norm_span(norm, tubelet, p)[0] > 1), None)
        others = [f"'{o}'" for o in self.norms if o != norm and self.norm_span(o, tubelet, patch)[0] != 1]
        fixes = ([f"patch_size >= {bigger}"] if bigger else []) + ([f"target_norm {' or '.join(others)}"]
                                                                   if others else []) + ["norm_target false"]
        raise ValueError(f"target {self.name!r}: target_norm {norm!r} needs at least 2 {what} per token; "
                         f"patch_size {patch} gives 1 (one value standardized is always 0): use {', or '.join(fixes)}")


TARGETS: dict[str, Target] = {
    m.NAME: Target(m.NAME, m.NEEDS, m.out_dim, m.build, m.NORMS, m.heads, m.loss, m.norm_span,
                   m.DEFAULT_RATIO, m.COST)
    for m in (pixel, hog, mme, mme_single)
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]
