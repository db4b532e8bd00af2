"""Motion-guided masking (`mgm`): one compact masked region, placed on the clip's strongest codec
motion and carried from slice to slice by the motion vectors (MGM, Fan et al., ICCV'23, arXiv
2308.12962: the vectors are "motion-based correspondences" that "guide the position of each
mask over time", abstract). What the paper's text fixes and what we chose is in
docs/masks.md, section "MGM".

1. Salience: mean |mv| per token (`token_motion`), 3x3 box-smoothed so that the middle of a
   moving region wins over one noisy block at its edge. The anchor is the token of largest
   smoothed motion in the whole clip (exact ties broken at random; a still clip gets a random
   anchor).
2. Tracking: from the anchor's slice the region centre moves to the next slice by the motion
   vectors around it (Gaussian window of TRACK_SIGMA tokens, each vector weighted by its
   salience), and to the previous slices backwards. A slice with no salient vector near the
   centre (intra-coded, still) keeps the last displacement.
3. Shape and size: in every slice the round(ratio * h * w) tokens nearest to the centre are
   hidden: one disk, clipped by the frame edge, moving with the object.

`compensate=True` (the `mgm_cc` variant) measures salience on the vectors minus the camera's
motion (the stored homography), so that a pan does not pull the anchor and the tracking
window onto the background; the centre still moves by the on-screen vectors, because the mask
hides on-screen tokens (docs/masks.md, "Limits and the camera-compensated option").
"""
from __future__ import annotations

from functools import partial

import torch

from train.clips.keys import FRAME_STEP
from train.pretraining.masks.common import box3, hidden_per_slice, hide_lowest, input_side, token_motion
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset({"mv", "mv_valid", FRAME_STEP})
NEEDS_COMPENSATED: frozenset[str] = NEEDS | {"homography"}
TIE_NOISE = 1e-5    # px/frame: far below the 1/16 px quantum of a stored vector, so it only breaks exact ties
TRACK_SIGMA = 1.0   # tokens: the window whose vectors move the centre (about the object part under it)


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


def anchor(speed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """speed (B,t,h,w) -> anchor slice (B,) and anchor centre (B,2) as (x, y) in tokens."""
    B, t, h, w = speed.shape
    smooth = box3(speed).reshape(B, t * h * w)
    best = (smooth + TIE_NOISE * torch.rand(smooth.shape, generator=generator)).argmax(1)
    return best // (h * w), torch.stack([best % w, best // w % h], -1).float()


def track(mv: torch.Tensor, salience: torch.Tensor, s0: torch.Tensor, c0: torch.Tensor,
          grid: tuple[int, int, int], tokens_per_px: torch.Tensor) -> torch.Tensor:
    """Carry the centre c0 (B,2) of slice s0 (B,) to every slice -> (B,t,2), tokens.

    mv (B,T,Hc,Wc,2) on-screen vectors (px per stored frame), salience (B,T,Hc,Wc) the weight
    of each vector (0 where invalid); tokens_per_px (B,) turns px per stored frame into tokens
    per slice (tubelet * frame_step / patch).
    """
    B, T, hc, wc, _ = mv.shape
    t, h, w = grid
    tau, per_token = T // t, hc // h
    ys, xs = torch.meshgrid(torch.arange(hc, dtype=torch.float32), torch.arange(wc, dtype=torch.float32), indexing="ij")
    cells = (torch.stack([xs, ys], -1) + 0.5) / per_token - 0.5                 # (Hc,Wc,2) cell centres, tokens
    mv, salience = mv.reshape(B, t, tau, hc, wc, 2), salience.reshape(B, t, tau, hc, wc)
    b = torch.arange(B)

    def step(s: torch.Tensor, centre: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """Displacement (B,2) in tokens over one slice, from slice s's vectors around `centre`."""
        near = torch.exp(-((cells - centre[:, None, None]) ** 2).sum(-1) / (2 * TRACK_SIGMA ** 2))  # (B,Hc,Wc)
        wgt = salience[b, s] * near[:, None]                                    # (B,tau,Hc,Wc)
        total = wgt.sum((1, 2, 3))
        vel = (mv[b, s] * wgt[..., None]).sum((1, 2, 3)) / total.clamp(min=1e-12)[:, None]
        return torch.where((total > 1e-6)[:, None], vel * tokens_per_px[:, None], last)

    centres = torch.zeros(B, t, 2)
    centres[b, s0] = c0
    last = torch.zeros(B, 2)
    for s in range(1, t):                        # forward from the anchor slice
        after = (s > s0)[:, None]
        move = step((s - 1) * torch.ones_like(s0), centres[:, s - 1], last)
        last = torch.where(after, move, last)
        centres[:, s] = torch.where(after, centres[:, s - 1] + move, centres[:, s])
    last = torch.zeros(B, 2)
    for s in range(t - 2, -1, -1):               # backward from the anchor slice
        before = (s < s0)[:, None]
        move = step((s + 1) * torch.ones_like(s0), centres[:, s + 1], last)
        last = torch.where(before, move, last)
        centres[:, s] = torch.where(before, centres[:, s + 1] - move, centres[:, s])
    return torch.stack([centres[..., 0].clamp(0, w - 1), centres[..., 1].clamp(0, h - 1)], -1)


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator,
         compensate: bool = False) -> torch.Tensor:
    t, h, w = grid
    mv, valid = batch["mv"].float(), batch["mv_valid"].bool()                   # (B,T,Hc,Wc,2), (B,T,Hc,Wc)
    B, T, hc, wc, _ = mv.shape
    guide = mv
    if compensate:
        guide = mv - camera_motion(batch["homography"].float(), batch[FRAME_STEP], T, (hc, wc),
                                   input_side(batch) // wc)
    speed, _ = token_motion(guide, valid, grid)                                # (B,t,h,w)
    s0, c0 = anchor(speed, generator)
    patch = input_side(batch) // w
    tokens_per_px = batch[FRAME_STEP].float().reshape(B) * (T // t) / patch
    centres = track(mv, guide.norm(dim=-1) * valid, s0, c0, grid, tokens_per_px)  # (B,t,2)
    return disks(centres, grid, ratio, generator)


def disks(centres: torch.Tensor, grid: tuple[int, int, int], ratio: float,
          generator: torch.Generator) -> torch.Tensor:
    """centres (B,t,2) (x, y) in tokens -> (B,N) mask: in every slice the round(ratio * h * w)
    tokens nearest to the slice's centre, a disk clipped by the frame edge."""
    t, h, w = grid
    B = centres.shape[0]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    d2 = ((torch.stack([xs, ys], -1).reshape(1, 1, h * w, 2) - centres[:, :, None]) ** 2).sum(-1)  # (B,t,h*w)
    # random order within a ring, the same in every slice, so that a still region stays put
    d2 = d2 + 1e-3 * torch.rand(B, 1, h * w, generator=generator)
    return hide_lowest(d2, hidden_per_slice(grid, ratio)).reshape(B, t * h * w)


MASK = Mask("mgm", mask, NEEDS, cost=1)
MASK_COMPENSATED = Mask("mgm_cc", partial(mask, compensate=True), NEEDS_COMPENSATED, cost=1)  # camera-compensated guidance
