"""MME's target under one head and one MSE, kept as a named option beside MME's own form.

`mme` trains as MME's code does (two heads, its weights); this keeps the single-head form as
a named option for comparison (docs/design.md): one Linear head predicts all 11 channels of
every point and step, one `masked_mse` over them, so the 9 HOG channels make ~80 % of the loss.

For each token, the (patch/8)^2 = 4 points are the centres of its 8x8 cells in the first
frame of its tubelet; each is tracked L steps at the stored frame rate (dense, even when
the input is sparse). Per point and step: the camera-compensated position delta (2) and
the HOG sampled along the trajectory (9). Steps after a point left the frame or the video,
and HOG at positions the point never reached, weigh 0 and take no part in any statistic.

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

from train.pretraining.targets.common import masked_mse, one_head
from train.pretraining.targets.mme import NEEDS, out_dim, point_tokens

NAME = "mme_single"
NORMS = ("points", "token", "motion")
DEFAULT_RATIO = 0.7  # as MME
COST = 3  # tracking and HOG along the tracks in the loader


def norm_span(norm: str, tubelet: int, patch: int) -> tuple[int, str]:
    """(how many values, of what) the smallest per-token statistic of `norm` is taken over: the
    token's points for `points`; for `token`, its position part, at least 2 values a point
    (a bound: the part grows with the trajectory length); for `motion`, its HOG part."""
    points = (patch // CELL) ** 2
    return {"points": (points, "tracked points"), "token": (2 * points, "position values"),
            "motion": (HOG_BINS * points, "HOG values")}[norm]


def _standardize(x: torch.Tensor, v: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """(x - mean) / std over `dims`, both weighted by the validity v (broadcast to x)."""
    v = v.expand_as(x)
    n = v.sum(dims, keepdim=True).clamp(min=1)
    mean = (x * v).sum(dims, keepdim=True) / n
    var = ((x - mean) ** 2 * v).sum(dims, keepdim=True) / n
    return (x - mean) / (var + 1e-6).sqrt()


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True,
          norm: str = NORMS[0]) -> tuple[torch.Tensor, torch.Tensor]:
    pos, shape, v, seen = point_tokens(batch, patch)   # (B,N,4,L,2), (B,N,4,L,9), (B,N,4,L,1) x2
    if normalize:
        if norm not in NORMS:
            raise ValueError(f"unknown mme_single target norm {norm!r}; known: {', '.join(NORMS)}")
        dims = (2,) if norm == "points" else (2, 3, 4)   # over the 4 points, or the whole token part
        shape = _standardize(shape, seen, dims)
        if norm == "motion":
            rms = ((pos ** 2 * v).sum() / (v.sum() * pos.shape[-1]).clamp(min=1)).sqrt()
            pos = pos / (rms + 1e-6)
        else:
            pos = _standardize(pos, v, dims)
    x = torch.cat([pos, shape], -1)                                 # (B,N,4,L,11)
    weight = torch.cat([v.expand_as(pos), seen.expand_as(shape)], -1)
    return x.flatten(2), weight.flatten(2).contiguous()


heads = one_head(out_dim)
loss = masked_mse
