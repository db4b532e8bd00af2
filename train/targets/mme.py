"""MME target (Sun et al. CVPR'23): motion trajectories of the 4 points of every token.

For each token, the (patch/8)^2 = 4 points are the centres of its 8x8 cells in the first
frame of its tubelet; each is tracked L steps at the stored frame rate (dense, even when
the input is sparse). Per point and step: the camera-compensated position delta (2) and
the HOG sampled along the trajectory (9). Steps after a point left the frame or the video
weigh 0 and take no part in any statistic.

Normalization (`NORMS`, `TrainConfig.target_norm`), over the token's valid points:

- `points` (default, MME's code: `traj_norm 'PatchStd'`): every (step, channel) over the 4
  points. A token whose 4 points move together (an object translating, a still background)
  loses its motion: what is left is the difference between its points, mostly flow noise.
- `token`: the position part (4 x L x 2 values) and the HOG part (4 x L x 9) of a token each
  standardized with one mean and std (MAE's per-patch norm applied per part).
- `motion`: position deltas not centred, only divided by their root mean square over the
  batch's valid values (one number per batch, so the 2 position channels weigh in the loss
  about as much per channel as the HOG ones): a translation and a still background keep their
  values; the HOG part as in `token`.
"""
from __future__ import annotations

import torch

from shards.schema import CELL, HOG_BINS

NAME = "mme"
NEEDS: frozenset[str] = frozenset({"traj", "traj_valid", "traj_hog"})
NORMS = ("points", "token", "motion")


def out_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    if traj_len <= 0:
        raise ValueError("the mme target needs the shards' trajectory length (attrs traj_len)")
    return (patch // CELL) ** 2 * traj_len * (2 + HOG_BINS)


def _standardize(x: torch.Tensor, v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """(x - mean) / std over `dims`, both weighted by the validity v (broadcast to x)."""
    v = v.expand_as(x)
    n = v.sum(dims, keepdim=True).clamp(min=1)
    mean = (x * v).sum(dims, keepdim=True) / n
    var = ((x - mean) ** 2 * v).sum(dims, keepdim=True) / n
    return (x - mean) / (var + 1e-6).sqrt()


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True,
          norm: str = NORMS[0]) -> tuple[torch.Tensor, torch.Tensor]:
    traj = batch["traj"].float()                                    # (B,t,Hc,Wc,L,2) px
    hog = batch["traj_hog"].float()                                 # (B,t,Hc,Wc,L,9)
    valid = batch["traj_valid"].float()[..., None]                  # (B,t,Hc,Wc,L,1)
    B, t, Hc, Wc, L, _ = traj.shape
    c = patch // CELL

    def tokens(x: torch.Tensor) -> torch.Tensor:                    # (B,t,Hc,Wc,L,K) -> (B,N,c*c,L,K)
        x = x.reshape(B, t, Hc // c, c, Wc // c, c, L, x.shape[-1]).permute(0, 1, 2, 4, 3, 5, 6, 7)
        return x.reshape(B, t * (Hc // c) * (Wc // c), c * c, L, x.shape[-1])

    pos, shape, v = tokens(traj), tokens(hog), tokens(valid)        # (B,N,4,L,2), (B,N,4,L,9), (B,N,4,L,1)
    if normalize:
        if norm not in NORMS:
            raise ValueError(f"unknown mme target norm {norm!r}; known: {', '.join(NORMS)}")
        dims = (2,) if norm == "points" else (2, 3, 4)   # over the 4 points, or the whole token part
        shape = _standardize(shape, v, dims)
        if norm == "motion":
            rms = ((pos ** 2 * v).sum() / (v.sum() * pos.shape[-1]).clamp(min=1)).sqrt()
            pos = pos / (rms + 1e-6)
        else:
            pos = _standardize(pos, v, dims)
    x = torch.cat([pos, shape], -1)                                 # (B,N,4,L,11)
    weight = v.expand_as(x)
    return x.flatten(2), weight.flatten(2).contiguous()
