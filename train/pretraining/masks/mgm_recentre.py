"""`mgm_recentre`: MGM's rule as one secondary description of the paper states it: the region
starts at a random place and is re-centred, slice by slice, on the strongest codec motion.

The description (an LLM-written Q&A over the paper's source, low-to-medium confidence; the
paper's own method section could not be read) says the mask starts at a random place in the
first frame and is then moved, frame by frame, to the region of largest motion-vector
magnitude. `mgm` reads the same sources the other way (anchor once, then carry the region
along the vectors); docs/masks.md, "MGM", compares the two and says which source each follows.

1. Salience: mean |mv| per token over its tubelet x cells (`token_motion`, invalid cells
   count as still), 3x3 box-smoothed per slice (`box3`, as `mgm`'s anchor) so that the middle
   of a moving region wins, not one of its tokens at random.
2. Slice 0: the centre is a uniformly random token.
3. Every later slice: the centre is the token of largest smoothed motion in that slice (exact
   ties broken at random); a slice without motion (intra-coded, still) keeps the previous
   slice's centre.
4. Shape and size: in every slice the round(ratio * h * w) tokens nearest to the centre are
   hidden (`mgm.disks`), as in `mgm`.

Camera-inclusive vectors, as the paper uses them: on a pan faster than the object, the region
jumps to the background (docs/masks.md, "Limits").
"""
from __future__ import annotations

import torch

from train.pretraining.masks.common import box3, token_motion
from train.pretraining.masks.mgm import TIE_NOISE, disks
from train.pretraining.masks.record import Mask

NEEDS: frozenset[str] = frozenset({"mv", "mv_valid"})


def centres(speed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """speed (B,t,h,w) px/frame -> (B,t,2) region centres (x, y) in tokens."""
    B, t, h, w = speed.shape
    smooth = box3(speed).reshape(B, t, h * w)
    best = (smooth + TIE_NOISE * torch.rand(smooth.shape, generator=generator)).argmax(-1)   # (B,t)
    at = torch.stack([best % w, best // w], -1).float()                                      # (B,t,2)
    start = torch.randint(h * w, (B,), generator=generator)
    out = torch.zeros(B, t, 2)
    out[:, 0] = torch.stack([start % w, start // w], -1).float()
    moving = smooth.amax(-1) > 0                                                             # (B,t)
    for s in range(1, t):
        out[:, s] = torch.where(moving[:, s, None], at[:, s], out[:, s - 1])
    return out


def mask(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    speed, _ = token_motion(batch["mv"].float(), batch["mv_valid"].bool(), grid)   # (B,t,h,w)
    return disks(centres(speed, generator), grid, ratio, generator)


MASK = Mask("mgm_recentre", mask, NEEDS, cost=1)
