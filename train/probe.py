"""The linear probe's pure parts: how token features become a clip feature, the L2 penalty chosen by
cross-validation on the train split, and bootstrap intervals over val videos.

Pooling (`POOLS`, the probe's `--probe-pool`), from encoder tokens (B, N, D) in (t, h, w) order:
- "mean": the mean over all tokens (B, D), VideoMAE/MAE's feature. It throws away where and
  when things happen, so a probe on it cannot see motion that averages out (left vs right).
- "time": the mean over each time slice, concatenated (B, t*D): keeps when.
- "quadrants": the mean over each time slice's 2 x 2 spatial quadrants, concatenated
  (B, t*4*D): keeps when and roughly where, a quarter of "tokens"' dimensions per slice.
- "tokens": every token concatenated (B, N*D): keeps everything, and overfits most without a
  strong penalty.
Every pooling is deterministic; with the penalty chosen by cross-validation on the train videos
(folds by video, never by clip) the probe has no free knob and no seed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _quadrants(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = grid
    x = tokens.reshape(tokens.shape[0], t, h, w, -1)
    hh, hw = max(h // 2, 1), max(w // 2, 1)
    parts = [x[:, :, i:i + hh, j:j + hw].mean((2, 3)) for i in (0, h - hh) for j in (0, w - hw)]
    return torch.stack(parts, dim=2).flatten(1)                       # (B, t*4*D)


POOLS: dict[str, Callable[[torch.Tensor, tuple[int, int, int]], torch.Tensor]] = {
    "mean": lambda tokens, grid: tokens.mean(1),
    "time": lambda tokens, grid: tokens.reshape(tokens.shape[0], grid[0], -1, tokens.shape[-1]).mean(2).flatten(1),
    "quadrants": _quadrants,
    "tokens": lambda tokens, grid: tokens.flatten(1),
}


def pool(tokens: torch.Tensor, grid: tuple[int, int, int], how: str) -> torch.Tensor:
    """Encoder tokens (B, N, D) -> clip features (B, K) as `how` says."""
    if how not in POOLS:
        raise KeyError(f"unknown probe pooling {how!r}; known: {', '.join(POOLS)}")
    return POOLS[how](tokens, grid)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                 iters: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on x (M, K), labels y (M,): full-batch L-BFGS from zero,
    loss = cross-entropy + weight_decay / 2 * |W|^2 (convex: one answer). Runs on x's device."""
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay / 2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """(M, K) features -> zero mean, unit variance per dimension, with the train statistics."""
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    return [(x - mean) / std for x in (train, *others)]


def choose_weight_decay(x: torch.Tensor, y: torch.Tensor, groups: np.ndarray, num_classes: int,
                        candidates: tuple[float, ...], folds: int = 5, iters: int = 200) -> tuple[float, dict]:
    """The L2 penalty of `candidates` with the lowest cross-validated log-loss on (x, y).

    Folds split by `groups` (the video of each clip: clips of one video never sit on both
    sides), assigned round-robin over the sorted group ids, so the choice is deterministic.
    Features are standardized inside each fold with that fold's train statistics. Returns the
    penalty and {penalty: mean held-out log-loss}."""
    ids = np.unique(groups)
    folds = max(2, min(folds, len(ids)))
    fold_of = {g: k % folds for k, g in enumerate(ids)}
    fold = np.array([fold_of[g] for g in groups])
    scores = {}
    for wd in candidates:
        losses = []
        for k in range(folds):
            tr, te = torch.from_numpy(fold != k), torch.from_numpy(fold == k)
            a, b = standardize(x[tr], x[te])
            head = fit_logistic(a, y[tr], num_classes, wd, iters)
            with torch.no_grad():
                losses.append(F.cross_entropy(head(b), y[te]).item())
        scores[wd] = float(np.mean(losses))
    best = min(scores, key=lambda wd: (scores[wd], -wd))  # ties: the stronger penalty
    return best, scores


def bootstrap_interval(correct: np.ndarray, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `correct` (one 0/1 per val video)."""
    correct = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
