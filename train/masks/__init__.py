"""Masking strategies: one file each, one signature, one dict to pick them by name.

    mask(batch, grid, ratio, generator) -> (B, N) bool, True = hidden from the encoder

`batch` is the collated dict of `train/data.py` (only the keys in the strategy's `NEEDS`
are read), `grid` = (t, h, w) tokens, N = t*h*w in (t, h, w) row-major order, `ratio` the
fraction hidden, `generator` a CPU torch.Generator (the only source of randomness, so a
resumed run draws the same masks). Every strategy hides exactly the same number of tokens
in every sample (the encoder batches the visible tokens): `random` hides round(ratio*N),
the others round(ratio*h*w) in every time slice. See docs/masks.md.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from . import mgm, mgm_anchor, mgmae, random, tube

MaskFn = Callable[[dict, tuple[int, int, int], float, torch.Generator], torch.Tensor]

MASKS: dict[str, MaskFn] = {"tube": tube.mask, "random": random.mask, "mgm": mgm.mask,
                            "mgm_cc": partial(mgm.mask, compensate=True),  # camera-compensated guidance
                            "mgm_anchor": mgm_anchor.mask, "mgmae": mgmae.mask}
NEEDS: dict[str, frozenset[str]] = {"tube": tube.NEEDS, "random": random.NEEDS, "mgm": mgm.NEEDS,
                                    "mgm_cc": mgm.NEEDS_COMPENSATED, "mgm_anchor": mgm_anchor.NEEDS,
                                    "mgmae": mgmae.NEEDS}


def get_mask(name: str) -> MaskFn:
    if name not in MASKS:
        raise KeyError(f"unknown mask {name!r}; known: {', '.join(MASKS)}")
    return MASKS[name]
