"""End-to-end fine-tuning of a pretrained encoder, as VideoMAE / MGMAE / MME fine-tune.

The classifier (`train.eval.classifier.VideoClassifier`) trains on random clips of the labelled
train videos; `train/evaluate.py --finetune` runs this, then tests on multi-view val clips.
Per training clip (one generator per sample, `np.random.default_rng([seed, g])`):

    frames   stride window (K400) or one frame per TSN segment (SSv2)      train.clips.sampling
    crop     square of min_crop (the pretraining crop) or random resized (area >= min_area)
    flip     motion-consistent horizontal flip; off where labels have a direction (SSv2)
    RandAug  timm RandAugment, the same draw on every frame                train.clips.augment
    erase    timm RandomErasing, the same box on every frame
    repeat   `repeated_aug` clips of each video in the same batch (VideoMAE num_sample)

Per micro-batch: timm Mixup / CutMix (one box on every frame) with label smoothing, soft-target
cross-entropy. AdamW with layer-wise lr decay and no decay on biases and norms, linear
warmup + cosine per step, drop path in the blocks, bf16 autocast on CUDA, DDP under torchrun.
`batch_size` is the global batch in videos: split over the processes, and into micro-batches of
at most `batch_per_device` clips whose gradients accumulate (train.clips.batching).
Recipes and their sources: docs/finetuning.md.
"""
from __future__ import annotations

import contextlib

import cv2
import numpy as np
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from shards import open_shards

from train.clips.augment import erase_clip, randaugment_clip
from train.clips.dataset import RESIZE, ClipDataset, ClipSampler, Timer, crop_box, frame_indices, normalize, seed_worker
from train.clips.keys import LABEL, VIDEO
from train.pretraining.engine import Dist, lr_at
from train.clips.sampling import Box, random_resized_box, tsn_indices
from train.eval.classifier import VideoClassifier
from train.eval.config import EvalConfig

ASPECT = (3 / 4, 4 / 3)  # random resized crop aspect range (VideoMAE, torchvision)


def check(cfg: EvalConfig, world: int = 1) -> None:
    """Refuse option combinations before any work is done."""
    if cfg.repeated_aug < 1 or cfg.test_crops < 1 or cfg.clips < 1 or cfg.batch_size < 1 or cfg.encode_batch < 1:
        raise ValueError("batch_size, encode_batch, repeated_aug, clips and test_crops must be >= 1")
    micro, _ = cfg.micro_batches(world)
    if mixing(cfg) and micro % 2:
        raise ValueError(f"mixup / cutmix pair each clip with the micro-batch reversed and need an even batch: "
                         f"{micro} clips per forward (batch_size {cfg.batch_size} x repeated_aug "
                         f"{cfg.repeated_aug} over {world} processes, batch_per_device {cfg.batch_per_device})")
    if not 0.0 <= cfg.min_area <= 1.0:
        raise ValueError(f"min_area {cfg.min_area} must be in [0, 1] (0 = the square crop of min_crop)")


def mixing(cfg: EvalConfig) -> bool:
    return cfg.mixup > 0 or cfg.cutmix > 0


# ---- training clips ---------------------------------------------------------------------------

