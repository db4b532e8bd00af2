"""Masking strategies: one file each, one signature, one dict to pick them by name.

    mask(batch, grid, ratio, generator) -> (B, N) bool, True = hidden from the encoder

`batch` is the collated dict of `train/clips/dataset.py` (only the keys in the strategy's `NEEDS`
are read), `grid` = (t, h, w) tokens, N = t*h*w in (t, h, w) row-major order, `ratio` the
fraction hidden, `generator` a CPU torch.Generator (the only source of randomness). In
training the loader's workers make the masks, one generator per batch drawn from the run's
seed and the batch's first sample number (`batch_generator`, `train/clips/dataset.py` MaskCollate),
so a batch's masks do not depend on the worker that made it, and a resumed run draws the same. Every strategy hides exactly the same number of tokens
in every sample (the encoder batches the visible tokens): `random` hides round(ratio*N),
the others round(ratio*h*w) in every time slice. See docs/masks.md.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import torch

from train.pretraining.masks import mgm, mgm_anchor, mgmae, random, tube

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


MASK_STREAM = 13  # keeps the masks' draws apart from the clips' (np.random.default_rng([seed, g]))


def batch_generator(seed: int, first_sample: int) -> torch.Generator:
    """The generator of the masks of the batch whose first clip is global sample `first_sample`."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, first_sample, MASK_STREAM]).integers(2 ** 62)))
