"""Random masking (MAE / ST-MAE): round(ratio * N) tokens hidden anywhere in the clip."""
from __future__ import annotations

import math

import torch

from train.pretraining.masks.common import batch_size, hide_lowest
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset()


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    n = math.prod(grid)
    score = torch.rand(batch_size(batch), n, generator=generator)   # (B, N)
    return hide_lowest(score, int(round(ratio * n)))


MASK = Mask("random", mask, NEEDS, per_slice=False)
