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

`fit_probe` is the whole probe on given features (standardize, choose the penalty, fit, score);
`video_metrics` turns per-video scores into top-1 / top-k with a bootstrap interval over videos.
`train/evaluate.py` computes the features once and calls both for every pooling.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

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


def pool_dims(pools: list[str], grid: tuple[int, int, int], dim: int) -> list[int]:
    """The feature width K of each pooling of (B, N, D=dim) tokens on `grid`."""
    tokens = torch.zeros(1, grid[0] * grid[1] * grid[2], dim)
    return [pool(tokens, grid, how).shape[1] for how in pools]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                 iters: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression on x (M, K), labels y (M,): full-batch L-BFGS from zero,
    loss = cross-entropy + weight_decay / 2 * |W|^2 (convex: one answer). Runs on x's device.

    Stops when the gradient is below 1e-5 or the loss changes by less than 1e-9 per step: on a
    6144 x 1024 problem that is 22-51 loss evaluations instead of 32-88 at 1e-9 / 1e-12, with
    the loss equal to 2e-5 (a top-1 difference far inside any interval reported)."""
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")

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
                        candidates: tuple[float, ...], folds: int = 5, iters: int = 200
                        ) -> tuple[float, dict, dict]:
    """The L2 penalty of `candidates` by cross-validation on (x, y): of the penalties whose
    held-out top-1 is within one standard error of the best (over the train videos, `video_top1`:
    the clips of one video are not independent draws), the one with the lowest held-out log-loss
    (ties: the stronger penalty).

    Why top-1 and not log-loss: the probe reports top-1, and on weak features
    log-loss picks the strongest penalty. A random-init encoder's held-out log-loss was within
    0.02 of ln 8 at every penalty of the grid (2.088 at 1, 2.092 at 0.1, 2.107 at 0.01), so
    3-fold CV took 1 and the probe scored 0.135 on val, where 0.01 scored 0.214 (5 folds had
    taken 0.01): the baseline moved by 8 points with the number of folds. scikit-learn's
    LogisticRegressionCV scores by accuracy by default. Top-1 alone is coarse and noisy on few
    clips (penalties a decade apart often tie), so within one standard error of the best top-1
    the log-loss decides, as the one-standard-error rule keeps choices out of the noise.

    Folds split by `groups` (the video of each clip: clips of one video never sit on both
    sides), assigned round-robin over the sorted group ids, so the choice is deterministic.
    Features are standardized inside each fold with that fold's train statistics, once for all
    penalties. Every fit starts from zero (warm starts along the penalty path measured no faster:
    25.7 vs 24.5 s for 25 fits of 800 x 512, busy machine). Returns the penalty,
    {penalty: mean held-out log-loss over the folds} and {penalty: held-out top-1, the mean over
    videos of each video's share of correct clips, every clip scored by the fold that held it out}."""
    ids = np.unique(groups)
    folds = max(2, min(folds, len(ids)))
    fold_of = {g: k % folds for k, g in enumerate(ids)}
    fold = np.array([fold_of[g] for g in groups])
    splits = []
    for k in range(folds):
        tr, te = torch.from_numpy(fold != k).to(x.device), torch.from_numpy(fold == k).to(x.device)
        splits.append((fold == k, *standardize(x[tr], x[te]), y[tr], y[te]))
    losses, top1, se = {}, {}, {}
    for wd in candidates:
        fold_loss, correct = [], np.zeros(len(groups))
        for held, a, b, ya, yb in splits:
            head = fit_logistic(a, ya, num_classes, wd, iters)
            with torch.no_grad():
                logits = head(b)
                fold_loss.append(F.cross_entropy(logits, yb).item())
                correct[held] = (logits.argmax(1) == yb).cpu().numpy()
        losses[wd] = float(np.mean(fold_loss))
        top1[wd], se[wd] = video_top1(correct, groups)
    best = max(top1, key=top1.get)
    return pick_penalty(losses, top1, se[best]), losses, top1


def video_top1(correct: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Top-1 over videos and its standard error: each video's share of correct clips (`correct`
    (M,) 0/1, `groups` (M,) the video of each clip), then their mean and sqrt(variance / videos)
    (the binomial sqrt(p (1 - p) / V) with one clip per video). Clips of one video share its
    content, so counting them as independent would shrink the error by sqrt(clips per video)."""
    ids, video = np.unique(groups, return_inverse=True)
    per_video = np.bincount(video, weights=np.asarray(correct, np.float64)) / np.bincount(video)
    return float(per_video.mean()), float(math.sqrt(per_video.var() / len(ids)))


def pick_penalty(losses: dict[float, float], top1: dict[float, float], se: float) -> float:
    """Of the penalties whose cross-validated top-1 is within one standard error `se` (the best
    top-1's, over videos: `video_top1`) of the best, the one with the lowest log-loss; ties: the
    stronger."""
    best_top1 = max(top1.values())
    near = [wd for wd in top1 if top1[wd] >= best_top1 - se]
    return min(near, key=lambda wd: (losses[wd], -wd))


# The L2 penalties cross-validation chooses from (features standardized, loss = mean cross-entropy
# + wd / 2 |W|^2): from nearly unpenalized to strong enough that a 1000-dim probe on a few
# thousand clips cannot memorize them. A decade apart: finer steps change the top-1 less than
# the bootstrap interval's width (docs/results.md).
WD_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def parse_weight_decay(value) -> str | float:
    """The probe's `probe_wd`: "cv" (choose by cross-validation) or a penalty >= 0."""
    if isinstance(value, str) and value.strip().lower() == "cv":
        return "cv"
    try:
        wd = float(value)
    except (TypeError, ValueError):
        wd = float("nan")
    if not wd >= 0:
        raise ValueError(f"probe_wd must be 'cv' or a number >= 0, got {value!r}")
    return wd


@contextmanager
def cpu_threads(n: int, device: torch.device) -> Iterator[None]:
    """Run the block with `n` intra-op threads on the CPU (nothing changes on a GPU), then restore.

    L-BFGS on a probe is hundreds of small matrix products: with 2 threads on a loaded 2-core
    machine each one waits for the other thread, and one thread was 36x faster on 800 x 512
    (0.11 vs 4.0 s per fit) and 4.4x on 6144 x 1024 (2.8 vs 12.3 s), measured on the shared,
    busy machine; the answer is the same up to float summation order."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_probe(x_train: torch.Tensor, y_train: torch.Tensor, groups: np.ndarray, x_val: torch.Tensor,
              num_classes: int, weight_decay: str | float = "cv", candidates: tuple[float, ...] = WD_GRID,
              folds: int = 5, iters: int = 200) -> dict:
    """The linear probe on given clip features: train clips x_train (M, K) with labels (M,) and their
    videos `groups` (M,), val views x_val (..., K). Standardizes with the train statistics, takes
    `weight_decay` or (for "cv") the one of `candidates` with the best cross-validated top-1
    (`choose_weight_decay`), fits on all train clips. Returns {"val_probs" (..., C), "train_probs"
    (M, C), "weight_decay", "cv_loss" and "cv_top1" ({penalty: value} or None)}; runs on
    x_train's device."""
    cv_loss = cv_top1 = None
    with cpu_threads(1, x_train.device):
        if parse_weight_decay(weight_decay) == "cv":
            weight_decay, cv_loss, cv_top1 = choose_weight_decay(x_train, y_train, groups, num_classes, candidates,
                                                                 folds, iters)
        a, b = standardize(x_train, x_val.reshape(-1, x_val.shape[-1]))
        head = fit_logistic(a, y_train, num_classes, float(weight_decay), iters)
        with torch.no_grad():
            val_probs = head(b).softmax(-1).reshape(*x_val.shape[:-1], num_classes)
            train_probs = head(a).softmax(-1)
    return {"val_probs": val_probs, "train_probs": train_probs, "weight_decay": float(weight_decay),
            "cv_loss": cv_loss, "cv_top1": cv_top1}


def video_metrics(scores: torch.Tensor, labels: torch.Tensor, k: int = 5, resamples: int = 2000) -> dict:
    """Per-video scores (V, C) and labels (V,) -> top-1, top-k (k capped at C) and a 95 % percentile
    bootstrap interval of top-1 over the V videos (fixed resampling seed: the same scores give the
    same interval)."""
    k = min(k, scores.shape[1])
    correct = (scores.argmax(1) == labels).numpy()
    topk = (scores.topk(k, dim=1).indices == labels[:, None]).any(1).numpy()
    lo, hi = bootstrap_interval(correct, resamples)
    return {"top1": float(correct.mean()), "top5": float(topk.mean()), "top1_ci95": [lo, hi],
            "videos": int(len(labels))}


def bootstrap_interval(correct: np.ndarray, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `correct` (one 0/1 per val video)."""
    correct = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
