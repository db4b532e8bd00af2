"""The study's questions in one short GPU window: clips prepared on the CPU, held on the GPU.

    python -m train.studies.gpu_window prepare --out runs/gpu_window/clips.pt        # CPU, where the shards are
    python -m train.studies.gpu_window run --data runs/gpu_window/clips.pt --device cuda --minutes 9 \\
        --out runs/gpu_window --report runs/gpu_window/results.md                       # GPU

The CPU study (train/study.py) reads every clip from the shards as it trains; a study-sized
model on a GPU waits for that loader. Here the loader runs once, before the window:

**prepare** (CPU; the study's config, train/configs/study.yaml, fixes the corpus and the clip
geometry) writes one file of tensors, loaded with `torch.load(weights_only=True)`:
- `--train-clips` clips of the train split, class-balanced (`balanced_videos`), one fixed crop
  each (the study's `ClipDataset` geometry and flips), as uint8 levels (assemble "uint8"), with
  MME's inputs along the tracks (`traj`, `traj_valid`, `traj_hog`; float16): the tracking and
  HOG, the costly part of MME's target, are done here; `Target.build` turns them into the
  target on the GPU, as the engine does;
- `--draws` masks per train clip for every (mask, ratio) the runs use, made by the registered
  mask functions from the clips' motion vectors (so `mv` is not shipped);
- `--heldout-clips` clips of the val split, drawn as `train/eval/heldout.py` draws them (the
  same class-balanced clips, crops without flip, one mask per clip from its own generator);
- per method, the held-out baseline (the better of predicting 0 and the cross-fitted best
  constant, heldout.py's functions): it does not depend on the model, so it is computed once.

**run** (GPU) holds the file on the device and trains, per run, a fresh model over the
prepared clips for `--epochs` epochs: the 2 x 2 {tube, mgm} x {pixel, mme} for every seed at
`--model` with a `--decoder-dim` x `--decoder-depth` decoder, plus the pixel runs at the
study's own model (the control for "does the pixel target learn with a larger model"). After
each run, its held-out loss on the prepared held-out clips against the method's baseline: the
ratio the study's gate reads. `--jobs N` runs N processes side by side on the GPU (a small
model leaves an H100 mostly idle one at a time). `--minutes` is a hard budget (training stops
RESERVE_S before it): runs are ordered seed-major (seed 0 of every method first, then the
controls, then the other seeds), a run still going at the deadline stops there and is reported
as cut short, and runs not started are listed as such.

The engine (train/pretraining/engine.py) builds its dataset from shards and cannot take
in-memory clips, so **run** is a small loop over pre-made batches that calls the engine's own
pieces: the model (`TrainConfig.build_model`), the optimiser groups (`param_groups`), the
schedule (`lr_at`), bf16 autocast (`autocast_enabled`), the frame normalization (`assemble`)
and the target's `build` and `loss`. It leaves out what a window does not need: DDP, gradient
accumulation, checkpoints, resume, metrics.jsonl.

Where this differs from the CPU study: one crop per clip for every epoch (the study draws a new
clip per visit), a bank of `--draws` masks per clip (the study a fresh mask per visit), and
`--heldout-clips` held-out clips (the study 256). The default sizes keep the file near 50 MiB
(a clip at the study's geometry is ~140 kB), small enough to copy to a GPU machine in seconds.
"""
from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shards import open_shards
from shards.cli import ArgumentParser, run_main
from train.cli import check_device, existing_file, existing_shards, output_folder
from train.clips.assemble import assemble
from train.clips.dataset import ClipDataset, ClipSpec, collate_clips
from train.clips.keys import LABEL, TRAJ_HOG, VIDEO, VIDEO_U8
from train.eval.heldout import balanced_videos, best_constant, constant_grad, heldout_baseline
from train.pretraining.config import TrainConfig, load_file
from train.pretraining.engine import autocast_enabled, lr_at, param_groups
from train.pretraining.masks import batch_generator, get_mask
from train.pretraining.pairing import reads
from train.pretraining.targets import get_target
from train.studies.config import DEFAULT_CONFIG, TINY, StudyConfig
from train.studies.stages import extract
from train.studies.stats import gate, mean_std, paired

