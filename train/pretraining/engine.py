"""The training loop: AdamW, warmup + cosine per step, AMP, DDP, checkpoint/resume, logging.

Checkpoints hold tensors and plain python values only, so they load with
`torch.load(weights_only=True)`: model, optimizer, scaler, step, config, and the RNG
states (torch CPU/CUDA, numpy, python). The data position is the step: `train/clips/dataset.py` derives
every clip from (seed, global sample number), and every batch's masks from (seed, its first
sample number), made in the loader's workers (`MaskCollate`).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from train.checkpoints.adopt import init_model
from train.clips.assemble import assemble, resolve as resolve_assemble
from train.clips.keys import SKIPPED, VIDEO
from train.pretraining.config import TrainConfig
from train.clips.dataset import ClipDataset, ClipSpec, MaskCollate, Timer, make_loader
from train.pretraining.dual import decoded_tokens, decoder_mask
from train.pretraining.flops import hidden_tokens, peak_tflops, train_flops
from train.pretraining.memory import AUTO, agree, fit_batch_per_device, probe_peak
from train.pretraining.runs import default_out
from train.pretraining.skips import SkipLog
from train.pretraining.targets import get_target
from train.pretraining.pairing import reads

CHECKPOINT = "checkpoint.pt"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK and the rendezvous' MASTER_ADDR/PORT, on one node
    or many (docs/scaling.md, "Training"); a plain `python` run is a world of one. Each process
    takes the GPU of its local rank before NCCL starts, so no two share one."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), world, local_rank)


def restart_count() -> int:
    """How many times torchrun restarted this node's workers after a failure (0 outside torchrun;
    a node whose workers were restarted only because another node's failed counts 0)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))


