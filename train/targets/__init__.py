"""Reconstruction targets: one file each, one dict to pick them by name.

Each target is a `Target`: the batch keys it reads (`needs`), its per-token output size
derived from the schema and the clip geometry (`out_dim`), the per-token normalizations it
knows (`norms`, the first its default), and `build(batch, tubelet, patch, normalize, norm)
-> (target, weight)`, both (B, N, C) over all tokens in (t, h, w) order; the weight is 0
where a value must not count (MME's points that left the frame). `normalize=False` turns
off the per-token normalization (VideoMAE's `normlize_target` flag); `norm` picks one of
`norms` (`TrainConfig.target_norm`). The loss is the same for all: a weighted mean squared
error over the hidden tokens (`masked_mse`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import hog, mme, pixel


@dataclass(frozen=True)
class Target:
    name: str
    needs: frozenset[str]
    out_dim: Callable[..., int]   # (tubelet, patch, traj_len) -> C
    build: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (batch, tubelet, patch, normalize=True, norm=default)
    norms: tuple[str, ...]        # per-token normalizations `build` knows; the first is the default

    def norm(self, name: str = "") -> str:
        """`name` checked against `norms`; "" = the default."""
        if not name:
            return self.norms[0]
        if name not in self.norms:
            raise ValueError(f"target {self.name!r} has no normalization {name!r}; known: {', '.join(self.norms)}")
        return name


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred (B,Nm,C) for the hidden tokens; target, weight (B,N,C); mask (B,N) True = hidden."""
    return ((pred.flatten(0, 1) - target[mask]) ** 2 * weight[mask]).sum() / weight[mask].sum().clamp(min=1)


TARGETS: dict[str, Target] = {
    m.NAME: Target(m.NAME, m.NEEDS, m.out_dim, m.build, m.NORMS) for m in (pixel, hog, mme)
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]
