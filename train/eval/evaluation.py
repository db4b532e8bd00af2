"""Both modes test the same way: `clips` temporal windows per video (spread evenly, or TSN
segment offsets with `tsn`) x `test_crops` squares of the full short side along the long
side (1 = the centre), resized to the pretraining input size; a video's softmax scores are
averaged over its clips x test_crops views (VideoMAE: K400 5 x 3, SSv2 2 x 3); top-1 and
top-5 on the val split.

- **Linear probe.** The frozen encoder encodes every token (no mask); the tokens (B, N, D) are
  pooled into a clip feature (`train/eval/probe.py`), standardized with the train split's mean and
  std (MAE's affine-free BatchNorm), and a multinomial logistic regression with an L2 penalty is
  fit by full-batch L-BFGS on the train clips, each clip one sample: a convex problem, so no
  learning rate and the same answer on every run. The penalty (`probe_wd cv`, the default) is
  chosen from `probe_wd_grid` by `probe_folds`-fold cross-validation on the train split, folds
  by video: the lowest log-loss among the penalties within one standard error (over videos) of the best
  top-1 (`train.eval.probe.choose_weight_decay`); no knob tuned on val and no seed. The default pooling is
  **"quadrants"** (the mean over each time slice's 2 x 2 spatial quadrants, concatenated):
  VideoMAE's token mean cannot tell motions apart whose token features average out over the
  clip (left vs right is a matter of *when* the object is where; clockwise vs anticlockwise
  rotation moves every quadrant, but the quadrants' motions cancel over the frame), "time"
  keeps when but still cancels the rotations, and "tokens" (all concatenated) keeps
  everything but has 4x the dimensions of "quadrants" at 32 px / patch 8 and overfit in the
  earlier diagnostics. The token-mean probe is always fit as well, on the same features
  computed once (`probes.mean` in the result): VideoMAE's protocol, the second column. Every
  probe reports top-1 with a 95 % bootstrap interval over val videos and the chosen penalty.
- **Fine-tuning** (`--finetune`, train/eval/finetune.py): VideoMAE's classification model on the
  pretrained encoder (all tokens -> blocks -> norm -> mean -> LayerNorm -> linear head), trained
  end to end on random clips (`flip False` where a mirror changes the class, e.g. left/right or
  clockwise on SSv2 and synthetic-motion), AdamW, layer-wise lr decay, drop path, warmup +
  cosine, bf16 autocast on CUDA, DDP under torchrun. The papers' regularization (mixup,
  cutmix, label smoothing, RandAugment and random erasing identical across frames, random
  resized crops, repeated augmentation, TSN sampling) is off by default, so that short runs
  and the study stay comparable, and one `--config train/configs/finetune_*.yaml` away
  (docs/finetuning.md).

`--checkpoint` reads this project's checkpoints, exports and fine-tuned classifiers, VideoMAE's,
MGMAE's and MME's released checkpoints and Hugging Face VideoMAE folders, told apart by their
contents (train/checkpoints/, docs/interop.md); its geometry is the run's default and a flag that
differs from it is refused. A fine-tuned classifier is kept next to the result as
eval_finetune.pt (`--token-norm false` for VideoMAE's pooling, which a Hugging Face
VideoMAEForVideoClassification can take: `train/export.py --format hf`).

Labels are the ones stored at extraction (`ds.labels()`); unlabelled videos are skipped and
counted. `--checkpoint random` builds the encoder with random weights (the baseline), with
the geometry given by flags (TrainConfig defaults otherwise). The shards are the ones the
checkpoint was pretrained on (the demo set for "random") unless --shards names others. The
result (metrics, per-video predictions, the config, the checkpoint, timings) is printed and
written as JSON to --out. `--config FILE` (yaml/json of EvalConfig fields, e.g.
train/configs/finetune_k400.yaml) sets defaults that flags override. `--view-cache DIR` keeps a
uint8 copy of the test views (train/eval/view_cache.py): the first evaluation of a shard set, split
and clip geometry decodes them into DIR, every later one reads them back (the same clips bit for
bit; a cache of changed shards is rebuilt); the study uses it for all its probes. Errors are one line;
--debug shows the traceback.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from train.clips.keys import ITEM, VIDEO
from train.pretraining.engine import Dist, init_distributed, resolve_device
from train.eval.finetune import check as check_finetune
from train.eval.finetune import train_classifier
from train.eval.probe import POOLS, cpu_threads, fit_probe, parse_weight_decay, pool, pool_dims, video_metrics
from train.eval.view_cache import CachedViews, Views, cached_views

from train.checkpoints.adopt import adopt_classifier
from train.checkpoints.classifier import save_classifier
from train.eval.classifier import VideoClassifier, load_encoder
from train.eval.config import EvalConfig
from shards import ShardRef, open_shards


def labelled(shards: ShardRef, split: str) -> tuple[list[str], dict[str, int], int]:
    """Ids of the split's labelled videos, id -> label, and how many unlabelled were skipped."""
    with open_shards(shards) as ds:
        labels = ds.labels(split)
    keep = {vid: int(lab) for vid, lab in labels.items() if lab is not None}
    if not keep:
        raise ValueError(f"{shards}: no labelled videos in split {split!r} "
                         f"({len(labels)} videos in it; splits are set by the dataset adapter at extraction)")
    return sorted(keep), keep, len(labels) - len(keep)


