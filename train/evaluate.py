"""Evaluate a pretrained encoder on labelled shards: linear probe (default) or fine-tuning.

    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt                # linear probe, the checkpoint's shards
    python train/evaluate.py --checkpoint random --model vit_pico --num-frames 8 --sampling-rate 2 \\
        --input-size 64                                                          # random-init baseline
    python train/evaluate.py --checkpoint CKPT --view-cache runs/view_cache     # decode the views once, reuse
    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt --finetune --epochs 10
    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt --config finetune_demo.yaml  # the papers' recipe
    python train/evaluate.py --checkpoint CKPT --shards data/shards/k400 --config finetune_k400.yaml
    python train/evaluate.py export --checkpoint runs/demo/checkpoint.pt --out encoder.pth   # train/export.py
    torchrun --nproc-per-node 8 train/evaluate.py --checkpoint CKPT --shards data/shards/k400 --finetune

Both modes test the same way: `clips` temporal windows per video (spread evenly, or TSN
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
  by video: the lowest log-loss among the penalties within one standard error of the best
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

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader

if __package__ in (None, ""):  # `python train/evaluate.py` as well as `python -m train.evaluate`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.cli import UsageError, run_main  # noqa: E402
from train.cli import Parser, check_sources  # noqa: E402
from train.pretraining.config import (DEMO_SHARDS, REPO_ROOT, TrainConfig, load_file, parse_bool, parse_optional,  # noqa: E402
                          resolve_shards)
from train.clips.dataset import ClipSpec  # noqa: E402
from train.pretraining.engine import Dist, init_distributed, resolve_device  # noqa: E402
from train.checkpoints.adopt import adopt, adopt_classifier, check_geometry, file_settings, run_geometry  # noqa: E402
from train.checkpoints.classifier import save_classifier  # noqa: E402
from train.checkpoints.foreign import read_weights  # noqa: E402
from train.eval.finetune import check as check_finetune  # noqa: E402
from train.eval.finetune import train_classifier  # noqa: E402
from train.eval.probe import (POOLS, WD_GRID, cpu_threads, fit_probe, parse_weight_decay, pool, pool_dims,  # noqa: E402
                         video_metrics)
from train.pretraining.model import POSITIONS, VideoMAE, build_model  # noqa: E402
from train.eval.view_cache import CachedViews, Views, cached_views  # noqa: E402

GEOMETRY = ("model", "num_frames", "sampling_rate", "input_size", "tubelet", "patch_size", "positions")


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = ""            # weights of any layout train/checkpoints/foreign.py reads, or "random" (baseline)
    shards: str = DEMO_SHARDS
    train_split: str = "train"
    val_split: str = "val"
    finetune: bool = False          # False = linear probe on frozen features
    # encoder and clip geometry: None = the checkpoint's (TrainConfig's defaults for "random")
    model: str | None = None
    num_frames: int | None = None
    sampling_rate: int | None = None
    input_size: int | None = None
    tubelet: int | None = None
    patch_size: int | None = None
    positions: str | None = None    # the position table (train.pretraining.model.POSITIONS): a random encoder's must match
    token_norm: bool | None = None  # the encoder's last norm on every token before the mean; False = VideoMAE's
                                    # mean pooling (no token norm); None = the checkpoint's (True for pretrained ones)
    clips: int = 2                  # temporal clips per video: probe training samples and test views (K400 5, SSv2 2)
    test_crops: int = 1             # spatial test views per clip along the long side (K400 / SSv2 3); 1 = centre
    tsn: bool = False               # TSN (SSv2): one frame from each of num_frames segments; no sampling_rate
    # linear probe (train/eval/probe.py)
    probe_pool: str = "quadrants"   # train.eval.probe.POOLS key of the main probe; the token mean is always fit too
    probe_wd: str | float | dict = "cv"  # L2 penalty on the classifier weights (features standardized); "cv" = chosen
                                    # by cross-validation; or {pool: penalty or "cv"} (the study: a run's earlier checkpoints)
    probe_wd_grid: tuple[float, ...] = WD_GRID  # the penalties cross-validation chooses from
    probe_folds: int = 5            # cross-validation folds (by video) on the train split
    probe_iters: int = 200          # L-BFGS iterations
    probe_bootstrap: int = 2000     # bootstrap resamples of the val videos for the 95 % interval
    # fine-tuning
    epochs: int = 5
    max_steps: int = 0              # > 0: train this many steps (overrides epochs)
    batch_size: int = 8             # per process, also for encoding
    base_lr: float = 1e-3           # lr = base_lr * total batch / 256 (VideoMAE)
    min_lr: float = 1e-6
    layer_decay: float = 0.75       # lr scale of block i: layer_decay ** (depth + 1 - (i + 1)); 1 = off
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    drop_path: float = 0.1
    min_crop: float = 0.66          # training crops, as in pretraining
    flip: bool = True               # random horizontal flips of training clips; off where labels have a direction
    # the papers' fine-tuning regularization: off by default, on in train/configs/finetune_*.yaml
    min_area: float = 0.0           # > 0: random resized crops, area [min_area, 1], aspect [3/4, 4/3] (VideoMAE 0.08)
    randaug: str = ""               # timm RandAugment policy, one draw per clip (VideoMAE 'rand-m7-n4-mstd0.5-inc1')
    reprob: float = 0.0             # random erasing probability, one box on every frame (VideoMAE 0.25)
    mixup: float = 0.0              # mixup alpha (VideoMAE 0.8); 0 = off
    cutmix: float = 0.0             # cutmix alpha (VideoMAE 1.0); 0 = off
    mixup_prob: float = 1.0         # probability that a batch is mixed at all
    mixup_switch_prob: float = 0.5  # probability of cutmix rather than mixup when both are on
    smoothing: float = 0.0          # label smoothing (VideoMAE 0.1)
    repeated_aug: int = 1           # clips of each video per batch (VideoMAE num_sample); lr scales with videos
    log_every: int = 10
    # runtime
    seed: int = 0
    device: str = "auto"            # auto = cuda if available else cpu
    amp: bool = True                # bf16 autocast on CUDA (ignored on CPU)
    num_workers: int = 2
    view_cache: str = ""            # folder of uint8 copies of the test views, decoded once (train/eval/view_cache.py)
    source_root: str = ""           # where the source videos of a --frames none set are now ("" = as extracted)
    out: str = ""                   # result JSON; "" = next to the checkpoint (runs/eval/ for "random")

    @property
    def mode(self) -> str:
        return "finetune" if self.finetune else "linear"

    def shards_path(self) -> Path:
        return resolve_shards(self.shards)

    def out_path(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.checkpoint == "random":
            return REPO_ROOT / "runs" / "eval" / f"random_{self.model}_{self.mode}.json"
        return Path(self.checkpoint).parent / f"eval_{self.mode}.json"

    def spec(self, train: bool = False) -> ClipSpec:
        return ClipSpec(self.num_frames, self.sampling_rate, self.input_size, self.tubelet,
                        self.min_crop if train else 1.0, flip=train and self.flip)

    def describe(self) -> str:
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {k:<{width}} {v}" for k, v in asdict(self).items())


# ---- the model --------------------------------------------------------------------------------

class VideoClassifier(nn.Module):
    """VideoMAE's fine-tuning model on a pretrained encoder (its modules, shared, decoder left out).

    video (B,3,T,H,W) -> tokens (B,N,D) + positions -> blocks -> norm -> mean (B,D)
    -> fc_norm -> head (B,classes). `forward_features` is the linear probe's feature.
    """

    def __init__(self, mae: VideoMAE, num_classes: int):
        super().__init__()
        dim = mae.patch_embed.proj.out_channels
        self.patch_embed, self.blocks, self.norm = mae.patch_embed, mae.blocks, mae.norm
        self.register_buffer("pos_embed", mae.pos_embed, persistent=False)
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # VideoMAE: std 0.02 x init_scale 0.001
        nn.init.zeros_(self.head.bias)

    def forward_tokens(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(video) + self.pos_embed                          # (B,N,D)
        return self.norm(self.blocks(x))                                      # (B,N,D)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(video).mean(1)                             # (B,D)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_norm(features))                              # (B,classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))


def load_encoder(cfg: EvalConfig) -> tuple[VideoMAE, EvalConfig, dict]:
    """The pretrained (or random) MAE, the config with its geometry filled in, and checkpoint info."""
    weights = None if cfg.checkpoint == "random" else read_weights(cfg.checkpoint)
    if weights is None:
        base, info, out_dim = TrainConfig(), {"checkpoint": "random", "checkpoint_step": 0}, 1
    else:
        base, out_dim = TrainConfig.from_dict(file_settings(weights)), weights.heads or 1
        info = {"checkpoint": str(cfg.checkpoint), "checkpoint_step": weights.step,
                "checkpoint_format": weights.format, "pretrain_config": weights.config}
    cfg = replace(cfg, **{k: getattr(base, k) if getattr(cfg, k) is None else getattr(cfg, k) for k in GEOMETRY})
    if cfg.token_norm is None:
        cfg = replace(cfg, token_norm=weights is None or weights.geometry["token_norm"] is not False)
    grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    torch.manual_seed(cfg.seed)
    mae = build_model(cfg.model, grid, out_dim, cfg.tubelet, cfg.patch_size, base.decoder_depth,
                      cfg.drop_path if cfg.finetune else 0.0, cfg.positions, base.decoder_dim)
    if not cfg.token_norm:  # VideoMAE's mean pooling: tokens -> mean -> fc_norm, no norm before the mean
        mae.norm = nn.Identity()
    if weights is not None:
        run = run_geometry(mae, cfg.num_frames, cfg.input_size, cfg.positions)
        info["checkpoint_notes"] = check_geometry(weights, run) + adopt(mae, weights)
        info["weights"] = weights  # the classifier's part: evaluate() loads it once the classes are known
    return mae, cfg, info


# ---- data -------------------------------------------------------------------------------------

def labelled(path: Path, split: str) -> tuple[list[str], dict[str, int], int]:
    """Ids of the split's labelled videos, id -> label, and how many unlabelled were skipped."""
    from shards import open_shards

    with open_shards(path) as ds:
        labels = ds.labels(split)
    keep = {vid: int(lab) for vid, lab in labels.items() if lab is not None}
    if not keep:
        raise ValueError(f"{path}: no labelled videos in split {split!r} "
                         f"({len(labels)} videos in it; splits are set by the dataset adapter at extraction)")
    return sorted(keep), keep, len(labels) - len(keep)


