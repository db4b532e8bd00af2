"""MME target (Sun et al. CVPR'23) as MME's code trains it: two heads, its weights and norms.

For each token, the (patch/8)^2 = 4 points are the centres of its 8x8 cells in the first
frame of its tubelet; each is tracked L steps at the stored frame rate (dense, even when
the input is sparse). Per point and step: the camera-compensated position delta (2) and
the HOG sampled along the trajectory (9). Channels: [trajectory (4, L, 2) | HOG (4, L, 9)],
predicted by two heads on the same decoder (`heads`), the order of the two blocks.

Every constant is XinyuSun/MME's (docs/design.md compares the forms):

- trajectory: deltas / `TRAJ_DIV` (`pretrain/engine.py`: `traj_shape / 20`), then with norm
  `points` (their K400 script's `--traj_norm 'PatchStd'`; `run.py`'s default is 'none') each
  (step, coordinate) standardized over the 4 points with the unbiased variance,
  `(x - mean) / (std + 1e-6)` (engine.py). Head: Linear(Dd, 512) -> GELU -> Linear -> Tanh
  (`pretrain/model.py` `reset_classifier`, `run.py` `get_model`: `decoder_act = [nn.Sigmoid,
  nn.Tanh]` for target 'idt').
- HOG: not normalized per token; in their units (`HOG_SCALE`). Head: the same MLP -> Sigmoid.
- loss (engine.py): trajectory `sum of squared errors x loss mask x 32 x traj_loss_scale /
  dims`, HOG squared errors weighted per step by `alpha` (1 for the first step, 0.1 after:
  `run.py` `get_feat_args`, `--alpha 0.1`, `alpha[0] = 1`) and averaged over the steps, each
  summed per hidden token and averaged over the hidden tokens, and the two terms averaged
  (`(loss_1 + loss_2) / len(outputs)`). `build` puts these coefficients into the weight, so
  the loss is `token_sum` (`sum(weight x error^2) / hidden tokens`).

Where we differ (docs/design.md): validity per point and step instead of their per-token
"any of the 4 points stayed in the frame" mask (steps after a point left the frame, and HOG
at positions it never reached, weigh 0); statistics over the valid points only; grey HOG
(9 bins) where theirs is per RGB channel (27).
"""
from __future__ import annotations

import torch

from shards.schema import CELL, HOG_BINS

from train.clips.keys import TRAJ_HOG
from train.pretraining.model import Head
from train.pretraining.targets.common import reached, token_sum

NAME = "mme"
NEEDS: frozenset[str] = frozenset({"traj", "traj_valid", TRAJ_HOG})
NORMS = ("points", "none")     # trajectory: PatchStd over the 4 points | only / TRAJ_DIV; HOG never
DEFAULT_RATIO = 0.7  # MME's scripts hide 70 %
COST = 3  # tracking and HOG along the tracks in the loader

TRAJ_DIV = 20.0                # engine.py: traj_shape / 20 (their flow clip, +-20 px)
TRAJ_GAIN = 32.0               # engine.py: loss_1 ... * 32 * traj_loss_scale / traj_label.shape[-1]
TRAJ_LOSS_SCALE = 1.0          # run.py: --traj_loss_scale default 1 (the K400 script keeps it)
HOG_ALPHA = 0.1                # run.py: --alpha default 0.1; get_feat_args sets alpha[0] = 1
HEAD_HIDDEN = 512              # model.py reset_classifier: Linear(embed_dim, 512), GELU, Linear(512, nc)
STD_EPS = 1e-6                 # engine.py: / (var(unbiased=True).sqrt() + 1e-6)
# Their HOG (m3video/feat.py HOGDescriptorByConv, called on the ImageNet-normalized clip by
# engine.py) is an unscaled 3x3 Sobel (8x a unit ramp's slope) of values in units of 255 x std
# per grey level, averaged per 8x8 cell; the stored HOG is Sobel / 8 in grey levels per pixel
# (shards.schema): x 8 / (255 x 0.226, the mean ImageNet std) gives their units, where most
# cells are below 1, the range of the Sigmoid head.
HOG_SCALE = 8.0 / (255.0 * 0.226)