def read_frames(video, idx: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Stored frames `idx` (T,) of a shard video cropped to `box` and resized -> (T,size,size,3) uint8."""
    x0, y0, w, h = box
    uniq, inv = np.unique(idx, return_inverse=True)
    frames = video["frames"][uniq][inv][:, y0:y0 + h, x0:x0 + w]
    return np.stack([cv2.resize(f, (size, size), interpolation=RESIZE) for f in frames])  # as train.clips.dataset


class FinetuneClips(ClipDataset):
    """Augmented training clips of labelled videos: items (g, video index) -> {"video" (3,T,S,S), "label"}."""

    def __init__(self, shards, cfg: EvalConfig, ids: list[str], labels: dict[str, int]):
        super().__init__(shards, cfg.spec(train=True), cfg.seed)
        self.cfg = cfg
        self.ids = list(ids)
        self.labels = [labels[i] for i in self.ids]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        g, index = item
        if self._ds is None:
            self._ds = open_shards(self.shards)
        cfg, spec = self.cfg, self.spec
        rng = np.random.default_rng([self.seed, g])
        video = self._video(self.ids[index])
        n, height, width = (int(video.attrs[k]) for k in ("num_frames", "height", "width"))
        # draws in the order of train.clips.dataset.read_clip: with every option off, the clips of ClipDataset
        idx = tsn_indices(n, spec.num_frames, rng) if cfg.tsn else frame_indices(n, spec, rng)[0]
        if cfg.min_area > 0:
            box = random_resized_box(height, width, (cfg.min_area, 1.0), ASPECT, rng)
        else:
            x0, y0, side = crop_box(height, width, spec, rng)
            box = (x0, y0, side, side)
        frames = read_frames(video, idx, box, spec.input_size)                         # (T,S,S,3)
        if spec.flip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        seed = int(rng.integers(2 ** 31))
        if cfg.randaug:
            frames = randaugment_clip(np.ascontiguousarray(frames), cfg.randaug, seed)
        clip = torch.from_numpy(normalize(frames))                                     # (3,T,S,S)
        if cfg.reprob > 0:
            clip = erase_clip(clip, cfg.reprob, seed + 1)
        return {VIDEO: clip, LABEL: torch.tensor(self.labels[index])}


class RepeatedSampler(Sampler):
    """Each (g, video) of `base` `repeats` times in a row as samples g * repeats + r: the same
    video in one batch under different augmentations (repeated augmentation, VideoMAE's
    num_sample; an epoch still counts videos)."""

    def __init__(self, base: ClipSampler, repeats: int):
        self.base, self.repeats = base, repeats

    def __iter__(self):
        for g, index in self.base:
            for r in range(self.repeats):
                yield g * self.repeats + r, index


def make_loader(dataset: FinetuneClips, cfg: EvalConfig, d: Dist, micro: int, pin_memory: bool) -> DataLoader:
    """Endless micro-batches of `micro` clips (micro / repeated_aug videos) for this rank."""
    sampler = RepeatedSampler(ClipSampler(len(dataset), cfg.seed, 0, d.rank, d.world), cfg.repeated_aug)
    return DataLoader(dataset, batch_size=micro, sampler=sampler,
                      num_workers=cfg.num_workers, pin_memory=pin_memory, drop_last=True,
                      worker_init_fn=seed_worker, prefetch_factor=4 if cfg.num_workers > 0 else None,
                      persistent_workers=cfg.num_workers > 0)


# ---- mixing and the loss ----------------------------------------------------------------------

def make_mixup(cfg: EvalConfig, num_classes: int) -> Mixup | None:
    """timm's Mixup / CutMix per batch with label smoothing folded into the soft targets; None when both are off."""
    if not mixing(cfg):
        return None
    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                 switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.smoothing,
                 num_classes=num_classes)


