"""What a masking strategy is: one record per strategy, defined in its own file.

    MASK = Mask(name="tube", fn=mask, needs=frozenset(), per_slice=True, cost=0)

The registry (`train.pretraining.masks.MASKS`) lists the records; everything that depends on a
strategy asks its record: the batch keys it reads (`needs`), how many tokens it hides
(`hidden`, the FLOPs count and the encoder's batching rely on it), and its relative cost in the
loader (`cost`, the study schedules the costliest runs first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

MaskFn = Callable[..., torch.Tensor]  # (batch, grid, ratio, generator) -> (B, N) bool, True = hidden


@dataclass(frozen=True)
class Mask:
    name: str
    fn: MaskFn
    needs: frozenset[str]    # batch keys read besides the clip itself
    per_slice: bool = True   # hides round(ratio * h * w) in every time slice; False: round(ratio * N) anywhere
    cost: int = 0            # relative loader cost (0 = none beyond the clip)

    def __call__(self, batch: dict, grid: tuple[int, int, int], ratio: float,
                 generator: torch.Generator) -> torch.Tensor:
        return self.fn(batch, grid, ratio, generator)

    def hidden(self, grid: tuple[int, int, int], ratio: float) -> int:
        """Tokens hidden per clip, the same in every sample."""
        t, h, w = grid
        return t * round(ratio * h * w) if self.per_slice else round(ratio * t * h * w)
