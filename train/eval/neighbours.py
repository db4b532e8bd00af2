"""A non-learned predictor of the hidden tokens' targets from the visible ones under the same mask:
the bar a pretrained model has to clear before its held-out loss says it learned more than
interpolation.

For each hidden token its features are (`neighbour_features`): the mean of the visible 4-neighbours'
targets in its time slice, the target of the same position in the previous and in the next slice
where visible (else 0), and three indicators (any visible 4-neighbour, previous visible, next
visible). A ridge regression maps them to the token's target (all C channels at once), fit on
train clips with the mask and target of the run (`fit_neighbour_ridge`), the penalty chosen by
cross-validated R² over two halves of the clips. The targets are the run's own (normalized as in
training), so the predictor's held-out loss is comparable with the model's
(`train.eval.heldout.heldout_loss`'s `predictor`). The fit is unweighted: a target's loss mask
(MME's points that leave the frame) enters the loss, not the fit.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train.eval.heldout import clip_batches, heldout_draw
from train.eval.motion_probe import Moments, choose_penalty, ridge_fit
from train.pretraining.config import TrainConfig

def neighbour_features(target: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """target (B, N, C) and mask (B, N) (True = hidden) on the token grid (t, h, w) -> (B, N, 3C + 3):
    the visible 4-neighbours' mean target, the previous and next slices' target at the same place
    (0 where hidden or outside the clip), and whether each of the three was visible."""
    t, h, w = grid
    B, N, C = target.shape
    vis = (~mask).reshape(B, t, h, w, 1).to(target.dtype)
    x = target.reshape(B, t, h, w, C) * vis
    xs = F.pad(x, (0, 0, 1, 1, 1, 1))                                                # (B,t,h+2,w+2,C)
    vs = F.pad(vis, (0, 0, 1, 1, 1, 1))
    total = xs[:, :, :-2, 1:-1] + xs[:, :, 2:, 1:-1] + xs[:, :, 1:-1, :-2] + xs[:, :, 1:-1, 2:]
    count = vs[:, :, :-2, 1:-1] + vs[:, :, 2:, 1:-1] + vs[:, :, 1:-1, :-2] + vs[:, :, 1:-1, 2:]
    spatial = total / count.clamp(min=1)
    xt, vt = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1)), F.pad(vis, (0, 0, 0, 0, 0, 0, 1, 1))   # (B,t+2,h,w,.)
    feats = torch.cat([spatial, xt[:, :-2], xt[:, 2:], (count > 0).to(target.dtype), vt[:, :-2], vt[:, 2:]], -1)
    return feats.reshape(B, N, -1)


@dataclass
class NeighbourRidge:
    """The fitted predictor: weights (3C + 3, C), intercept (C,), the token grid and how it was fit."""
    w: torch.Tensor
    b: torch.Tensor
    grid: tuple[int, int, int]
    info: dict

    def __call__(self, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """target (B, N, C), mask (B, N) -> predictions (B, Nm, C) of the hidden tokens, in the model's order."""
        x = neighbour_features(target.float(), mask, self.grid)
        return (x[mask] @ self.w + self.b).reshape(len(target), -1, target.shape[-1])

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, w=self.w.numpy(), b=self.b.numpy(), grid=np.array(self.grid), info=json.dumps(self.info))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "NeighbourRidge":
        z = np.load(path)
        return cls(torch.from_numpy(z["w"]), torch.from_numpy(z["b"]), tuple(int(v) for v in z["grid"]),
                   json.loads(str(z["info"])))


def fit_neighbour_ridge(cfg: TrainConfig, path, clips: int = 256, batch_size: int = 32, seed: int = 1,
                        grid: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)) -> NeighbourRidge:
    """The ridge from the visible neighbours (`neighbour_features`) to the hidden tokens' targets of
    the run `cfg`, fit on `clips` train clips drawn class-balanced with `seed` (not the held-out
    loss's clips: those are val)."""
    folds: list[Moments | None] = [None, None]
    dataset, _, videos = heldout_draw(cfg, path, "train", clips, seed)
    for _, _, mask, tgt, _ in clip_batches(cfg, dataset, videos, batch_size, seed):
        tgt = tgt.float()
        x = neighbour_features(tgt, mask, cfg.grid)
        for i in range(len(tgt)):
            rows_x, rows_y = x[i][mask[i]].double().numpy(), tgt[i][mask[i]].double().numpy()
            f = i % 2
            if folds[f] is None:
                folds[f] = Moments.zeros(rows_x.shape[1], rows_y.shape[1])
            folds[f].add(rows_x, rows_y)
    folds = [m for m in folds if m is not None]
    penalty, scores = choose_penalty(folds, grid) if len(folds) > 1 else (grid[-1], {})
    w, b = ridge_fit(sum(folds[1:], folds[0]), penalty)
    return NeighbourRidge(torch.from_numpy(w).float(), torch.from_numpy(b).float(), tuple(cfg.grid),
                          {"penalty": penalty, "cv_r2": {f"{k:g}": round(v, 5) for k, v in scores.items()},
                           "clips": clips})
