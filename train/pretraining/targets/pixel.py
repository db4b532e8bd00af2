"""VideoMAE target: the pixels of each cube, normalized per token per channel."""
from __future__ import annotations

import torch

from train.clips.keys import VIDEO
from train.pretraining.targets.common import masked_mse, one_head

NAME = "pixel"
NEEDS: frozenset[str] = frozenset()
NORMS = ("channel",)           # per token, per colour channel over the cube's pixels (VideoMAE)
DEFAULT_RATIO = 0.9  # VideoMAE, MGM and MGMAE hide 90 %
COST = 0
MEAN = (0.485, 0.456, 0.406)  # the input normalization of train/clips/dataset.py (ImageNet)
STD = (0.229, 0.224, 0.225)


def out_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    return tubelet * patch * patch * 3


def norm_span(norm: str, tubelet: int, patch: int) -> tuple[int, str]:
    """(how many values, of what) each per-token statistic of `norm` is taken over."""
    return tubelet * patch * patch, "pixels per colour channel"


def patchify(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B,C,T,H,W) -> (B,N,tubelet*patch*patch,C), tokens in (t,h,w) order."""
    B, C, T, H, W = video.shape
    x = video.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)                           # (B,t,h,w,tubelet,p,p,C)
    return x.reshape(B, -1, tubelet * patch * patch, C)


def cubes(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """(B,3,T,H,W) normalized input -> each token's cube of pixels (B,N,P,C), back in [0,1]."""
    video = video.float()
    mean = torch.tensor(MEAN, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD, device=video.device).view(1, 3, 1, 1, 1)
    return patchify(video * std + mean, tubelet, patch)


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True,
          norm: str = NORMS[0]) -> tuple[torch.Tensor, torch.Tensor]:
    x = cubes(batch[VIDEO], tubelet, patch)                       # (B,N,P,C) in [0,1]
    if normalize:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    target = x.flatten(2)                                           # (B,N,P*C)
    return target, torch.ones_like(target)


heads = one_head(out_dim)
loss = masked_mse
