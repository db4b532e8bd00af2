"""Held-out pretraining loss: does a checkpoint predict masked content of clips it never saw better
than predicting zero?

    python train/heldout.py --checkpoint runs/x/checkpoint.pt            # the val split of its shards
    python train/heldout.py --checkpoint CKPT --shards SET --split val --clips 256

With normalized targets (every paper's default) predicting 0 is predicting the per-token mean,
so `ratio = loss / predict0` says how much of the masked signal the model recovers: 1.0 is
nothing, 0 everything. The clips, crops and masks depend only on `--seed`, so two checkpoints
are compared on exactly the same masked tokens. The clips are drawn class-balanced over the
split (`balanced_videos`): ids sorted by name group a corpus's videos by class, so the first
clips of the split would all come from its first classes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from shards import ShardRef, open_shards
from train.clips.keys import VIDEO
from train.pretraining.config import TrainConfig, resolve_shards
from train.clips.dataset import ClipDataset, ClipSpec
from train.pretraining.masks import get_mask
from train.pretraining.pairing import reads
from train.pretraining.targets import get_target
from train.pretraining.targets.pixel import cubes


def heldout_draw(cfg: TrainConfig, shards, split: str, clips: int, seed: int) -> tuple[ClipDataset, list, list[int]]:
    """The clip dataset of `split` at the run's geometry (no flips), each video's label, and the
    video of each of the `clips` clips, drawn class-balanced with `seed` (`balanced_videos`)."""
    spec = ClipSpec(cfg.num_frames, cfg.sampling_rate, cfg.input_size, cfg.tubelet, cfg.min_crop, False,
                    reads(cfg.mask, cfg.target), traj_len=cfg.traj_len)
    dataset = ClipDataset(shards, spec, seed, split)
    with open_shards(shards) as ds:
        labels = ds.labels(split or None)
    video_labels = [labels.get(vid) for vid in dataset.ids]
    return dataset, video_labels, balanced_videos(video_labels, clips, seed)


def clip_batches(cfg: TrainConfig, dataset: ClipDataset, videos: list[int], batch_size: int, seed: int):
    """(items, batch, mask (B, N), target (B, N, C), weight) of the drawn clips, `batch_size` at a
    time; each clip's mask from its own generator, so the numbers do not depend on the batching.
    The held-out loss and the neighbour predictor read the same clips and masks from here."""
    mask_fn, target = get_mask(cfg.mask), get_target(cfg.target)
    norm = target.norm(cfg.target_norm)
    for start in range(0, len(videos), batch_size):
        items = [(g, videos[g]) for g in range(start, min(len(videos), start + batch_size))]
        batch = default_collate([dataset[item] for item in items])
        mask = torch.cat([mask_fn({k: v[i:i + 1] for k, v in batch.items()}, cfg.grid, cfg.ratio,
                                  torch.Generator().manual_seed(seed * 1_000_003 + g))
                          for i, (g, _) in enumerate(items)])                         # (B,N)
        tgt, weight = target.build(batch, cfg.tubelet, cfg.patch_size, cfg.norm_target, norm)
        yield items, batch, mask, tgt, weight


@torch.no_grad()
def heldout_loss(ckpt: dict, shards: str | Path | ShardRef | None = None, split: str = "val", clips: int = 256,
                 batch_size: int = 32, seed: int = 0, device: str = "cpu", predictor=None) -> dict:
    """Mean masked loss (the target's own, as in training) of the checkpoint's model and of predicting 0
    over `clips` clips of `split`.

    The clip geometry, mask and target are the pretraining run's; flips are off; masks and
    targets are made on the CPU, the model runs on `device` ("auto" = cuda when there is one).
    Returns {"loss", "predict0", "ratio", "predict_mean", "ratio_mean", "baseline", "ratio_baseline",
    "clips", "per_class", "split", "step"}: `per_class` counts the clips of each class (label id as a
    string; `balanced_videos`); `baseline` is the better of predict-0 and the best constant
    (`heldout_baseline`: cross-fitted, the constant can do worse than 0) and
    `ratio_baseline` = loss / baseline, the ratio the study's gate reads;
    `predict_mean` is the loss of the best constant per target channel (cross-fitted over two
    folds of videos, `best_constant`), the trivial baseline for a target that is not centred
    (MME's HOG part: non-negative, not normalized per token), and `ratio_mean` = loss /
    predict_mean. For per-token normalized targets the two baselines agree (the best constant
    is ~0). `shards`: a path, or a `ShardRef` (a --frames none set whose videos moved); None: the
    checkpoint's set, its videos where extraction found them.
    `predictor`: a non-learned predictor of the hidden tokens' targets from the visible ones
    (target (B, N, C), mask (B, N) -> (B, Nm, C); `train.eval.neighbours`), scored on the same
    clips and masks: adds "predictor_loss" and "predictor_ratio" (its loss / the baseline)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = TrainConfig.from_dict(ckpt["config"])
    target = get_target(cfg.target)
    dataset, video_labels, videos = heldout_draw(cfg, heldout_shards(ckpt, shards), split, clips, seed)
    model = cfg.build_model(ckpt.get("heads") or int(ckpt["out_dim"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    loss_sum = zero_sum = predictor_sum = 0.0
    # the best constant prediction (one value per target channel): a clip's loss is quadratic in
    # a constant c, sum_k (a_k c_k^2 - 2 b_k c_k) + L(0), so its gradients at c = 0 and c = 1 give
    # a and b. The constant is cross-fitted over 2 folds of videos (`best_constant`): fit on
    # these very clips it would also learn their colours, and beat a model on a small split
    quads: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []   # (video, L(0), a, b) per clip
    contrast: list[torch.Tensor] = []   # pixel target: (contrast, loss, predict-0 loss) per hidden token
    for items, batch, mask, tgt, weight in clip_batches(cfg, dataset, videos, batch_size, seed):
        pred = model(batch[VIDEO].to(device), mask.to(device)).float().cpu()       # (B,Nm,C)
        if cfg.target == "pixel":
            contrast.append(token_contrast(batch[VIDEO], tgt, pred, mask, cfg.tubelet, cfg.patch_size))
        for i in range(len(items)):  # the mean over clips of each clip's loss
            one = (tgt[i:i + 1], weight[i:i + 1], mask[i:i + 1])
            loss_sum += target.loss(pred[i:i + 1], *one).item()
            if predictor is not None:
                predictor_sum += target.loss(predictor(tgt[i:i + 1], mask[i:i + 1]), *one).item()
            (z0, g0), (_, g1) = (constant_grad(target.loss, value, pred.shape[1:], one) for value in (0.0, 1.0))
            zero_sum += z0  # the loss of predicting 0: the constant 0's
            quads.append((items[i][1], z0, (g1 - g0) / 2, -g0 / 2))
    loss, zero = loss_sum / clips, zero_sum / clips
    best = best_constant(quads)
    baseline = heldout_baseline(zero, best)
    out = {"loss": loss, "predict0": zero, "ratio": loss / zero, "predict_mean": best,
           "ratio_mean": loss / best if best > 0 else float("inf"), "baseline": baseline,
           "ratio_baseline": loss / baseline if baseline > 0 else float("inf"), "clips": clips,
           "per_class": class_counts([video_labels[v] for v in videos]), "split": split, "step": int(ckpt["step"])}
    if predictor is not None:
        out["predictor_loss"] = predictor_sum / clips
        out["predictor_ratio"] = out["predictor_loss"] / baseline if baseline > 0 else float("inf")
    if contrast:
        out["by_contrast"] = contrast_bins(torch.cat(contrast))
    return out


def heldout_baseline(predict0: float, best_constant: float) -> float:
    """The loss a held-out loss is divided by: the better of two trivial predictions, 0 and the best
    constant per target channel. The constant is cross-fitted over folds of val videos
    (`best_constant`), so out of sample it can do worse than 0; the ratio then reads against 0,
    the baseline that needs no fitting."""
    return min(predict0, best_constant)


def balanced_videos(labels: list[int | None], clips: int, seed: int) -> list[int]:
    """Which video (an index into `labels`, one label per video of the split) each of `clips`
    clips reads: clip g comes from class g mod K (round-robin over the classes in label order;
    unlabelled videos form one class of their own, last), each class's videos in an order
    shuffled with `seed` and cycled once used up. Per-class counts differ by at most 1."""
    groups: dict[int | None, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    keys = sorted(groups, key=lambda k: (k is None, k or 0))
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(groups[k]) for k in keys]
    return [int(orders[g % len(keys)][(g // len(keys)) % len(orders[g % len(keys)])]) for g in range(clips)]


def class_counts(labels: list[int | None]) -> dict[str, int]:
    """Clips per class, in label order ("none" = unlabelled): what a held-out number is an average over."""
    counts: dict[int | None, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return {("none" if k is None else str(k)): counts[k] for k in sorted(counts, key=lambda k: (k is None, k or 0))}


CONTRAST_EDGES = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, float("inf"))  # grey levels


def token_contrast(video: torch.Tensor, tgt: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                   tubelet: int, patch: int) -> torch.Tensor:
    """(hidden tokens, 3): each hidden token's contrast (the standard deviation of its cube's
    pixels before the per-token normalization, in grey levels, the mean over colour channels),
    its squared error and its predict-0 loss (mean over the token's values, as `masked_mse`)."""
    spread = cubes(video, tubelet, patch).std(dim=-2, unbiased=True).mean(-1) * 255          # (B,N)
    hidden = tgt[mask]                                                                          # (B*Nm,C)
    err = ((pred.reshape(-1, pred.shape[-1]) - hidden) ** 2).mean(-1)
    return torch.stack([spread[mask], err, (hidden ** 2).mean(-1)], -1)


def contrast_bins(rows: torch.Tensor, edges=CONTRAST_EDGES) -> list[dict]:
    """Hidden tokens by contrast bin: their share, mean loss and loss / predict-0 (pixel target:
    is the loss a floor of flat, noise-only cubes, or the model's?)."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        n = int(m.sum())
        out.append({"grey_levels": [lo, hi], "share": n / max(len(rows), 1),
                    "loss": float(rows[m, 1].mean()) if n else float("nan"),
                    "ratio": float(rows[m, 1].sum() / rows[m, 2].sum()) if n else float("nan")})
    return out


def heldout_shards(ckpt: dict, shards: str | Path | ShardRef | None = None) -> ShardRef:
    """The shard set a held-out loss reads: `shards`, else the one the checkpoint trained on (its
    videos where extraction found them: the run's source root may be another machine's)."""
    return ShardRef.of(shards if shards else resolve_shards(TrainConfig.from_dict(ckpt["config"]).shards))


def best_constant(quads: list[tuple[int, float, torch.Tensor, torch.Tensor]], folds: int = 2) -> float:
    """Mean loss of the best constant per channel, cross-fitted: clips (video, L(0), a, b) are
    split by video into `folds`; each fold's clips are scored with the constant c = sum b / sum a
    fit on the other folds (loss L(0) - 2 b.c + a.c^2). A split of one video is fit in-sample
    (there is nothing else to fit on)."""
    videos = sorted({v for v, *_ in quads})
    fold_of = {v: k % folds for k, v in enumerate(videos)}
    if len(videos) < folds:
        fold_of = {v: 0 for v in videos}
    total = 0.0
    for f in sorted(set(fold_of.values())):
        rest = [(a, b) for v, _, a, b in quads if fold_of[v] != f] or [(a, b) for _, _, a, b in quads]
        a_fit, b_fit = sum(a for a, _ in rest), sum(b for _, b in rest)
        c = torch.where(a_fit > 0, b_fit / a_fit.clamp(min=1e-300), torch.zeros_like(b_fit))
        total += sum(z - 2 * float(b @ c) + float(a @ (c * c)) for v, z, a, b in quads if fold_of[v] == f)
    return total / len(quads)


def constant_grad(loss_fn, value: float, shape: torch.Size, args: tuple) -> tuple[float, torch.Tensor]:
    """(loss, d loss / d c (C,)) at the constant prediction c = value for every hidden token of one
    clip (pred shape (1, Nm, C)); the loss is a weighted squared error, so two of these give its
    quadratic coefficients per channel, and the one at 0 is the loss of predicting 0."""
    with torch.enable_grad():
        c = torch.full((shape[-1],), value, requires_grad=True)
        loss = loss_fn(c.expand(1, *shape), *args)
        loss.backward()
    return loss.item(), c.grad.double()
