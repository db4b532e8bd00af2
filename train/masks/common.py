"""Helpers shared by the masking strategies."""
from __future__ import annotations

import torch


def hide_lowest(score: torch.Tensor, num_hidden: int) -> torch.Tensor:
    """Boolean mask with exactly `num_hidden` True per row of the last axis: the lowest scores.

    score (..., M) -> (..., M) bool. Ties are broken by position (stable sort), so callers add
    generator noise where they want random tie-breaking.
    """
    order = torch.argsort(score, dim=-1, stable=True)
    hidden = torch.zeros_like(score, dtype=torch.bool)
    return hidden.scatter_(-1, order[..., :num_hidden], True)


def hidden_per_slice(grid: tuple[int, int, int], ratio: float) -> int:
    return int(round(ratio * grid[1] * grid[2]))


def batch_size(batch: dict) -> int:
    return batch["video"].shape[0]
