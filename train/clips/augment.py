"""Image augmentations applied to a whole clip with one draw: every frame gets the same ops.

timm's RandAugment and RandomErasing draw from the global `random` / `numpy` / `torch`
generators on every call. Re-seeding those generators with the clip's seed before each
frame makes every frame see the same draws (the same ops, probabilities and magnitudes;
the same erased box), as VideoMAE's video RandAugment does (`create_random_augment` on a
list of frames). The global generators are restored afterwards, so nothing else (timm's
Mixup in the training loop, other clips) sees a change.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing


@contextmanager
def seeded_global_rng(seed: int, with_torch: bool = False):
    """Seed python's and numpy's (and torch's) global generators; restore their states on exit."""
    py, nps = random.getstate(), np.random.get_state()
    torch_state = torch.get_rng_state() if with_torch else None
    random.seed(seed)
    np.random.seed(seed)
    if with_torch:
        torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(nps)
        if with_torch:
            torch.set_rng_state(torch_state)


@lru_cache(maxsize=8)
def rand_augment(policy: str, size: int):
    """timm RandAugment with VideoMAE's hparams (`create_random_augment`): translations up to
    0.45 x the image side, bicubic resampling, timm's default grey fill."""
    return rand_augment_transform(policy, {"translate_const": int(size * 0.45),
                                           "interpolation": Image.Resampling.BICUBIC})


def randaugment_clip(frames: np.ndarray, policy: str, seed: int) -> np.ndarray:
    """(T,S,S,3) uint8 -> the same, each frame through the same RandAugment draw (`policy`,
    e.g. 'rand-m7-n4-mstd0.5-inc1')."""
    aug = rand_augment(policy, frames.shape[1])
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        with seeded_global_rng(seed):
            out[t] = np.asarray(aug(Image.fromarray(frame)))
    return out


def erase_clip(video: torch.Tensor, probability: float, seed: int) -> torch.Tensor:
    """(3,T,S,S) normalized clip -> one box erased on every frame with probability `probability`,
    filled with per-pixel normal noise (timm RandomErasing, mode 'pixel', one box)."""
    C, T, S, _ = video.shape
    eraser = RandomErasing(probability, mode="pixel", max_count=1, device="cpu")
    with seeded_global_rng(seed, with_torch=True):   # the noise fill draws from torch
        eraser(video.reshape(C * T, S, S))   # a view: the box is cut in every frame in place
    return video