FORMAT = 1                                   # of the prepared file; `load` refuses another
METHODS = ("tube+pixel", "mgm+pixel", "tube+mme", "mgm+mme")
HALF = ("traj", TRAJ_HOG)                  # shipped as float16: 2 bytes a value instead of 4
HELDOUT_SEED = 0                             # train/heldout.py's default: the same clips and masks
CHUNK = 64                                   # clips per mask call, per held-out forward
RESERVE_S = 30.0                             # of the run's budget: held-out losses of the runs cut short, the report
VIDEO_INDEX = "video_index"                  # each clip's video in its split: the best constant is cross-fitted by video


# ---- prepare (CPU) ------------------------------------------------------------------------------

def study_config(path: str | Path = DEFAULT_CONFIG, tiny: bool = False, shards: str = "") -> StudyConfig:
    """The study's config as train/study.py reads it (`--tiny`: its CI variant), without fine-tuning."""
    values = load_file(str(path))
    values["train"] = dict(values.get("train") or {})
    values["finetune"] = {}
    if tiny:
        values.update({k: v for k, v in TINY.items() if k not in ("train", "finetune")})
        values["train"].update(TINY["train"])
    if shards:
        values["shards"] = shards
    return study_from_dict(values)


def study_from_dict(values: dict) -> StudyConfig:
    """A StudyConfig from its fields as yaml or JSON hold them (lists where it keeps tuples)."""
    return StudyConfig(**{**values, **{k: tuple(values[k]) for k in ("methods", "seeds", "checkpoints")}})


def read_clips(path: Path, spec: ClipSpec, seed: int, split: str, clips: int, workers: int) -> dict[str, torch.Tensor]:
    """`clips` clips of `split`, class-balanced over its videos (clip g from video `balanced_videos`[g],
    drawn by ClipDataset from (seed, g)): the collated batch with `label` and VIDEO_INDEX (clips,) added."""
    dataset = ClipDataset(path, spec, seed, split)
    with open_shards(path) as ds:
        labels = ds.labels(split or None)
    video_labels = [labels.get(vid) for vid in dataset.ids]
    videos = balanced_videos(video_labels, clips, seed)
    items = list(enumerate(videos))
    loader = DataLoader(dataset, batch_size=CHUNK, sampler=items, num_workers=workers, collate_fn=collate_clips)
    parts = list(loader)
    batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    batch[LABEL] = torch.tensor([-1 if video_labels[v] is None else video_labels[v] for v in videos])
    batch[VIDEO_INDEX] = torch.tensor(videos)
    return batch


def chunks(batch: dict, n: int):
    for start in range(0, n, CHUNK):
        yield start, {k: v[start:start + CHUNK] for k, v in batch.items()}


def mask_bank(batch: dict, mask: str, grid: tuple[int, int, int], ratio: float, draws: int, seed: int) -> torch.Tensor:
    """(clips, draws, N) bool: `draws` masks per clip, each chunk's from its own generator."""
    n = len(batch[VIDEO_U8])
    out = torch.zeros(n, draws, math.prod(grid), dtype=torch.bool)
    for d in range(draws):
        for start, part in chunks(batch, n):
            out[start:start + CHUNK, d] = get_mask(mask)(part, grid, ratio, batch_generator(seed, d * n + start))
    return out


def heldout_masks(batch: dict, mask: str, grid: tuple[int, int, int], ratio: float) -> torch.Tensor:
    """(clips, N) bool: clip g's mask from its own generator, as train/eval/heldout.py makes it."""
    fn = get_mask(mask)
    return torch.cat([fn({k: v[g:g + 1] for k, v in batch.items()}, grid, ratio,
                         torch.Generator().manual_seed(HELDOUT_SEED * 1_000_003 + g))
                      for g in range(len(batch[VIDEO_U8]))])