def class_names(path: Path, ids: list[str], labels: dict[str, int]) -> dict[int, str]:
    """class id -> name, read from one video of each class."""
    from shards import open_shards

    first = {}
    for vid in ids:
        first.setdefault(labels[vid], vid)
    with open_shards(path) as ds:
        return {lab: str(ds[vid].attrs.get("label_name") or lab) for lab, vid in sorted(first.items())}


# ---- running the encoder over views ------------------------------------------------------------

def split_views(cfg: EvalConfig, path: Path, split: str, ids: list[str], crops: int, d: Dist,
                log) -> Views | CachedViews:
    """The deterministic views of `ids`: from the shards, or with `view_cache` from its uint8 copy
    (decoded on first use; under torchrun rank 0 decodes while the others wait)."""
    if not cfg.view_cache:
        return Views(path, ids, cfg.spec(), cfg.clips, crops, cfg.tsn, cfg.source_root or None)
    make = dict(root=Path(cfg.view_cache), path=path, split=split, ids=ids, spec=cfg.spec(), clips=cfg.clips,
                crops=crops, tsn=cfg.tsn, batch_size=cfg.batch_size, num_workers=cfg.num_workers, log=log,
                source_root=cfg.source_root or None)
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
    loader = DataLoader(torch.utils.data.Subset(views, indices), batch_size=cfg.batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda")
    amp = cfg.amp and device.type == "cuda"
    items, values = [], []
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = fn(batch["video"].to(device, non_blocking=True))
        items.append(batch["item"])
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
        check_finetune(cfg)
    mae, cfg, info = load_encoder(cfg)
    weights = info.pop("weights", None)
    path = cfg.shards_path()
    train_ids, train_labels, train_skipped = labelled(path, cfg.train_split)
    val_ids, val_labels, val_skipped = labelled(path, cfg.val_split)
    num_classes = max(max(train_labels.values()), max(val_labels.values())) + 1
    names = class_names(path, train_ids + val_ids, {**train_labels, **val_labels})
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
    val_views = split_views(cfg, path, cfg.val_split, val_ids, cfg.test_crops, d, main_log)
    train_views = None if cfg.finetune else split_views(cfg, path, cfg.train_split, train_ids, 1, d, main_log)
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

EVAL_HELP = {
    "checkpoint": "a train/pretrain.py checkpoint.pt, a train/export.py or fine-tuned file, a VideoMAE / MGMAE / MME "
                  "checkpoint, or a Hugging Face VideoMAE folder (docs/interop.md); or 'random' (random-init encoder, "
                  "the baseline) (required)",
    "token_norm": "the encoder's last LayerNorm on every token before the mean; false = VideoMAE's mean pooling "
                  "(what a Hugging Face VideoMAEForVideoClassification computes) (default: the checkpoint's: false "
                  "for a mean-pooling fine-tuned file, else true)",
    "shards": "labelled shard set (default: the shards the checkpoint was pretrained on; "
              f"{DEMO_SHARDS} for 'random')",
    "train_split": "split the probe / fine-tuning trains on",
    "val_split": "split tested on",
    "finetune": "fine-tune end to end instead of a linear probe (default: linear probe)",
    "clips": "temporal clips per video: probe training samples and test views (K400 5, SSv2 2)",
    "test_crops": "spatial test views per clip along the long side (K400 / SSv2 3); 1 = the centre",
    "tsn": "TSN sampling (SSv2): one frame from each of num_frames segments instead of a sampling rate",
    "probe_pool": "linear probe: how tokens become a clip feature (train.eval.probe.POOLS: mean, time, quadrants, "
                  "tokens); the token mean is fit as well",
    "probe_wd": "linear probe: L2 penalty on the classifier weights, or 'cv' = chosen by cross-validation on "
                "the train split (folds by video)",
    "probe_wd_grid": "linear probe: comma-separated penalties 'cv' chooses from",
    "probe_folds": "linear probe: cross-validation folds",
    "probe_iters": "linear probe: L-BFGS iterations",
    "probe_bootstrap": "linear probe: bootstrap resamples of the val videos (the 95 %% interval of top-1)",
    "epochs": "fine-tuning epochs (unless --max-steps)",
    "max_steps": "> 0: fine-tune this many steps (overrides --epochs)",
    "batch_size": "clips per step and process, also for encoding",
    "base_lr": "fine-tuning peak lr = base_lr * total batch / 256",
    "min_lr": "fine-tuning lr at the end of the cosine",
    "layer_decay": "lr scale of block i: layer_decay ** (depth - i); 1 = off",
    "weight_decay": "fine-tuning AdamW weight decay",
    "warmup_epochs": "fine-tuning warmup",
    "drop_path": "fine-tuning stochastic depth",
    "min_crop": "fine-tuning random crops, smallest side / short side",
    "flip": "random horizontal flips of training clips (false where labels have a direction)",
    "min_area": "> 0: random resized crops of area [min_area, 1], aspect [3/4, 4/3] (VideoMAE 0.08)",
    "randaug": "timm RandAugment policy, one draw per clip for every frame (VideoMAE 'rand-m7-n4-mstd0.5-inc1'); "
               "'' = off",
    "reprob": "random erasing probability, one box on every frame (VideoMAE 0.25)",
    "mixup": "mixup alpha (VideoMAE 0.8); 0 = off",
    "cutmix": "cutmix alpha (VideoMAE 1.0); 0 = off",
    "mixup_prob": "probability that a batch is mixed at all",
    "mixup_switch_prob": "probability of cutmix rather than mixup when both are on",
    "smoothing": "label smoothing (VideoMAE 0.1)",
    "repeated_aug": "clips of each video per batch (VideoMAE's num_sample); lr scales with videos",
    "log_every": "fine-tuning steps between log lines",
    "seed": "seed of the head, clips and (for 'random') the encoder",
    "device": "auto = cuda when available, else cpu",
    "amp": "bf16 autocast on CUDA (ignored on CPU)",
    "num_workers": "data loader processes",
    "view_cache": "folder of uint8 copies of the test views, decoded once per shard set, split and clip geometry "
                  "and reused by every later evaluation (checked against the shards; '' = off)",
    "source_root": "for a set extracted with --frames none (frames decoded from the source videos): the folder "
                   "the corpus moved to ('' = the paths recorded at extraction)",
    "out": "result JSON (default: eval_linear.json / eval_finetune.json next to the checkpoint; "
           "runs/eval/random_<model>_<mode>.json for 'random')",
}
USAGE = """%(prog)s --checkpoint CKPT|random [--shards SHARDS] [--finetune] [options]
       %(prog)s export --checkpoint CKPT --out FILE [--layout {timm,videomae}] [--format {pth,safetensors,hf}]
                                                                             (train/export.py)"""


def build_parser() -> Parser:
    from train.pretraining.model import MODELS

    parser = Parser(prog="evaluate.py", usage=USAGE, description=__doc__)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="yaml/json of EvalConfig fields (train/configs/finetune_*.yaml); flags override it "
                             "(default: none)")
    for f in fields(EvalConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(EvalConfig, f.name)
        if f.name in GEOMETRY:
            names = {"model": list(MODELS), "positions": list(POSITIONS)}.get(f.name)
            extra = dict(choices=names, metavar="{" + ",".join(names) + "}") if names else {}
            parser.add_argument(flag, type=parse_optional(str if names else int), default=None,
                                help="encoder and clip geometry (default: the checkpoint's; "
                                     f"TrainConfig's {getattr(TrainConfig, f.name)} for 'random')", **extra)
        elif f.name == "token_norm":
            parser.add_argument(flag, type=parse_optional(parse_bool), default=None, metavar="BOOL",
                                help=EVAL_HELP[f.name])
        elif f.name == "finetune":
            parser.add_argument(flag, action="store_true", help=EVAL_HELP[f.name])
        elif f.name == "probe_wd":
            parser.add_argument(flag, type=parse_weight_decay, default=default, metavar="cv|FLOAT",
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        elif f.name == "probe_pool":
            parser.add_argument(flag, choices=list(POOLS), default=default,
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        elif f.name == "probe_wd_grid":
            parser.add_argument(flag, type=lambda text: tuple(float(x) for x in text.split(",") if x.strip()),
                                default=default, metavar="WD,WD,...",
                                help=f"{EVAL_HELP[f.name]} (default: {','.join(f'{x:g}' for x in default)})")
        elif f.name in ("checkpoint", "shards", "out"):
            parser.add_argument(flag, default=None, required=f.name == "checkpoint", help=EVAL_HELP[f.name])
        elif isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=default, metavar="BOOL",
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
    return parser


def parse_args(argv: list[str] | None) -> EvalConfig:
    """The command line as an EvalConfig, checked before any model or shard is loaded: the
    checkpoint exists and is one, the shard set (given, or the checkpoint's) exists. A --config
    file's values become the defaults, so that a flag on the command line wins."""
    from train.cli import check_device, existing_shards
    from train.checkpoints.foreign import checkpoint_shards

    parser = build_parser()
    config = parser.parse_known_args(argv)[0].config
    if config:
        values = load_file(config)
        unknown = set(values) - {f.name for f in fields(EvalConfig)}
        if unknown:
            raise UsageError(f"--config {config}: unknown EvalConfig keys {sorted(unknown)}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if args.checkpoint == "random":
        shards = args.shards or DEMO_SHARDS
    else:
        pretrained_on = checkpoint_shards(args.checkpoint)  # also refuses a missing, unreadable or pickle-only file
        shards = args.shards or pretrained_on or DEMO_SHARDS
    check_device(args.device)
    flag = "--shards" if args.shards or args.checkpoint == "random" else \
        "the checkpoint's shards (give --shards to use another set)"
    existing_shards(resolve_shards(shards), flag)
    values = {f.name: getattr(args, f.name) for f in fields(EvalConfig)}
    return EvalConfig(**{**values, "shards": shards, "out": args.out or ""})


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        from train.export import main as export_main
        return export_main(argv[1:])
    cfg = parse_args(argv)
    check_sources(cfg.shards_path(), cfg.source_root)
    result = evaluate(cfg, log=lambda s: print(s, flush=True))
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun every rank has the result; one writes it
        return result
    out = EvalConfig(**result["config"]).out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['mode']}: top-1 {result['top1']:.3f}, top-{result['top5_k']} {result['top5']:.3f} "
          f"on {result['videos']['val']} val videos ({result['num_classes']} classes, chance "
          f"{result['chance_top1']:.3f}); {result['seconds']['total']:.1f} s -> {out}", flush=True)
    for how, p in result.get("probes", {}).items():
        lo, hi = p["top1_ci95"]
        print(f"  probe {how:<9} top-1 {p['top1']:.3f} [{lo:.3f}, {hi:.3f}] (95 % bootstrap over videos), "
              f"L2 {p['weight_decay']:g}, train top-1 {p['train_top1']:.3f}", flush=True)
    return result


if __name__ == "__main__":
    run_main(main, "evaluate.py")
