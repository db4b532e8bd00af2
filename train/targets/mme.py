"""MME target (Sun et al. CVPR'23): motion trajectories of the 4 points of every token.

For each token, the (patch/8)^2 = 4 points are the centres of its 8x8 cells in the first
frame of its tubelet; each is tracked L steps at the stored frame rate (dense, even when
the input is sparse). Per point and step: the camera-compensated position delta (2) and
the HOG sampled along the trajectory (9). Patch norm: every (step, channel) is normalized
over the token's valid points. Steps after a point left the frame or the video weigh 0.
"""
from __future__ import annotations

import torch

from shards.schema import CELL, HOG_BINS

NAME = "mme"
NEEDS: frozenset[str] = frozenset({"traj", "traj_valid", "traj_hog"})


def out_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    if traj_len <= 0:
        raise ValueError("the mme target needs the shards' trajectory length (attrs traj_len)")
    return (patch // CELL) ** 2 * traj_len * (2 + HOG_BINS)


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    traj = batch["traj"].float()                                    # (B,t,Hc,Wc,L,2) px
    hog = batch["traj_hog"].float()                                 # (B,t,Hc,Wc,L,9)
    valid = batch["traj_valid"].float()[..., None]                  # (B,t,Hc,Wc,L,1)
    B, t, Hc, Wc, L, _ = traj.shape
    c = patch // CELL

    def tokens(x: torch.Tensor) -> torch.Tensor:                    # (B,t,Hc,Wc,L,K) -> (B,N,c*c,L,K)
        x = x.reshape(B, t, Hc // c, c, Wc // c, c, L, x.shape[-1]).permute(0, 1, 2, 4, 3, 5, 6, 7)
        return x.reshape(B, t * (Hc // c) * (Wc // c), c * c, L, x.shape[-1])

    x, v = tokens(torch.cat([traj, hog], -1)), tokens(valid)        # (B,N,4,L,11), (B,N,4,L,1)
    if normalize:
        n = v.sum(2, keepdim=True).clamp(min=1)
        mean = (x * v).sum(2, keepdim=True) / n
        var = ((x - mean) ** 2 * v).sum(2, keepdim=True) / n
        x = (x - mean) / (var + 1e-6).sqrt()
    weight = v.expand_as(x)
    return x.flatten(2), weight.flatten(2).contiguous()
