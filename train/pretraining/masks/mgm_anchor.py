"""`mgm_anchor`: the project's first MGM-like rule, unchanged (before `mgm` followed the paper's text).

Kept for ablations against `mgm`: it also anchors on the strongest motion and carries the
region along the vectors, but hides only half of each slice as the region and the rest at
random, tracks with token-mean velocities in a window as wide as the region, and has no
camera compensation. docs/masks.md compares the two. The rule:
1. per-token motion from the codec's motion vectors: mean |mv| over the token's
   tubelet x cells (invalid cells count as still), and the mean velocity;
2. anchor = the token with the highest 3x3-smoothed motion in the whole clip;
3. the region centre is carried from the anchor's time slice to the others along the
   motion vectors: c_{s+1} = c_s + v_s(c_s) * tubelet * frame_step / patch (and backwards),
   v_s(c) the motion-weighted mean velocity near c;
4. in every slice the `region` tokens nearest to the centre are hidden (a continuous blob
   that moves with the object), and the rest of the budget is hidden at random, so every
   slice hides exactly round(ratio * h * w) tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from train.clips.keys import FRAME_STEP
from train.pretraining.masks.common import clip_frames, hidden_per_slice, hide_lowest, input_side, token_motion
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset({"mv", "mv_valid", FRAME_STEP})
REGION_FRAC = 0.5  # share of every slice covered by the motion-following blob (capped by the budget)


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator,
         region_frac: float = REGION_FRAC) -> torch.Tensor:
    t, h, w = grid
    patch = input_side(batch) // w
    speed, velocity = token_motion(batch["mv"].float(), batch["mv_valid"].bool(), grid)
    B = speed.shape[0]
    steps = batch[FRAME_STEP].float().reshape(B, 1) * (clip_frames(batch)[1] // t) / patch  # px -> tokens

    smooth = F.avg_pool2d(speed.reshape(B * t, 1, h, w), 3, 1, 1, count_include_pad=False).reshape(B, t * h * w)
    smooth = smooth + 1e-6 * torch.rand(B, t * h * w, generator=generator)  # random anchor when nothing moves
    anchor = smooth.argmax(dim=1)                                   # (B,)
    s0, i0, j0 = anchor // (h * w), anchor // w % h, anchor % w

    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    yx = torch.stack([xs, ys], -1).reshape(1, h * w, 2)             # token centres (x, y), token units
    n_hide = hidden_per_slice(grid, ratio)
    n_region = min(n_hide, int(round(region_frac * h * w)))
    sigma2 = max(n_region / torch.pi, 1.0)                          # radius^2 of a disk of n_region tokens

    def drift(s: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """Displacement (B,2) in tokens over one slice, from slice s's motion near `centre`."""
        b = torch.arange(B)
        d2 = ((yx - centre[:, None]) ** 2).sum(-1)                   # (B,h*w)
        wgt = speed[b, s].reshape(B, h * w) * torch.exp(-d2 / (2 * sigma2))
        vel = (velocity[b, s].reshape(B, h * w, 2) * wgt[..., None]).sum(1) / wgt.sum(1, keepdim=True).clamp(min=1e-6)
        return vel * steps

    centres = torch.zeros(B, t, 2)
    centres[torch.arange(B), s0] = torch.stack([j0, i0], -1).float()
    for s in range(1, t):  # forward from the anchor slice
        move = s > s0
        prev = centres[:, s - 1]
        centres[:, s] = torch.where(move[:, None], prev + drift((s - 1) * torch.ones_like(s0), prev), centres[:, s])
    for s in range(t - 2, -1, -1):  # backward from the anchor slice
        move = s < s0
        nxt = centres[:, s + 1]
        centres[:, s] = torch.where(move[:, None], nxt - drift((s + 1) * torch.ones_like(s0), nxt), centres[:, s])
    centres = torch.stack([centres[..., 0].clamp(0, w - 1), centres[..., 1].clamp(0, h - 1)], -1)

    d2 = ((yx[:, None] - centres[:, :, None]) ** 2).sum(-1)           # (B,t,h*w)
    region = hide_lowest(d2 + 1e-3 * torch.rand(d2.shape, generator=generator), n_region)
    score = torch.where(region, -1.0, torch.rand(d2.shape, generator=generator))
    return hide_lowest(score, n_hide).reshape(B, t * h * w)


MASK = Mask("mgm_anchor", mask, NEEDS, cost=1)