def class_names(shards: ShardRef, ids: list[str], labels: dict[str, int]) -> dict[int, str]:
    """class id -> name, read from one video of each class."""
    first = {}
    for vid in ids:
        first.setdefault(labels[vid], vid)
    with open_shards(shards) as ds:
        return {lab: str(ds[vid].attrs.get("label_name") or lab) for lab, vid in sorted(first.items())}


# ---- running the encoder over views ------------------------------------------------------------

def split_views(cfg: EvalConfig, shards: ShardRef, split: str, ids: list[str], crops: int, d: Dist,
                log) -> Views | CachedViews:
    """The deterministic views of `ids`: from the shards, or with `view_cache` from its uint8 copy
    (decoded on first use; under torchrun rank 0 decodes while the others wait)."""
    if not cfg.view_cache:
        return Views(shards, ids, cfg.spec(), cfg.clips, crops, cfg.tsn)
    make = dict(root=Path(cfg.view_cache), shards=shards, split=split, ids=ids, spec=cfg.spec(), clips=cfg.clips,
                crops=crops, tsn=cfg.tsn, batch_size=cfg.encode_batch, num_workers=cfg.num_workers, log=log)
    if d.world == 1:
        return cached_views(**make)
    if d.main:
        cached_views(**make)
    dist.barrier()
    return cached_views(**make, build=False)


@torch.no_grad()
def run_views(fn, views: Views, cfg: EvalConfig, device: torch.device, d: Dist) -> torch.Tensor:
    """fn(video batch) -> (B,K) over every view; returns (videos, views, K) float32 on CPU, on every rank."""
    indices = list(range(d.rank, len(views), d.world))
    # cached views are a memmap read and a table lookup: worker processes would cost more than they save
    workers = 0 if isinstance(views, CachedViews) else cfg.num_workers
    loader = DataLoader(torch.utils.data.Subset(views, indices), batch_size=cfg.encode_batch,
                        num_workers=workers, pin_memory=device.type == "cuda")
    amp = cfg.amp and device.type == "cuda"
    items, values = [], []
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = fn(batch[VIDEO].to(device, non_blocking=True))
        items.append(batch[ITEM])
        values.append(out.float().cpu())
    mine = (torch.cat(items), torch.cat(values)) if items else None   # None: more ranks than views
    parts = [mine]
    if d.world > 1:
        parts = [None] * d.world
        dist.all_gather_object(parts, mine)
    items = torch.cat([p[0] for p in parts if p is not None])
    values = torch.cat([p[1] for p in parts if p is not None])
    result = torch.empty(len(views), values.shape[1])
    result[items] = values
    return result.view(len(views.ids), views.per_video, -1)


# ---- linear probe --------------------------------------------------------------------------

def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows of scores (V,C) whose label is among the k highest."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(1).sum().item() / len(labels)


