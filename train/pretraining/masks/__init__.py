"""Masking strategies: one file each defining its record (`record.Mask`), one dict to pick them by name.

    mask(batch, grid, ratio, generator) -> (B, N) bool, True = hidden from the encoder

`batch` is the collated dict of `train/clips/dataset.py` (only the keys in the record's `needs`
are read), `grid` = (t, h, w) tokens, N = t*h*w in (t, h, w) row-major order, `ratio` the
fraction hidden, `generator` a CPU torch.Generator (the only source of randomness). In
training the loader's workers make the masks, one generator per batch drawn from the run's
seed and the batch's first sample number (`batch_generator`, `train/clips/dataset.py` MaskCollate),
so a batch's masks do not depend on the worker that made it, and a resumed run draws the same.
Every strategy hides exactly the same number of tokens in every sample (the encoder batches
the visible tokens): `Mask.hidden` says how many. See docs/masks.md, and docs/design.md for
adding one.
"""
from __future__ import annotations

import numpy as np
import torch

from train.pretraining.masks import mgm, mgm_anchor, mgm_recentre, mgmae, random, tube
from train.pretraining.masks.record import Mask, MaskFn

__all__ = ["MASKS", "Mask", "MaskFn", "batch_generator", "get_mask"]

# One line per strategy: its file defines the record (`record.Mask`).
MASKS: dict[str, Mask] = {m.name: m for m in (tube.MASK, random.MASK, mgm.MASK, mgm.MASK_COMPENSATED,
                                               mgm_recentre.MASK, mgm_anchor.MASK, mgmae.MASK)}


def get_mask(name: str) -> Mask:
    if name not in MASKS:
        raise KeyError(f"unknown mask {name!r}; known: {', '.join(MASKS)}")
    return MASKS[name]


MASK_STREAM = 13  # keeps the masks' draws apart from the clips' (np.random.default_rng([seed, g]))


def batch_generator(seed: int, first_sample: int) -> torch.Generator:
    """The generator of the masks of the batch whose first clip is global sample `first_sample`."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, first_sample, MASK_STREAM]).integers(2 ** 62)))
