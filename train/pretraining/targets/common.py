"""Losses and head descriptions shared by the targets."""
from __future__ import annotations

from collections.abc import Callable

import torch

from train.pretraining.model import Head


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared error over the hidden tokens' values (VideoMAE, MAE).

    pred (B,Nm,C) for the hidden tokens; target, weight (B,N,C); mask (B,N) True = hidden."""
    w = weight[mask]  # gathered once: (B*Nm, C), the hidden tokens' weights
    return ((pred.flatten(0, 1) - target[mask]) ** 2 * w).sum() / w.sum().clamp(min=1)


def token_sum(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted squared errors summed per hidden token, averaged over the hidden tokens (MME's
    `pretrain/engine.py`: `loss.sum() / bool_masked_pos.sum()`); the weights carry the loss's
    coefficients. Shapes as `masked_mse`."""
    return ((pred.flatten(0, 1) - target[mask]) ** 2 * weight[mask]).sum() / mask.sum().clamp(min=1)


def reached(valid: torch.Tensor) -> torch.Tensor:
    """`shards.tracks.reached` in torch: (..., L) whether position p_l of a point is in the
    frame (l = 0, or step l - 1 was valid): where the HOG along its trajectory is read."""
    seen = torch.ones_like(valid)
    seen[..., 1:] = valid[..., :-1]
    return seen


def one_head(out_dim: Callable[..., int]) -> Callable[..., tuple[Head, ...]]:
    """The heads of a target predicted by one Linear layer of `out_dim` values (VideoMAE)."""
    def heads(tubelet: int, patch: int, traj_len: int = 0) -> tuple[Head, ...]:
        return (Head("out", out_dim(tubelet, patch, traj_len)),)
    return heads