def probe_pools(cfg: EvalConfig) -> list[str]:
    """The poolings one probe run fits: the main one, then the token mean (VideoMAE's) unless it is the main one."""
    if cfg.probe_pool not in POOLS:
        raise ValueError(f"unknown probe_pool {cfg.probe_pool!r}; known: {', '.join(POOLS)}")
    pools = [cfg.probe_pool] + ([] if cfg.probe_pool == "mean" else ["mean"])
    for how in pools:
        pool_weight_decay(cfg.probe_wd, how)
    return pools


def pool_weight_decay(probe_wd, how: str) -> str | float:
    """The L2 penalty (or "cv") of pool `how`: `probe_wd` itself, or its entry when it is {pool: penalty}
    (a pool it does not name is cross-validated)."""
    return parse_weight_decay(probe_wd.get(how, "cv") if isinstance(probe_wd, dict) else probe_wd)


# ---- the two evaluations --------------------------------------------------------------------

def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Run the linear probe or fine-tuning as `cfg` says; returns the result dict (JSON-ready)."""
    start = time.perf_counter()
    d = init_distributed(cfg.device)
    device = resolve_device(cfg.device, d)
    if cfg.finetune:
        check_finetune(cfg, d.world)
    mae, cfg, info = load_encoder(cfg)
    weights = info.pop("weights", None)
    shards = cfg.shards_ref()
    train_ids, train_labels, train_skipped = labelled(shards, cfg.train_split)
    val_ids, val_labels, val_skipped = labelled(shards, cfg.val_split)
    num_classes = max(max(train_labels.values()), max(val_labels.values())) + 1
    names = class_names(shards, train_ids + val_ids, {**train_labels, **val_labels})
    if d.main:
        log(f"motion-mae evaluate ({cfg.mode}), world {d.world}, device {device}\n{cfg.describe()}")
        log(f"{cfg.model} from {info['checkpoint']}: {num_classes} classes, {len(train_ids)} train / "
            f"{len(val_ids)} val videos ({train_skipped} / {val_skipped} unlabelled skipped), "
            f"{cfg.clips} clips x {cfg.test_crops} crops per val video{' (TSN segments)' if cfg.tsn else ''}")
    model = VideoClassifier(mae, num_classes)
    if weights is not None:
        info["checkpoint_notes"] += adopt_classifier(model, weights)
    if d.main:
        for note in info.get("checkpoint_notes", []):
            log(f"weights: {note}")
    model = model.to(device)
    del mae, weights
    seconds = {}
    y_train = torch.tensor([train_labels[v] for v in train_ids])
    y_val = torch.tensor([val_labels[v] for v in val_ids])
    t = time.perf_counter()
    main_log = log if d.main else (lambda s: None)
    val_views = split_views(cfg, shards, cfg.val_split, val_ids, cfg.test_crops, d, main_log)
    train_views = None if cfg.finetune else split_views(cfg, shards, cfg.train_split, train_ids, 1, d, main_log)
    seconds["views"] = time.perf_counter() - t   # with a view cache: its check, or its one decode; else ~0
    extra = {}

    if cfg.finetune:
        t = time.perf_counter()
        extra["finetune"] = train_classifier(model, cfg, train_ids, train_labels, device, d, log)
        seconds["finetune"] = time.perf_counter() - t
        if d.main:  # kept for train/export.py --format hf, or a later probe
            extra["classifier"] = str(save_classifier(cfg.out_path().with_suffix(".pt"), model, cfg, names,
                                                      info.get("pretrain_config"), info["checkpoint_step"]))
        t = time.perf_counter()
        probs = run_views(lambda v: model(v).softmax(-1), val_views, cfg, device, d)     # (V,views,C)
        seconds["test"] = time.perf_counter() - t
    else:
        model.eval()
        pools = probe_pools(cfg)
        grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)

        def features(video: torch.Tensor) -> torch.Tensor:
            tokens = model.forward_tokens(video)                                      # (B,N,D)
            return torch.cat([pool(tokens, grid, how) for how in pools], dim=1)      # (B, sum K)

        t = time.perf_counter()
        # one intra-op thread on the CPU, as the fits: a vit_pico batch on 2 threads of the busy 2-core
        # machine took 11-12 ms a clip against 0.9 (32 px) and 4.1 (64 px) on one (the loader's
        # workers, if any, use the other core)
        with cpu_threads(1, device):
            f_train = run_views(features, train_views, cfg, device, d)               # (V,clips,sum K): centre crops
            f_val = run_views(features, val_views, cfg, device, d)                   # (V,views,sum K)
        seconds["features"] = time.perf_counter() - t
        t = time.perf_counter()
        groups = np.repeat(np.arange(len(train_ids)), cfg.clips)                     # the video of each clip
        y_clips = y_train.repeat_interleave(cfg.clips).to(device)
        probes, start_dim = {}, 0
        per_channel = pool_dims(pools, grid, 1)             # every pooling's width is a multiple of D
        dims = [k * f_train.shape[-1] // sum(per_channel) for k in per_channel]
        for how, dim in zip(pools, dims):  # the features' columns are the pools' in order: split them back
            x_train = f_train[..., start_dim:start_dim + dim].reshape(-1, dim).to(device)
            x_val = f_val[..., start_dim:start_dim + dim].to(device)
            start_dim += dim
            fit = fit_probe(x_train, y_clips, groups, x_val, num_classes, pool_weight_decay(cfg.probe_wd, how),
                            tuple(cfg.probe_wd_grid),
                            cfg.probe_folds, cfg.probe_iters)
            train_probs = fit["train_probs"].view(len(train_ids), cfg.clips, -1).mean(1).cpu()
            val_probs = fit["val_probs"].cpu()                                         # (V,views,C)
            probes[how] = {**video_metrics(val_probs.mean(1), y_val, 5, cfg.probe_bootstrap),
                           "weight_decay": fit["weight_decay"],
                           "cv_loss": None if fit["cv_loss"] is None else
                           {f"{k:g}": round(v, 5) for k, v in fit["cv_loss"].items()},
                           "cv_top1": None if fit["cv_top1"] is None else
                           {f"{k:g}": round(v, 5) for k, v in fit["cv_top1"].items()},
                           "train_top1": topk_accuracy(train_probs, y_train, 1), "feature_dim": dim,
                           "probs": val_probs}
        seconds["fit"] = time.perf_counter() - t
        probs = probes[pools[0]].pop("probs")
        for p in probes.values():
            p.pop("probs", None)
        extra.update(probe_pool=pools[0], probes=probes, probe_train_top1=probes[pools[0]]["train_top1"],
                     probe_weight_decay=probes[pools[0]]["weight_decay"],
                     top1_ci95=probes[pools[0]]["top1_ci95"], feature_dim=probes[pools[0]]["feature_dim"])

    scores = probs.mean(1)                               # (V,C): the softmax averaged over the views
    seconds["total"] = time.perf_counter() - start
    result = {
        "mode": cfg.mode,
        "top1": topk_accuracy(scores, y_val, 1),
        "top5": topk_accuracy(scores, y_val, 5),
        "top5_k": min(5, num_classes),
        "num_classes": num_classes,
        "class_names": {str(k): v for k, v in names.items()},
        "chance_top1": 1.0 / num_classes,
        "videos": {"train": len(train_ids), "val": len(val_ids)},
        "views_per_video": val_views.per_video,
        "skipped_unlabelled": {"train": train_skipped, "val": val_skipped},
        **extra,
        **info,
        "config": asdict(cfg),
        "predictions": {vid: {"label": int(y), "pred": int(s.argmax()), "score": round(float(s.max()), 4)}
                        for vid, y, s in zip(val_ids, y_val, scores)},
        "device": str(device), "world": d.world,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if d.world > 1:
        dist.destroy_process_group()
    return result


def linear_probe(checkpoint: str, shards: str, log=lambda s: None, **options) -> dict:
    """Linear probe of `checkpoint` ("random" for the baseline) on `shards`; options are EvalConfig fields."""
    return evaluate(EvalConfig(checkpoint=str(checkpoint), shards=str(shards), finetune=False, **options), log)


def finetune(checkpoint: str, shards: str, log=lambda s: None, **options) -> dict:
    """End-to-end fine-tuning of `checkpoint` on `shards`; options are EvalConfig fields."""
    return evaluate(EvalConfig(checkpoint=str(checkpoint), shards=str(shards), finetune=True, **options), log)


# ---- CLI -------------------------------------------------------------------------------------

