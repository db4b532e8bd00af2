"""Synthetic training batches with motion known by construction (no shards involved)."""
from __future__ import annotations

import torch

from train.pretraining.masks.mgmae import cell_centres  # noqa: F401  (re-exported for the tests)


def moving_square_batch(B: int = 4, T: int = 8, size: int = 64, obj: int = 16, velocity=(4.0, 0.0),
                        frame_step: int = 2, start=(8.0, 24.0), traj_len: int = 3, tubelet: int = 2) -> dict:
    """A still background with one `obj` px square moving by `velocity` px per stored frame.

    Clip frame k shows stored frame k * frame_step, so the square moves velocity * frame_step
    pixels between consecutive clip frames. mv / flow / traj hold exactly that motion.
    """
    hc = wc = size // 8
    v = torch.tensor(velocity)
    corner = torch.tensor(start)[None] + v[None] * frame_step * torch.arange(T)[:, None]   # (T,2) top-left
    p = cell_centres(hc, wc)                                                           # (Hc,Wc,2)
    inside = ((p[None] >= corner[:, None, None]) & (p[None] < corner[:, None, None] + obj)).all(-1)  # (T,Hc,Wc)
    mv = inside[..., None] * v                                                          # (T,Hc,Wc,2)
    flow = (inside[:-1, ..., None] * v * frame_step).float()
    gen = torch.Generator().manual_seed(0)
    t = T // tubelet
    return {
        "video": torch.randn(B, 3, T, size, size, generator=gen),
        "mv": mv[None].expand(B, -1, -1, -1, -1).float(),
        "mv_valid": torch.ones(B, T, hc, wc, dtype=torch.bool),
        "flow": flow[None].expand(B, -1, -1, -1, -1),
        "frame_step": torch.full((B,), frame_step),
        "homography": torch.eye(3).expand(B, T - 1, 3, 3).clone(),  # still camera
        "hog": torch.rand(B, T, hc, wc, 9, generator=gen),
        "traj": (inside[::tubelet, ..., None, None] * v).expand(-1, -1, -1, traj_len, -1)[None]
        .expand(B, -1, -1, -1, -1, -1).float(),
        "traj_valid": torch.rand(B, t, hc, wc, traj_len, generator=gen) > 0.2,
        "traj_hog": torch.rand(B, t, hc, wc, traj_len, 9, generator=gen),
        "object_corner": corner,  # (T,2) for the tests, not a model input
    }


def object_tokens(batch: dict, grid: tuple[int, int, int], patch: int = 16) -> torch.Tensor:
    """(t,) token index (in its slice) under the square's top-left 8 px cell, first frame of each tubelet."""
    t, h, w = grid
    tau = batch["video"].shape[2] // t
    centre = batch["object_corner"][::tau][:t] + 3.5
    ij = (centre // patch).long()
    return ij[:, 1].clamp(0, h - 1) * w + ij[:, 0].clamp(0, w - 1)