def mix_clips(mixup: Mixup, video: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """video (B,3,T,H,W), labels (B,) -> mixed video (same shape), soft targets (B,classes).

    timm cuts the CutMix box on the last two axes of a (B,C,H,W) batch. Given a 5-D video it
    would cut (T,H) with the area of (H,W), as VideoMAE's and VideoMAEv2's code do; seen as
    (B,3T,H,W) the box is cut on H and W of every frame, and the label weight is its area."""
    B, C, T, H, W = video.shape
    frames, target = mixup(video.reshape(B, C * T, H, W), labels)
    return frames.view(B, C, T, H, W), target


def make_criterion(cfg: EvalConfig, mixup: Mixup | None) -> nn.Module:
    """VideoMAE's choice: soft-target CE under mixup (smoothing is in the targets), else
    label-smoothing CE, else plain CE."""
    if mixup is not None:
        return SoftTargetCrossEntropy()
    if cfg.smoothing > 0:
        return LabelSmoothingCrossEntropy(cfg.smoothing)
    return nn.CrossEntropyLoss()


# ---- optimisation -----------------------------------------------------------------------------

def layer_groups(model: VideoClassifier, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with a per-layer lr scale (patch_embed = layer 0, block i = i + 1, the rest
    depth + 1) and no weight decay on biases and norms."""
    depth = len(model.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = 0 if name.startswith("patch_embed") else \
            int(name.split(".")[1]) + 1 if name.startswith("blocks.") else depth + 1
        decay = p.ndim > 1
        g = groups.setdefault((layer, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0,
                                               "lr_scale": layer_decay ** (depth + 1 - layer)})
        g["params"].append(p)
    return list(groups.values())


def train_classifier(model: VideoClassifier, cfg: EvalConfig, ids: list[str], labels: dict[str, int],
                     device: torch.device, d: Dist, log) -> dict:
    """Fine-tune `model` in place on random clips of `ids` (options checked by `check`); returns the loss summary.

    `cfg.batch_size` is the global batch in videos; this process runs `accum` micro-batches of
    `micro` clips per step and accumulates their gradients. Mixup / CutMix pair clips within a
    micro-batch, as VideoMAE's within one GPU's batch."""
    dataset = FinetuneClips(cfg.shards_ref(), cfg, ids, labels)
    micro, accum = cfg.micro_batches(d.world)
    steps_per_epoch = max(1, len(dataset) // cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, round(cfg.epochs * steps_per_epoch))
    warmup = min(total, round(cfg.warmup_epochs * steps_per_epoch))
    peak = cfg.lr()
    optimizer = torch.optim.AdamW(layer_groups(model, cfg.weight_decay, cfg.layer_decay), lr=peak)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if d.world > 1 else model
    loader = make_loader(dataset, cfg, d, micro, pin_memory=device.type == "cuda")
    mixup = make_mixup(cfg, model.head.out_features)
    criterion = make_criterion(cfg, mixup)
    np.random.seed(cfg.seed + d.rank)  # timm's Mixup draws lambda and the box from numpy's global generator
    amp = cfg.amp and device.type == "cuda"
    if d.main:
        log(f"fine-tuning: {len(dataset)} videos, {total} steps ({steps_per_epoch}/epoch), warmup {warmup}, "
            f"lr {peak:.3g}, layer decay {cfg.layer_decay}, drop path {cfg.drop_path}, "
            f"batch {cfg.batch_size} videos x {cfg.repeated_aug} clips/step = {d.world} processes x {accum} "
            f"micro-batches x {micro} clips, mixup {cfg.mixup} cutmix {cfg.cutmix} "
            f"smoothing {cfg.smoothing}, randaug {cfg.randaug or 'off'}, erase {cfg.reprob}, "
            f"{'TSN segments' if cfg.tsn else f'stride {cfg.sampling_rate}'}")
    model.train()
    timer, losses, batches = Timer(), [], iter(loader)
    for step in range(total):
        lr = lr_at(step, cfg, peak, warmup, total)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        step_loss, data_time, step_time = 0.0, 0.0, 0.0
        for k in range(accum):
            batch = next(batches)
            data_time += timer.lap()
            video = batch[VIDEO].to(device, non_blocking=True)                      # (B,3,T,S,S)
            target = batch[LABEL].to(device)                                        # (B,) or (B,classes)
            if mixup is not None:
                video, target = mix_clips(mixup, video, target)
            # DDP all-reduces gradients on the last micro-batch only
            sync = ddp.no_sync() if d.world > 1 and k < accum - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = ddp(video)                                                # (B,classes)
                loss = criterion(logits.float(), target)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"non-finite loss {loss.item()} at fine-tuning step {step}; "
                                       f"stopping (lr {lr:.3g})")
                (loss / accum).backward()  # the mean over micro-batches, as DDP averages over processes
            step_loss += loss.item() / accum
            step_time += timer.lap()
        optimizer.step()
        losses.append(step_loss)
        step_time += timer.lap()
        if d.main and ((step + 1) % cfg.log_every == 0 or step + 1 == total):
            log(f"step {step + 1}/{total} loss {np.mean(losses[-cfg.log_every:]):.4f} lr {lr:.2e} "
                f"data {data_time * 1000:.0f} ms / step {(data_time + step_time) * 1000:.0f} ms")
    model.eval()
    return {"steps": total, "clips_per_step": cfg.batch_size * cfg.repeated_aug,
            "first_loss": losses[0], "last_loss": losses[-1],
            "last_window_loss": float(np.mean(losses[-cfg.log_every:]))}  # the last logged value
