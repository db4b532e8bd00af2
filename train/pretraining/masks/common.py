"""Helpers shared by the masking strategies."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from shards.schema import CELL

from train.clips.keys import JPEG, VIDEO, VIDEO_U8


def hide_lowest(score: torch.Tensor, num_hidden: int) -> torch.Tensor:
    """Boolean mask with exactly `num_hidden` True per row of the last axis: the lowest scores.

    score (..., M) -> (..., M) bool. Ties are broken by position (stable sort), so callers add
    generator noise where they want random tie-breaking.
    """
    order = torch.argsort(score, dim=-1, stable=True)
    hidden = torch.zeros_like(score, dtype=torch.bool)
    return hidden.scatter_(-1, order[..., :num_hidden], True)


def hidden_per_slice(grid: tuple[int, int, int], ratio: float) -> int:
    return int(round(ratio * grid[1] * grid[2]))


def batch_size(batch: dict) -> int:
    return clip_frames(batch)[0]


def clip_frames(batch: dict) -> tuple[int, int]:
    """(B, T): clips and input frames of a batch, whether its frames are assembled (`video`
    (B,3,T,S,S)) or still on their way to the device (train/clips/assemble.py): levels (`video_u8`
    (B,T,S,S,3)) or JPEG rows (`jpeg` (B,T,N))."""
    if VIDEO in batch:
        return batch[VIDEO].shape[0], batch[VIDEO].shape[2]
    frames = batch[VIDEO_U8] if VIDEO_U8 in batch else batch[JPEG]
    return frames.shape[0], frames.shape[1]


def input_side(batch: dict) -> int:
    """S, the input frames' side in px: `video`'s (or its levels'), else S/8 cells a side of
    the clip's cell grids."""
    if VIDEO in batch:
        return batch[VIDEO].shape[-1]
    if VIDEO_U8 in batch:
        return batch[VIDEO_U8].shape[-2]
    grid = next(batch[k] for k in ("mv", "flow", "hog", "traj") if k in batch)
    return CELL * grid.shape[3]


def token_motion(mv: torch.Tensor, valid: torch.Tensor,
                 grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """mv (B,T,Hc,Wc,2) px/frame, valid (B,T,Hc,Wc) -> speed (B,t,h,w), velocity (B,t,h,w,2).

    speed = mean |mv| over the token's tubelet x cells with invalid cells (intra blocks, the
    first frame) counted as still; velocity = mean of the valid vectors.
    """
    B, T, Hc, Wc, _ = mv.shape
    t, h, w = grid
    tau, c = T // t, Hc // h
    v = (mv * valid[..., None]).reshape(B, t, tau, h, c, w, c, 2)
    count = valid.reshape(B, t, tau, h, c, w, c).sum((2, 4, 6)).clamp(min=1)[..., None]
    speed = v.norm(dim=-1).mean((2, 4, 6))                         # (B,t,h,w)
    velocity = v.sum((2, 4, 6)) / count                            # (B,t,h,w,2)
    return speed, velocity


def box3(speed: torch.Tensor) -> torch.Tensor:
    """speed (B,t,h,w) -> its 3x3 box mean per slice (border tokens average their in-frame
    neighbours only), so that the middle of a moving region outranks one noisy block at its edge."""
    B, t, h, w = speed.shape
    return F.avg_pool2d(speed.reshape(B * t, 1, h, w), 3, 1, 1, count_include_pad=False).reshape(B, t, h, w)
