"""Tube masking (VideoMAE): the same random spatial positions hidden in every time slice."""
from __future__ import annotations

import torch

from train.pretraining.masks.common import batch_size, hidden_per_slice, hide_lowest
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset()


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    t, h, w = grid
    score = torch.rand(batch_size(batch), h * w, generator=generator)         # (B, h*w)
    hidden = hide_lowest(score, hidden_per_slice(grid, ratio))                 # (B, h*w)
    return hidden[:, None, :].expand(-1, t, -1).reshape(-1, t * h * w)         # (B, N)


MASK = Mask("tube", mask, NEEDS)