def baseline(batch: dict, mask: torch.Tensor, cfg: TrainConfig) -> dict:
    """Held-out predict-0 and cross-fitted best-constant losses of `cfg`'s target on these clips and
    masks, and the better of the two (train/eval/heldout.py's definitions, per clip, mean over clips)."""
    target = get_target(cfg.target)
    norm = target.norm(cfg.target_norm)
    videos = batch[VIDEO_INDEX].tolist()
    zero_sum, quads = 0.0, []
    for start, part in chunks(inputs(batch), len(videos)):
        part = assemble(part, cfg.input_size, torch.device("cpu"))
        tgt, weight = target.build(part, cfg.tubelet, cfg.patch_size, cfg.norm_target, norm)
        m = mask[start:start + CHUNK]
        shape = (int(m[0].sum()), tgt.shape[-1])
        for i in range(len(m)):
            one = (tgt[i:i + 1], weight[i:i + 1], m[i:i + 1])
            (z0, g0), (_, g1) = (constant_grad(target.loss, value, torch.Size(shape), one) for value in (0.0, 1.0))
            zero_sum += z0
            quads.append((videos[start + i], z0, (g1 - g0) / 2, -g0 / 2))
    zero, best = zero_sum / len(videos), best_constant(quads)
    return {"predict0": zero, "predict_mean": best, "baseline": heldout_baseline(zero, best)}


def shipped(batch: dict) -> dict[str, torch.Tensor]:
    """The keys a run reads (levels, labels, MME's inputs), MME's floats as float16."""
    keep = {VIDEO_U8, LABEL, VIDEO_INDEX, "traj", "traj_valid", TRAJ_HOG}
    return {k: (v.half() if k in HALF else v).contiguous() for k, v in batch.items() if k in keep}


def prepare(cfg: StudyConfig, out: Path, train_clips: int = 256, heldout_clips: int = 96, draws: int = 8,
            seed: int = 0, heldout_split: str = "val", workers: int = 0, log=print) -> dict:
    """Read, mask and save the window's clips (module docstring); returns the file's metadata."""
    start = time.perf_counter()
    base = cfg.base_train()
    runs = {m: cfg.run_config(m, cfg.seeds[0]) for m in METHODS}
    needs = frozenset().union(*(reads(c.mask, c.target) for c in runs.values()))
    spec = ClipSpec(base.num_frames, base.sampling_rate, base.input_size, base.tubelet, base.min_crop, base.flip,
                    needs, traj_len=base.traj_len, assemble="uint8")
    path = cfg.shards_path()
    log(f"gpu window: reading {train_clips} train and {heldout_clips} held-out clips of {path}")
    train = read_clips(path, spec, seed, base.split, train_clips, workers)
    held = read_clips(path, replace(spec, flip=False), HELDOUT_SEED, heldout_split, heldout_clips, workers)
    grid = base.grid
    sets = sorted({(c.mask, c.ratio) for c in runs.values()})
    data = {"train": shipped(train), "heldout": shipped(held), "masks": {}, "heldout_masks": {}}
    for mask, ratio in sets:
        key = mask_key(mask, ratio)
        data["masks"][key] = mask_bank(train, mask, grid, ratio, draws, seed)
        data["heldout_masks"][key] = heldout_masks(held, mask, grid, ratio)
    baselines = {m: baseline(held, data["heldout_masks"][mask_key(c.mask, c.ratio)], c) for m, c in runs.items()}
    meta = {"format": FORMAT, "study": cfg.to_dict(), "shards": str(path), "seed": seed, "draws": draws,
            "train_clips": train_clips, "heldout_clips": heldout_clips, "heldout_split": heldout_split,
            "traj_len": int(train["traj"].shape[-2]), "baselines": baselines,
            "seconds": round(time.perf_counter() - start, 1)}
    data["meta"] = json.dumps(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, out)
    log(f"wrote {out}: {out.stat().st_size / 2 ** 20:.1f} MiB in {meta['seconds']} s; held-out baselines "
        + ", ".join(f"{m} {b['baseline']:.4f}" for m, b in baselines.items()))
    return meta


def mask_key(mask: str, ratio: float) -> str:
    return f"{mask}@{ratio:g}"


# ---- run (GPU) ----------------------------------------------------------------------------------

