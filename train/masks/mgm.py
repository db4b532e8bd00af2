"""Motion-guided masking (`mgm`): in every time slice the masked region sits where that slice's
codec motion vectors are strongest (MGM, Fan et al., ICCV'23, arXiv 2308.12962: "motion vectors
guide the position of each mask over time", abstract). What the paper's text fixes and what we
chose is in docs/masks.md, section "MGM".

Per time slice s of the (t, h, w) token grid:
1. motion map: mean |mv| per token (`token_motion`), 3x3 box-smoothed so that the strongest
   motion is the middle of a moving region rather than one noisy block at its edge;
2. centre c_s = the token of largest smoothed motion (exact ties broken at random); a slice
   without motion (intra-coded or still) takes the centre interpolated in time between the
   nearest slices with motion (held at the ends); a clip without motion gets one random centre;
3. the round(ratio * h * w) tokens nearest to c_s are hidden: one compact region (a disk,
   clipped by the frame edge) per slice, moving with the strongest motion from slice to slice.

`compensate=True` (the `mgm_cc` variant) first subtracts the camera's motion, read from the
stored homography, from the vectors, so that a pan does not steer the region (docs/masks.md,
"Limits and the camera-compensated option").
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .common import hidden_per_slice, hide_lowest, token_motion

NEEDS: frozenset[str] = frozenset({"mv", "mv_valid"})
NEEDS_COMPENSATED: frozenset[str] = NEEDS | {"homography", "frame_step"}
TIE_NOISE = 1e-5  # px/frame: far below the 1/16 px quantum of a stored vector, so it only breaks exact ties


def camera_motion(homography: torch.Tensor, frame_step: torch.Tensor, num_frames: int,
                  cells: tuple[int, int], cell: int) -> torch.Tensor:
    """The camera's share of `mv`: (B,T,Hc,Wc,2), input px per stored frame, on each frame's cell grid.

    homography (B,T-1,3,3) maps input frame k to k+1 (input px). `mv[k]` moves content from
    frame k-1 to the cell centre p of frame k; the camera alone moved what lands on p from
    H_{k-1}^{-1} p, over `frame_step` stored frames. Dividing by frame_step is exact for a
    steady pan and an approximation of the per-frame homography otherwise. Frame 0 has no
    previous pair and borrows H_0 (its vectors point to a frame outside the clip).
    """
    B = homography.shape[0]
    hc, wc = cells
    ys, xs = torch.meshgrid(torch.arange(hc, dtype=torch.float64), torch.arange(wc, dtype=torch.float64),
                            indexing="ij")
    centre = (cell - 1) / 2                                                     # cell (i, j) centre (8j+3.5, 8i+3.5)
    p = torch.stack([xs * cell + centre, ys * cell + centre, torch.ones_like(xs)], -1)     # (Hc,Wc,3)
    pair = torch.cat([homography[:, :1], homography], 1)[:, :num_frames].double()         # (B,T,3,3)
    src = torch.einsum("ntij,hwj->nthwi", torch.linalg.inv(pair), p)
    src = src[..., :2] / src[..., 2:]                                           # (B,T,Hc,Wc,2)
    return ((p[..., :2] - src) / frame_step.double().reshape(B, 1, 1, 1, 1)).float()


def motion_centres(speed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """speed (B,t,h,w) -> region centre per slice (B,t,2) as (x, y) in tokens."""
    B, t, h, w = speed.shape
    smooth = F.avg_pool2d(speed.reshape(B * t, 1, h, w), 3, 1, 1, count_include_pad=False).reshape(B, t, h * w)
    noisy = smooth + TIE_NOISE * torch.rand(smooth.shape, generator=generator)
    best = noisy.argmax(-1)                                                     # (B,t)
    centres = torch.stack([best % w, best // w], -1).double()                  # (B,t,2)
    moving = smooth.amax(-1) > 0                                                # (B,t)
    fallback = torch.randint(h * w, (B,), generator=generator)                 # drawn always: same stream
    slices = np.arange(t, dtype=np.float64)
    for b in range(B):
        known = moving[b].nonzero()[:, 0]
        if len(known) == 0:
            centres[b] = torch.tensor([fallback[b] % w, fallback[b] // w], dtype=torch.float64)
        elif len(known) < t:
            for axis in range(2):
                path = np.interp(slices, known.numpy(), centres[b, known, axis].numpy())
                centres[b, :, axis] = torch.from_numpy(path)
    return centres.float()


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator,
         compensate: bool = False) -> torch.Tensor:
    t, h, w = grid
    mv, valid = batch["mv"].float(), batch["mv_valid"].bool()                   # (B,T,Hc,Wc,2), (B,T,Hc,Wc)
    B, T, hc, wc, _ = mv.shape
    if compensate:
        cell = batch["video"].shape[-1] // wc
        mv = mv - camera_motion(batch["homography"].float(), batch["frame_step"], T, (hc, wc), cell)
    speed, _ = token_motion(mv, valid, grid)                                   # (B,t,h,w)
    centres = motion_centres(speed, generator)                                 # (B,t,2)

    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    tokens = torch.stack([xs, ys], -1).reshape(1, 1, h * w, 2)
    d2 = ((tokens - centres[:, :, None]) ** 2).sum(-1)                         # (B,t,h*w)
    # random order within a ring, the same in every slice, so that a still region stays put
    d2 = d2 + 1e-3 * torch.rand(B, 1, h * w, generator=generator)
    return hide_lowest(d2, hidden_per_slice(grid, ratio)).reshape(B, t * h * w)