def out_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    if traj_len <= 0:
        raise ValueError("the mme target needs the shards' trajectory length (attrs traj_len)")
    return (patch // CELL) ** 2 * traj_len * (2 + HOG_BINS)


def norm_span(norm: str, tubelet: int, patch: int) -> tuple[int, str]:
    """(how many values, of what) each per-token statistic of `norm` is taken over; 0 = none
    (`none` only divides by `TRAJ_DIV`). `points` over a token's (patch/8)^2 points: at patch 8
    that is 1 point, whose standardized value is always 0."""
    return ((patch // CELL) ** 2, "tracked points") if norm == "points" else (0, "")


def heads(tubelet: int, patch: int, traj_len: int = 0) -> tuple[Head, ...]:
    points = (patch // CELL) ** 2
    return (Head("traj", points * traj_len * 2, HEAD_HIDDEN, "tanh"),
            Head("hog", points * traj_len * HOG_BINS, HEAD_HIDDEN, "sigmoid"))


def point_tokens(batch: dict, patch: int) -> tuple[torch.Tensor, ...]:
    """Trajectory arrays grouped per token: deltas (B,N,P,L,2) px, HOG (B,N,P,L,9), validity of
    the steps (B,N,P,L,1) and of the positions the HOG is read at (B,N,P,L,1) (`shards.tracks.
    reached`: p_l is in the frame when l = 0 or step l-1 was valid); P = (patch/8)^2 points."""
    traj = batch["traj"].float()                                    # (B,t,Hc,Wc,L,2) px
    hog = batch[TRAJ_HOG].float()                                 # (B,t,Hc,Wc,L,9)
    valid = batch["traj_valid"]                                     # (B,t,Hc,Wc,L)
    seen = reached(valid)
    B, t, Hc, Wc, L, _ = traj.shape
    c = patch // CELL

    def tokens(x: torch.Tensor) -> torch.Tensor:                    # (B,t,Hc,Wc,L,K) -> (B,N,c*c,L,K)
        x = x.reshape(B, t, Hc // c, c, Wc // c, c, L, x.shape[-1]).permute(0, 1, 2, 4, 3, 5, 6, 7)
        return x.reshape(B, t * (Hc // c) * (Wc // c), c * c, L, x.shape[-1])

    return tokens(traj), tokens(hog), tokens(valid.float()[..., None]), tokens(seen.float()[..., None])


def patch_std(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Standardize x (B,N,P,L,K) over the P points (dim 2), statistics over the valid ones (v),
    unbiased variance and eps on the std as MME's engine.py."""
    v = v.expand_as(x)
    n = v.sum(2, keepdim=True)
    mean = (x * v).sum(2, keepdim=True) / n.clamp(min=1)
    var = ((x - mean) ** 2 * v).sum(2, keepdim=True) / (n - 1).clamp(min=1)
    return (x - mean) / (var.sqrt() + STD_EPS)


def build(batch: dict, tubelet: int, patch: int, normalize: bool = True,
          norm: str = NORMS[0]) -> tuple[torch.Tensor, torch.Tensor]:
    if norm not in NORMS:
        raise ValueError(f"unknown mme target norm {norm!r}; known: {', '.join(NORMS)}")
    pos, shape, v, seen = point_tokens(batch, patch)               # (B,N,P,L,2), (B,N,P,L,9), (B,N,P,L,1) x2
    pos = pos / TRAJ_DIV
    if normalize and norm == "points":
        pos = patch_std(pos, v)
    shape = shape * HOG_SCALE
    L = pos.shape[3]
    traj_w = v.expand_as(pos) * (TRAJ_GAIN * TRAJ_LOSS_SCALE / pos[0, 0].numel() / 2)
    alpha = torch.full((L,), HOG_ALPHA, device=pos.device)
    alpha[0] = 1.0
    hog_w = seen.expand_as(shape) * (alpha / L / 2)[:, None]
    target = torch.cat([pos.flatten(2), shape.flatten(2)], -1)      # (B,N,P*L*2 + P*L*9)
    weight = torch.cat([traj_w.flatten(2), hog_w.flatten(2)], -1)
    return target, weight


loss = token_sum