def load(path: str | Path, device: torch.device | str) -> dict:
    """The prepared file on `device`, MME's inputs back to float32; refuses another format."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(data.pop("meta"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: prepared file format {meta.get('format')}, this code reads {FORMAT}; prepare it again")

    def put(x):
        if isinstance(x, dict):
            return {k: put(v) for k, v in x.items()}
        return (x.float() if x.dtype == torch.float16 else x).to(device)
    return {**put(data), "meta": meta}


@dataclass(frozen=True)
class RunSpec:
    method: str               # mask+target
    seed: int
    model: str
    decoder_dim: int | None
    decoder_depth: int | None
    epochs: int
    batch_size: int
    role: str = "grid"        # "grid": the 2 x 2; "control": the pixel runs at the study's model

    @property
    def name(self) -> str:
        return f"{self.method}/{self.model}/seed{self.seed}"


def plan(study: StudyConfig, methods=METHODS, seeds=(0, 1, 2, 3, 4), model: str = "vit_tiny",
         decoder_dim: int | None = 192, decoder_depth: int | None = 2, epochs: int = 100, batch_size: int = 64,
         controls: bool = True) -> list[RunSpec]:
    """Seed-major: every method at seed 0, the controls, then the other seeds, so that a window cut
    short still holds every method and the control."""
    base = study.base_train()
    grid = [RunSpec(m, s, model, decoder_dim, decoder_depth, epochs, batch_size) for s in seeds for m in methods]
    extra = [RunSpec(m, seeds[0], base.model, base.decoder_dim, base.decoder_depth, epochs, batch_size, "control")
             for m in methods if m.endswith("+pixel")] if controls and base.model != model else []
    return grid[:len(methods)] + extra + grid[len(methods):]


def run_config(study: StudyConfig, spec: RunSpec, steps: int, device: str) -> TrainConfig:
    return replace(study.run_config(spec.method, spec.seed), model=spec.model, decoder_dim=spec.decoder_dim,
                   decoder_depth=spec.decoder_depth, batch_size=spec.batch_size, max_steps=steps, device=device,
                   num_workers=0).validate()


def train_run(data: dict, spec: RunSpec, device: torch.device, deadline: float) -> dict | None:
    """One pretraining run over the prepared clips, then its held-out loss; stops at `deadline`
    (None: the deadline had passed before it started)."""
    start = time.perf_counter()
    if time.time() >= deadline:
        return None
    study = study_from_dict(data["meta"]["study"])
    train, n = data["train"], len(data["train"][LABEL])
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total = spec.epochs * steps_per_epoch
    cfg = run_config(study, spec, total, device.type)
    target = get_target(cfg.target)
    norm = target.norm(cfg.target_norm)
    key = mask_key(cfg.mask, cfg.ratio)
    bank = data["masks"][key]                                                      # (n, draws, N)
    torch.manual_seed(cfg.seed)
    model = cfg.build_model(target.heads(cfg.tubelet, cfg.patch_size, data["meta"]["traj_len"])).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr(), betas=cfg.betas)
    warmup = min(total, cfg.warmup_steps + round(cfg.warmup_epochs * steps_per_epoch))
    amp = autocast_enabled(cfg, device)
    order = torch.Generator().manual_seed(cfg.seed)                                # clip order and mask draws
    losses, epoch_losses, step = [], [], 0

    def end_epoch() -> None:
        """The epoch's mean loss: one device sync an epoch, not one a step; a non-finite loss stops the run."""
        if losses:
            mean = torch.stack(losses).mean().item()
            if not math.isfinite(mean):
                raise RuntimeError(f"{spec.name}: non-finite loss in the epoch ending at step {step}")
            epoch_losses.append(mean)
            losses.clear()

    model.train()
    while step < total and time.time() < deadline:
        if step % steps_per_epoch == 0:
            end_epoch()
            perm = torch.randperm(n, generator=order).to(device)
            draw = torch.randint(bank.shape[1], (n,), generator=order).to(device)
        idx = perm[(step % steps_per_epoch) * spec.batch_size:][:spec.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg, cfg.lr(), warmup, total, cfg.final_lr())
        batch = assemble({k: v[idx] for k, v in inputs(train).items()}, cfg.input_size, device)
        mask = bank[idx, draw[idx]]                                                # (B,N)
        with torch.no_grad():
            tgt, weight = target.build(batch, cfg.tubelet, cfg.patch_size, cfg.norm_target, norm)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(batch[VIDEO], mask)                                    # (B,Nm,C)
        loss = target.loss(pred.float(), tgt, weight, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        step += 1
    end_epoch()
    train_seconds = time.perf_counter() - start
    held = heldout(model, data, cfg, key, amp)
    base = data["meta"]["baselines"][spec.method]
    return {**asdict(spec), "name": spec.name, "mask_ratio": cfg.ratio, "steps": step, "planned_steps": total,
            "complete": step == total, "epochs_done": round(step / steps_per_epoch, 2),
            "train_loss": {"first_epoch": epoch_losses[0] if epoch_losses else None,
                           "last_epoch": epoch_losses[-1] if epoch_losses else None},
            "heldout": {"loss": held, **base, "ratio": held / base["baseline"]},
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "seconds": {"train": round(train_seconds, 1), "total": round(time.perf_counter() - start, 1)},
            "clips_per_s": round(step * spec.batch_size / max(train_seconds, 1e-9), 1)}


@torch.no_grad()
def heldout(model: torch.nn.Module, data: dict, cfg: TrainConfig, key: str, amp: bool) -> float:
    """Mean over the held-out clips of each clip's masked loss (train/eval/heldout.py's number)."""
    target = get_target(cfg.target)
    norm = target.norm(cfg.target_norm)
    held, masks = data["heldout"], data["heldout_masks"][key]
    device = masks.device
    model.eval()
    total, n = 0.0, len(held[LABEL])
    for start, part in chunks(inputs(held), n):
        part = assemble(part, cfg.input_size, device)
        mask = masks[start:start + CHUNK]
        tgt, weight = target.build(part, cfg.tubelet, cfg.patch_size, cfg.norm_target, norm)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(part[VIDEO], mask)
        pred = pred.float()
        total += sum(target.loss(pred[i:i + 1], tgt[i:i + 1], weight[i:i + 1], mask[i:i + 1]).item()
                     for i in range(len(mask)))
    return total / n


def inputs(clips: dict) -> dict[str, torch.Tensor]:
    """What the model, the masks and the targets read of the prepared clips (not their labels)."""
    return {k: v for k, v in clips.items() if k not in ("label", VIDEO_INDEX)}


_DATA: dict = {}  # a worker process's copy of the prepared file, on its device


def _load_worker(path: str, device: str) -> None:
    torch.set_num_threads(1)
    _DATA.update(load(path, device))


def _run_in_worker(spec: RunSpec, device: str, deadline: float) -> dict | None:
    return train_run(_DATA, spec, torch.device(device), deadline)


def run(path: str | Path, specs: list[RunSpec], device: str = "cuda", minutes: float = 9.0, jobs: int = 1,
        save=None, log=print) -> dict:
    """Every planned run within `minutes` of wall time from now (training stops RESERVE_S before,
    for the held-out losses of the runs it cuts short); `jobs` > 1: that many processes
    side by side on the device, each holding its own copy of the file. `save(results)` is called
    after every run, so a window killed early still leaves what it finished. A run that fails
    (a non-finite loss, out of memory) is recorded with its error; the others go on."""
    start = time.time()
    deadline = start + max(0.0, 60 * minutes - RESERVE_S)
    device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    meta = json.loads(torch.load(path, map_location="cpu", weights_only=True)["meta"])
    results = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "device": device_name(device),
               "minutes": minutes, "jobs": jobs, "wall_seconds": 0.0, "prepared": meta, "gate": meta["study"]["gate"],
               "runs": [], "failed": [], "not_run": [s.name for s in specs],
               "summary": summarize([], meta["study"]["gate"])}

    def record(spec: RunSpec, outcome: dict | None | RuntimeError) -> None:
        if outcome is None:                                     # the deadline had passed: stays in not_run
            return
        results["not_run"].remove(spec.name)
        if isinstance(outcome, RuntimeError):
            results["failed"].append({"name": spec.name, "error": f"{type(outcome).__name__}: {outcome}"})
            log(f"{spec.name:<34} FAILED: {outcome}")
        else:
            results["runs"].append(outcome)
            h = outcome["heldout"]
            log(f"{spec.name:<34} {outcome['steps']}/{outcome['planned_steps']} steps, "
                f"{outcome['seconds']['total']:.0f} s, {outcome['clips_per_s']:.0f} clips/s; held-out "
                f"{h['loss']:.4f} / baseline {h['baseline']:.4f} = {h['ratio']:.3f}")
        results["summary"] = summarize(results["runs"], results["gate"])
        results["wall_seconds"] = round(time.time() - start, 1)
        if save is not None:
            save(results)

    if jobs <= 1:
        data = load(path, device)
        for spec in specs:
            try:
                outcome = train_run(data, spec, torch.device(device), deadline)
            except RuntimeError as e:
                outcome = e
            record(spec, outcome)
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_load_worker,
                                 initargs=(str(path), device)) as pool:
            futures = [pool.submit(_run_in_worker, spec, device, deadline) for spec in specs]
            for spec, f in zip(specs, futures):
                try:
                    outcome = f.result()
                except RuntimeError as e:
                    outcome = e
                record(spec, outcome)
    results["wall_seconds"] = round(time.time() - start, 1)
    if save is not None:
        save(results)
    return results


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"