def agreed_step(step: int, d: Dist, device: torch.device) -> int:
    """The step every process resumes at; refused when they differ (a multi-node run whose --out
    is not on a file system every node sees: a node without the checkpoint would start over)."""
    if d.world == 1:
        return step
    both = torch.tensor([step, -step], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if int(both[0]) != -int(both[1]):
        raise RuntimeError(f"processes resume at different steps ({-int(both[1])} to {int(both[0])}; rank "
                           f"{d.rank}: {step}): --out must be one folder that every node reads and writes")
    return step


def mean_over_processes(value: float, d: Dist, device: torch.device) -> float:
    """The mean of a per-process value: the logged loss is the global batch's whatever the world size."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / d.world


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    return torch.device(name)


def lr_at(step: int, cfg, peak: float, warmup: int, total: int, final: float | None = None) -> float:
    """Linear warmup to `peak`, then half-cosine down to `final` (default cfg.min_lr) at `total`."""
    final = cfg.min_lr if final is None else final
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_enabled(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast on CUDA when cfg.amp; on CPU only when cfg.amp_cpu asks (tests run the CUDA
    path's casts that way; on most CPUs bf16 is slower than fp32)."""
    return cfg.amp and (device.type == "cuda" or (device.type == "cpu" and cfg.amp_cpu))


def device_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, peak_tflops(name)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and the mask token (MAE)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith("mask_token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, lr: float, betas: tuple[float, float], weight_decay: float,
                   fused: bool = True) -> torch.optim.AdamW:
    """AdamW over `param_groups`; fused into one CUDA kernel when asked and every parameter is on
    CUDA (the same update in fewer kernel launches), the plain AdamW elsewhere."""
    groups = param_groups(model, weight_decay)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused and on_cuda)


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: dict) -> None:
    """Restore a checkpoint's RNG states. A checkpoint from before the loader made the masks also
    holds the main process's mask generator ("mask"): not needed any more, ignored."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model, optimizer, scaler, step: int, cfg: TrainConfig, extra: dict) -> None:
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "step": step, "config": cfg.to_dict(),
        "rng": rng_state(), **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a truncated checkpoint


def keep_checkpoint(path: Path, step: int) -> Path:
    """`path` kept as ckpt_<step>.pt beside it: a hard link (the next save replaces `path` with a
    new file, so the link keeps this one), a copy where the filesystem has no links."""
    kept = path.with_name(f"ckpt_{step}.pt")
    kept.unlink(missing_ok=True)  # a resumed run writing the same step again
    try:
        os.link(path, kept)
    except OSError:
        shutil.copyfile(path, kept)
    return kept


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class MetricsLog:
    """metrics.jsonl (one JSON object per logged step) + TensorBoard, on the main rank only.

    Rows past `start` (the step the run resumes at) are dropped first: steps that a killed run
    logged after its last checkpoint are trained again, and logged once; so is a row the kill cut
    short."""

    def __init__(self, out: Path, enabled: bool, start: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        path = out / "metrics.jsonl"
        if path.exists():
            rows = path.read_text().splitlines(keepends=True)
            kept = [r for r in rows if r.endswith("\n") and json.loads(r)["step"] <= start]
            if len(kept) < len(rows):
                path.write_text("".join(kept))
        self.file = open(path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:  # tensorboard is optional; the JSONL log is the record
            self.tb = None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def batch_by_memory(cfg: TrainConfig, model: torch.nn.Module, device: torch.device, d: Dist, hidden: int,
                    decoded: int, amp: bool) -> tuple[int, str]:
    """`batch_per_device: -1`: the clips per forward that fit this GPU (train/pretraining/memory.py),
    agreed over the processes; 0 (the whole per-process batch) on a CPU. Returns it and what
    the log says of it."""
    if device.type != "cuda":
        return 0, ""
    per_process = cfg.batch_size // d.world
    shape = (3, cfg.num_frames, cfg.input_size, cfg.input_size)
    total = torch.cuda.get_device_properties(device).total_memory
    params = sum(p.numel() for p in model.parameters())
    measured: dict[int, int] = {}

    def measure(batch: int) -> int:
        measured[batch] = probe_peak(model, batch, shape, math.prod(cfg.grid), hidden, decoded, device, amp)
        return measured[batch]

    try:
        cap = fit_batch_per_device(measure, per_process, total, params, cfg.repeated_aug)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        cap = cfg.repeated_aug   # even the larger probe did not fit: one video per forward
    cap = agree(cap, device, d.world)
    peaks = ", ".join(f"{b} clips {m / 2 ** 30:.1f} GiB" for b, m in sorted(measured.items()))
    return cap, f" (sized by memory: {total / 2 ** 30:.0f} GiB GPU; probes {peaks or 'out of memory'})"


def train(cfg: TrainConfig, log=print) -> dict:
    """Pretrain as `cfg` says; returns a summary (final step, first/last logged loss, speed)."""
    d = init_distributed(cfg.device)
    device = resolve_device(cfg.device, d)
    out = Path(cfg.out or default_out(cfg))
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        log(f"motion-mae pretrain, world {d.world}, device {device}\n{cfg.describe()}")
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    torch.manual_seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)
    random.seed(cfg.seed + d.rank)
    target = get_target(cfg.target)
    norm = target.norm(cfg.target_norm)
    needs = reads(cfg.mask, cfg.target)
    spec = ClipSpec(cfg.num_frames, cfg.sampling_rate, cfg.input_size, cfg.tubelet, cfg.min_crop, cfg.flip,
                    frozenset(needs), cfg.repeated_aug, cfg.traj_len, resolve_assemble(cfg.assemble, device))
    dataset = ClipDataset(cfg.shards_ref(), spec, cfg.seed, cfg.split, skip_damaged=cfg.max_skipped_videos > 0)
    grid = cfg.grid
    heads = target.heads(cfg.tubelet, cfg.patch_size, dataset.traj_len)
    out_dim = sum(h.dim for h in heads)
    model = cfg.build_model(heads)
    model.to(device)
    peak_lr, final_lr = cfg.lr(), cfg.final_lr()
    optimizer = make_optimizer(model, peak_lr, cfg.betas, cfg.weight_decay, cfg.fused_adamw)
    amp = autocast_enabled(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 needs no loss scaling; kept for fp16 swaps

    hidden = hidden_tokens(cfg.mask, grid, cfg.ratio)
    visible, decoded = math.prod(grid) - hidden, decoded_tokens(hidden, cfg.decoder_ratio)
    # The config states the global batch; this process runs `accum` micro-batches of `micro` clips.
    cap, sized = None, ""
    if cfg.batch_per_device == AUTO:
        cap, sized = batch_by_memory(cfg, model, device, d, hidden, decoded, amp)
    micro, accum = cfg.micro_batches(d.world, cap)
    steps_per_epoch = max(1, len(dataset) * cfg.repeated_aug // cfg.batch_size)  # an epoch = every video read once
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch
    warmup = min(total, cfg.warmup_steps + round(cfg.warmup_epochs * steps_per_epoch))
    flops_per_clip = train_flops(cfg.model, grid, visible, heads, cfg.tubelet, cfg.patch_size,
                                 cfg.decoder_depth, cfg.decoder_dim, decoded)
    device_name, peak = device_peak_tflops(device)

    step = 0
    resume = str(out / CHECKPOINT) if cfg.resume == "auto" and (out / CHECKPOINT).exists() else cfg.resume
    if resume and resume != "auto":
        ckpt = load_checkpoint(resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # a checkpoint of a GPU run resumed on a CPU, or back
            group["fused"] = optimizer.defaults["fused"]
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        if d.main:
            log(f"resumed from {resume} at step {step}" + (f" (restart {restart_count()})" if restart_count() else ""))
    elif cfg.init:
        notes = init_model(model, cfg.init, cfg.num_frames, cfg.input_size, cfg.positions)
        if d.main:
            log("\n".join(f"init: {note}" for note in notes))
    step = agreed_step(step, d, device)

    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if d.world > 1 else model
    forward = torch.compile(ddp) if cfg.compile else ddp
    if d.main:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"{cfg.model}: {n_params / 1e6:.2f}M params, grid {grid}, target {cfg.target} ({out_dim}/token), "
            f"mask {cfg.mask} {cfg.ratio}"
            + (f", decoder reconstructs {decoded} of {hidden} hidden tokens ({cfg.decoder_mask})" if decoded < hidden else "")
            + f", {len(dataset)} videos, {steps_per_epoch} steps/epoch, "
            f"{total} steps, warmup {warmup}, lr {peak_lr:.3g} -> {final_lr:.3g}")
        log(f"batch {cfg.batch_size} clips/step = {d.world} processes x {accum} micro-batches x {micro} clips{sized}"
            + (f" ({micro // cfg.repeated_aug} videos x {cfg.repeated_aug} crops)" if cfg.repeated_aug > 1 else "")
            + f"; {flops_per_clip / 1e9:.1f} GFLOPs per clip (fwd+bwd, analytic); autocast bf16 {amp}; "
            f"compile {cfg.compile}; fused AdamW {optimizer.defaults['fused']}; device {device_name}"
            + (f", peak {peak:.0f} TFLOP/s bf16" if peak else "")
            + f"; clips assembled: {spec.assemble}")
    loader = make_loader(dataset, micro, step * accum, cfg.seed, d.rank, d.world, cfg.num_workers,
                         pin_memory=device.type == "cuda",
                         masks=MaskCollate(cfg.mask, grid, cfg.ratio, cfg.seed, cfg.repeated_aug))
    metrics = MetricsLog(out, d.main, step)
    skips = SkipLog(out, cfg.max_skipped_videos, d.rank, log)
    summary = {"first_loss": None, "last_loss": None, "flops_per_clip": flops_per_clip, "micro_batch": micro,
               "accumulation": accum, "sized_by_memory": bool(sized)}
    timer, data_time, step_time, window, loss_sum = Timer(), 0.0, 0.0, 0, 0.0

    model.train()
    # The ~0.4 M objects alive now (torch, zarr, the model) go to the permanent generation, so
    # full collections stop walking them: in a 64 px run with the loader in this process they
    # took 0.5-1.2 ms per clip (a full pass over ~450 k objects every ~1000 clips). Forked loader
    # workers then also touch fewer of the parent's pages. Undone when training returns.
    gc.collect()
    gc.freeze()
    batches = iter(loader)
    end = min(total, cfg.stop_at) if cfg.stop_at > 0 else total
    while step < end:
        lr = lr_at(step, cfg, peak_lr, warmup, total, final_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for k in range(accum):
            batch = next(batches)
            if SKIPPED in batch:
                skips.record(batch.pop(SKIPPED), step)
            data_time += timer.lap()
            mask = batch.pop("mask")                                            # (B,N), made by the loader
            # dual masking: the decoded share of the hidden tokens, drawn here on the CPU, seeded by the
            # step (a resume draws it again)
            decode = mask if decoded == hidden else decoder_mask(
                mask, cfg.decoder_ratio, torch.Generator().manual_seed(
                    int(np.random.SeedSequence([cfg.seed, step, k, d.rank]).generate_state(1)[0])),
                grid, cfg.decoder_mask)
            batch = assemble(batch, cfg.input_size, device)  # frames decoded here with assemble "device"
            batch = {key: v.to(device, non_blocking=True) for key, v in batch.items()}
            mask, decode = mask.to(device, non_blocking=True), decode.to(device, non_blocking=True)
            with torch.no_grad():
                tgt, weight = target.build(batch, cfg.tubelet, cfg.patch_size, cfg.norm_target, norm)  # (B,N,C)
            # DDP all-reduces gradients on the last micro-batch only
            sync = ddp.no_sync() if d.world > 1 and k < accum - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    pred = forward(batch[VIDEO], mask, decode)               # (B,Nd,C)
                loss = target.loss(pred.float(), tgt, weight, decode)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"non-finite loss {loss.item()} at step {step}; stopping (lr {lr:.3g})")
                # the mean over micro-batches, as DDP averages over processes
                scaler.scale(loss / accum).backward()
            step_loss += loss.item() / accum
            step_time += timer.lap()  # so the next micro-batch's wait counts as data time alone
        if cfg.clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        loss_sum += step_loss
        window += 1
        step_time += timer.lap()

        if step % cfg.log_every == 0 or step == end:
            seconds = max(step_time + data_time, 1e-9)
            row = {"step": step, "loss": mean_over_processes(loss_sum / window, d, device), "lr": lr,
                   "clips_per_s": window * cfg.batch_size / seconds,
                   "data_time": data_time / window, "step_time": seconds / window}
            # achieved model FLOP/s per device (analytic FLOPs, so recomputation or padding never inflates it)
            row["tflops_per_device"] = row["clips_per_s"] * flops_per_clip / d.world / 1e12
            if peak:
                row["mfu"] = row["tflops_per_device"] / peak
            if summary["first_loss"] is None:
                summary["first_loss"] = row["loss"]
            summary["last_loss"] = row["loss"]
            summary.update(clips_per_s=row["clips_per_s"], step_time=row["step_time"], data_time=row["data_time"],
                           tflops_per_device=row["tflops_per_device"], mfu=row.get("mfu"))
            metrics.log(row)
            if d.main:
                log(f"step {step}/{total} loss {row['loss']:.4f} lr {lr:.2e} {row['clips_per_s']:.1f} clips/s "
                    f"data {row['data_time'] * 1000:.0f} ms / step {row['step_time'] * 1000:.0f} ms "
                    f"{row['tflops_per_device']:.3g} TFLOP/s/device" + (f" MFU {row['mfu']:.1%}" if peak else ""))
            data_time = step_time = loss_sum = 0.0
            window = 0
        keep = cfg.keep_every > 0 and step % cfg.keep_every == 0
        if d.main and (step % cfg.save_every == 0 or step == end or keep):
            save_checkpoint(out / CHECKPOINT, model, optimizer, scaler, step, cfg,
                            {"traj_len": dataset.traj_len, "out_dim": out_dim, "heads": [h.to_dict() for h in heads]})
            if keep:
                keep_checkpoint(out / CHECKPOINT, step)
    metrics.close()
    gc.unfreeze()
    if d.world > 1:
        dist.destroy_process_group()
    summary["step"] = step
    return summary