def summarize(runs: list[dict], threshold: float) -> dict:
    """Per (method, model): the held-out ratio over seeds and the gate; per target at the grid's
    model: MGM's mask against the tube, paired over seeds (negative = MGM's ratio lower)."""
    groups: dict[str, dict] = {}
    for r in runs:
        groups.setdefault(f"{r['method']} {r['model']}", {})[str(r["seed"])] = r["heldout"]["ratio"]
    out = {"groups": {g: {"ratio": mean_std(list(v.values())), "gate": gate(list(v.values()), threshold),
                          "per_seed": v} for g, v in groups.items()}, "mgm_vs_tube": {}}
    for r in runs:
        if r["role"] == "grid" and r["method"].startswith("mgm+"):
            target = r["method"].split("+")[1]
            a, b = groups.get(f"mgm+{target} {r['model']}", {}), groups.get(f"tube+{target} {r['model']}", {})
            if a and b:
                out["mgm_vs_tube"][f"{target} {r['model']}"] = paired(a, b)
    return out


def report(results: dict, command: str) -> str:
    """The window's markdown section for docs/results.md."""
    p = results["prepared"]
    lines = [f"## GPU window: {results['date']}, {results['device']}", "",
             f"`{command}` ({results['wall_seconds'] / 60:.1f} min of wall time, runs {results['jobs']} at a time; "
             f"budget {results['minutes']:g} min). Clips prepared on the CPU: {p['train_clips']} train clips (one "
             f"fixed crop each, {p['draws']} masks per clip and method), {p['heldout_clips']} held-out clips of split "
             f"`{p['heldout_split']}` of `{p['shards']}`. Held-out ratio = held-out masked loss / the better of "
             f"predicting 0 and the best constant; the gate passes at <= {results['gate']} on every seed.", "",
             "| group | seeds | held-out ratio, mean ± std | worst | gate |", "|---|---|---|---|---|"]
    for name, g in results["summary"]["groups"].items():
        r = g["ratio"]
        lines.append(f"| {name} | {r['n']} | {r['mean']:.3f} ± {r['std']:.3f} | {g['gate']['worst']:.3f} | "
                     f"{g['gate']['verdict']} |")
    if results["summary"]["mgm_vs_tube"]:
        lines += ["", "MGM's mask against the tube, held-out ratio paired over seeds (negative: MGM lower):", "",
                  "| target, model | seeds | mgm - tube | 95 % t interval | MGM lower on |", "|---|---|---|---|---|"]
        for name, c in results["summary"]["mgm_vs_tube"].items():
            ci = "-" if c["t_ci95"] is None else f"[{c['t_ci95'][0]:+.3f}, {c['t_ci95'][1]:+.3f}]"
            lines.append(f"| {name} | {c['n']} | {c['mean']:+.3f} | {ci} | {c['losses']} of {c['n']} |")
    lines += ["", "| run | role | decoder | ratio (mask) | epochs | train loss, first -> last epoch | held-out loss | "
                  "baseline | ratio | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        h, t = r["heldout"], r["train_loss"]
        decoder = f"{r['decoder_dim'] or 'default'} x {r['decoder_depth'] or 'default'}"
        cut = "" if r["complete"] else " (cut short)"
        lines.append(f"| {r['name']} | {r['role']} | {decoder} | {r['mask_ratio']:g} | {r['epochs_done']:g}{cut} | "
                     f"{t['first_epoch']:.4f} -> {t['last_epoch']:.4f} | {h['loss']:.4f} | {h['baseline']:.4f} | "
                     f"{h['ratio']:.3f} | {r['seconds']['total']:.0f} |")
    for f in results["failed"]:
        lines += ["", f"Failed: {f['name']}: {f['error']}"]
    if results["not_run"]:
        lines += ["", f"Not run within the budget: {', '.join(results['not_run'])}."]
    return "\n".join(lines) + "\n"


# ---- CLI ----------------------------------------------------------------------------------------

def _list(kind):
    return lambda text: tuple(kind(x) for x in text.split(",") if x.strip())


def _none_or_int(text: str) -> int | None:
    return None if text in ("", "none", "default") else int(text)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    p = ArgumentParser(prog="python -m train.studies.gpu_window", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("prepare", help="CPU: read, mask and save the window's clips")
    a.add_argument("--out", required=True, help="the prepared file (.pt)")
    a.add_argument("--config", default=str(DEFAULT_CONFIG), help="study yaml (default train/configs/study.yaml)")
    a.add_argument("--tiny", action="store_true", help="the study's CI geometry (train/studies/config.py TINY)")
    a.add_argument("--shards", default="", help="shard set (default: the study's corpus)")
    a.add_argument("--train-clips", type=int, default=256)
    a.add_argument("--heldout-clips", type=int, default=96)
    a.add_argument("--heldout-split", default="val", help="split of the held-out clips ('' = every video)")
    a.add_argument("--draws", type=int, default=8, help="masks per train clip and method")
    a.add_argument("--seed", type=int, default=0, help="the train clips' crops and masks")
    a.add_argument("--workers", type=int, default=0, help="loader processes reading the clips")
    b = sub.add_parser("run", help="GPU: every run over the prepared clips, then the report")
    b.add_argument("--data", required=True, help="the prepared file")
    b.add_argument("--device", default="cuda", help="cuda | cpu | auto")
    b.add_argument("--minutes", type=float, default=9.0,
                   help="wall-time budget of the whole command (training stops 30 s before it)")
    b.add_argument("--jobs", type=int, default=4, help="runs side by side on the device (processes)")
    b.add_argument("--methods", type=_list(str), default=METHODS)
    b.add_argument("--seeds", type=_list(int), default=(0, 1, 2, 3, 4))
    b.add_argument("--model", default="vit_tiny")
    b.add_argument("--decoder-dim", type=_none_or_int, default=192, help="'default' = the model's")
    b.add_argument("--decoder-depth", type=_none_or_int, default=2, help="'default' = the model's")
    b.add_argument("--epochs", type=int, default=100, help="passes over the prepared train clips per run")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--no-controls", action="store_true", help="skip the pixel runs at the study's own model")
    b.add_argument("--out", default="runs/gpu_window", help="folder of results.json")
    b.add_argument("--report", default="", help="markdown section (default <out>/results.md)")
    args = p.parse_args(argv)
    if args.command == "prepare":
        cfg = study_config(existing_file(args.config, "--config", "a study yaml"), args.tiny, args.shards)
        if not args.shards and not (cfg.shards_path() / "manifest.json").exists():
            # the study's corpus, generated and extracted as the study does (its record beside the file)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            extract(replace(cfg, out=str(Path(args.out).parent)), log=print)
        existing_shards(cfg.shards_path())
        return prepare(cfg, Path(args.out), args.train_clips, args.heldout_clips, args.draws, args.seed,
                       args.heldout_split, args.workers)
    existing_file(args.data, "--data", "a file written by `prepare`")
    check_device(args.device)
    out = output_folder(args.out)
    meta = json.loads(torch.load(args.data, map_location="cpu", weights_only=True)["meta"])
    study = study_from_dict(meta["study"])
    specs = plan(study, args.methods, args.seeds, args.model, args.decoder_dim, args.decoder_depth, args.epochs,
                 args.batch_size, not args.no_controls)
    print(f"gpu window: {len(specs)} runs, {args.epochs} epochs of {meta['train_clips']} clips each, "
          f"{args.jobs} at a time, budget {args.minutes:g} min", flush=True)
    command = " ".join(["python -m train.studies.gpu_window", *argv])
    report_path = Path(args.report) if args.report else out / "results.md"

    def save(results: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        report_path.write_text(report(results, command))

    results = run(args.data, specs, args.device, args.minutes, args.jobs, save, log=lambda s: print(s, flush=True))
    print(f"results: {out / 'results.json'}, report: {report_path}", flush=True)
    return results


if __name__ == "__main__":
    run_main(main, "gpu_window")
