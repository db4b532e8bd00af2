"""Before the first long GPU run: step time and MFU of each recipe, and whether the loader keeps up.

    python bench/gpu_check.py                                  # one GPU, ViT-B 16x224, a few minutes
    python bench/gpu_check.py --shards data/shards/k400 --workers 12 --json runs/gpu_check.json
    python bench/gpu_check.py --device cpu --model vit_pico --frames 4 --size 32 --batch 2 --steps 2  # smoke test

For every method (the K400 recipes in train/configs/: VideoMAE, MGM, MGMAE, MME):

- **step**: forward + backward + AdamW step of the recipe's model (its decoder, mask ratio and
  target size) on random input, at the paper's per-GPU batch, in bf16 autocast (the
  trainer's path: fused AdamW on CUDA, `--compile` and `--decoder-ratio` optional); median over `--steps` after warmup steps. Reported:
  ms per step, clips/s, TFLOP/s from the analytic FLOPs (`train/pretraining/flops.py`) and MFU against
  the device's dense bf16 peak.
- **loader**: clips/s of the recipe's DataLoader on `--shards` with `--workers` processes
  (the clip geometry and the motion arrays that method reads, repeated augmentation
  included), the masks made in the workers as the trainer does (and, for information, the
  mask alone on one thread). The verdict "keeps up" means loader clips/s >= step clips/s.
  With `--assemble device` the workers ship JPEG bytes and the device decodes, crops, resizes
  and normalizes (train/clips/assemble.py); with `--assemble uint8` they ship the resized levels and
  the device normalizes: either way the device's time per batch is measured on the device and
  added to the step's before the verdict.
- **cores per GPU**: the loader processes one GPU needs at this loader's ms a clip, for the
  GPU's clips/s (`bench.budget`): `--gpu-clips-per-s`, else the step measured here on a GPU,
  else (on a CPU) the method's ViT-B rate measured on an H200.

The clips' source is the shard set given: the demo shards (default) are small synthetic
videos, so their loader numbers are a floor check, not K400's; point --shards at real shards.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/gpu_check.py` as well as `python -m bench.gpu_check`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from shards.cli import ArgumentParser, run_main  # noqa: E402
from train.methods import METHODS as PUBLISHED  # noqa: E402
from train.clips.assemble import ASSEMBLIES, AUTO, assemble, resolve as resolve_assemble  # noqa: E402
from train.pretraining.config import DEMO_SHARDS, TrainConfig, load_file, override, resolve_shards  # noqa: E402
from train.clips.dataset import ClipDataset, ClipSpec, MaskCollate, make_loader  # noqa: E402
from bench.budget import H200_CLIPS_PER_S, cores_per_gpu  # noqa: E402
from train.pretraining.dual import decoded_tokens, decoder_mask  # noqa: E402
from train.pretraining.engine import device_peak_tflops, make_optimizer  # noqa: E402
from train.pretraining.flops import hidden_tokens, train_flops  # noqa: E402
from train.pretraining.masks import get_mask  # noqa: E402
from train.pretraining.targets import get_target  # noqa: E402
from train.pretraining.pairing import reads  # noqa: E402

# method -> (recipe, clips per GPU in the paper's run), from the methods table
METHODS = {key: (m.recipe, m.gpu_batch) for key, m in PUBLISHED.items()}
TRAJ_LEN = 4  # MME's K400 script; only the head's size depends on it (< 0.1 % of the FLOPs)


def recipe(name: str, **tiny) -> TrainConfig:
    """The method's K400 recipe with the overrides given (model, geometry) applied."""
    given = {k: v for k, v in tiny.items() if v is not None}
    return override(TrainConfig.from_dict(load_file(METHODS[name][0])), **given)


def step_time(cfg: TrainConfig, batch: int, device: torch.device, steps: int, warmup: int,
              compile_model: bool, backend: str = "inductor") -> dict:
    """Median seconds of one training step on random input, and the numbers derived from it
    (`backend`: torch.compile's, when `compile_model`)."""
    torch.manual_seed(0)
    grid = cfg.grid
    traj_len = (cfg.traj_len or TRAJ_LEN) if cfg.target.startswith("mme") else 0
    heads = get_target(cfg.target).heads(cfg.tubelet, cfg.patch_size, traj_len)
    out_dim = sum(h.dim for h in heads)
    model = cfg.build_model(heads, drop_path=0.0).to(device)
    optimizer = make_optimizer(model, 1e-4, cfg.betas, cfg.weight_decay, cfg.fused_adamw)
    forward = torch.compile(model, backend=backend) if compile_model else model
    n = grid[0] * grid[1] * grid[2]
    hidden = hidden_tokens(cfg.mask, grid, cfg.ratio)
    video = torch.randn(batch, 3, cfg.num_frames, cfg.input_size, cfg.input_size, device=device)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for b in range(batch):  # any mask with the recipe's hidden count costs the same
        mask[b, torch.randperm(n)[:hidden]] = True
    decoded = decoded_tokens(hidden, cfg.decoder_ratio)   # all of them unless dual masking
    decode = decoder_mask(mask, cfg.decoder_ratio, torch.Generator().manual_seed(0), grid, cfg.decoder_mask).to(device)
    mask = mask.to(device)
    target = torch.randn(batch, decoded, out_dim, device=device)
    amp = device.type == "cuda"
    times = []
    for i in range(warmup + steps):
        sync(device)
        tic = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = forward(video, mask, decode)
        loss = (pred.float() - target).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    seconds = statistics.median(times)
    flops = train_flops(cfg.model, grid, n - hidden, heads, cfg.tubelet, cfg.patch_size, cfg.decoder_depth,
                        cfg.decoder_dim, decoded)
    tflops = batch * flops / seconds / 1e12
    _, peak = device_peak_tflops(device)
    out = {"batch": batch, "compile": compile_model, "decoder_ratio": cfg.decoder_ratio,
           "fused_adamw": optimizer.defaults["fused"], "ms_per_step": round(1000 * seconds, 1), "clips_per_s": round(batch / seconds, 1),
           "gflops_per_clip": float(f"{flops / 1e9:.4g}"), "tflops": round(tflops, 2),
           "mfu": round(tflops / peak, 3) if peak else None}
    if device.type == "cuda":
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 1)
        torch.cuda.reset_peak_memory_stats(device)
    del model, optimizer, forward
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(cfg: TrainConfig, shards: Path, batch: int, workers: int, batches: int,
                device: torch.device | None = None) -> dict:
    """Clips/s of the recipe's loader, masks made in its workers as the trainer does, after the
    first batch; and what the mask alone costs per batch on one thread (made in the main
    process instead, it capped MGM at 39 and MGMAE at 61 clips/s on an H200)."""
    spec = ClipSpec(cfg.num_frames, cfg.sampling_rate, cfg.input_size, cfg.tubelet, cfg.min_crop, cfg.flip,
                    reads(cfg.mask, cfg.target), cfg.repeated_aug, cfg.traj_len, cfg.assemble)
    dataset = ClipDataset(shards, spec, seed=0)
    grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    loader = iter(make_loader(dataset, batch, num_workers=workers,
                              masks=MaskCollate(cfg.mask, grid, cfg.ratio, 0, cfg.repeated_aug)))
    first = next(loader)
    for _ in range(workers - 1):   # the first round: every worker's first batch, made side by side
        next(loader)
    tic = time.perf_counter()      # from here the workers produce as they go (the steady rate)
    for _ in range(batches):
        next(loader)
    seconds = time.perf_counter() - tic
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.perf_counter()
        get_mask(cfg.mask)(first, grid, cfg.ratio, torch.Generator().manual_seed(0))
        mask_seconds = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)
    rate = batches * batch / seconds
    # what a clip costs one loader process (the main process itself with workers=0)
    out = {"workers": workers, "assemble": cfg.assemble, "clips_per_s": round(rate, 1),
           "ms_per_clip_per_worker": round(1000 * max(1, workers) / rate, 1),
           "mask_ms_per_batch": round(1000 * mask_seconds, 1)}
    if cfg.assemble != "loader":  # the device's share: normalize ("uint8"), or decode, crop, resize too ("device")
        device = device or torch.device("cpu")
        times = []
        for _ in range(4):
            sync(device)
            t = time.perf_counter()
            assemble(first, cfg.input_size, device)
            sync(device)
            times.append(time.perf_counter() - t)
        out["assemble_ms_per_batch"] = round(1000 * statistics.median(times[1:]), 1)
    return out


def check(methods: list[str], device: torch.device, shards: Path, workers: int, steps: int = 10, warmup: int = 3,
          loader_batches: int = 10, batch: int | None = None, compile_model: bool = False, log=print,
          gpu_clips_per_s: float | None = None, **tiny) -> dict:
    """Measure every method; returns {method: {"step": ..., "loader": ..., "keeps_up": bool}}."""
    results = {}
    for name in methods:
        cfg = recipe(name, **tiny)
        r = cfg.repeated_aug
        per_gpu = -(-(batch or METHODS[name][1]) // r) * r   # whole videos under repeated augmentation
        step = step_time(cfg, per_gpu, device, steps, warmup, compile_model)
        load = loader_rate(cfg, shards, per_gpu, workers, loader_batches, device)
        eats = step["clips_per_s"]
        if "assemble_ms_per_batch" in load:  # the device assembles every batch before its step
            eats = step["clips_per_s_with_assembly"] = round(
                per_gpu * 1000 / (step["ms_per_step"] + load["assemble_ms_per_batch"]), 1)
        # workers this GPU would need at this per-clip cost (if the machine has the cores)
        needed = math.ceil(eats * load["ms_per_clip_per_worker"] / 1000)
        # the budget as cores per GPU, for the GPU's rate: given, measured here on a GPU, or the H200's
        rate, source = ((gpu_clips_per_s, "given") if gpu_clips_per_s else (eats, "measured") if device.type == "cuda"
                        else (H200_CLIPS_PER_S[name], "H200, ViT-B 16x224"))
        budget = {"gpu_clips_per_s": rate, "source": source,
                  "cores_per_gpu": round(cores_per_gpu(rate, load["ms_per_clip_per_worker"]), 1)}
        results[name] = {"recipe": METHODS[name][0], "step": step, "loader": load, "budget": budget,
                         "keeps_up": load["clips_per_s"] >= eats, "workers_to_keep_up": needed}
        mfu = f"{step['mfu']:.1%}" if step["mfu"] is not None else "n/a"
        log(f"{name:9s} batch {per_gpu:3d}: {step['ms_per_step']:8.1f} ms/step {step['clips_per_s']:7.1f} clips/s "
            f"{step['tflops']:7.2f} TFLOP/s MFU {mfu:>6s} | loader {load['clips_per_s']:7.1f} clips/s "
            f"({workers} workers, {load['ms_per_clip_per_worker']:.0f} ms a clip each; the mask alone "
            f"{load['mask_ms_per_batch']:.0f} ms/batch on a thread"
            + (f"; assembled on the device in {load['assemble_ms_per_batch']:.0f} ms/batch, in the step"
               if "assemble_ms_per_batch" in load else "") + ") -> "
            + ("keeps up" if results[name]["keeps_up"] else f"LOADER-BOUND: ~{needed} workers would keep up")
            + f"; {budget['cores_per_gpu']} loader cores per GPU at {rate:g} clips/s ({source})")
    return results


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--device", default="auto", help="auto = cuda if available else cpu")
    p.add_argument("--shards", default=DEMO_SHARDS, help="shard set the loader reads (default: the demo)")
    p.add_argument("--workers", type=int, default=min(10, os.cpu_count() or 1),
                   help="loader processes (default: min(10, cores); the papers ran 10 per GPU)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocation, cuDNN, compile)")
    p.add_argument("--loader-batches", type=int, default=None,
                   help="batches timed after every worker's first (default: 3 x workers, the steady rate)")
    p.add_argument("--batch", type=int, default=None, help="clips per step for every method (default: the papers')")
    p.add_argument("--compile", action="store_true", help="torch.compile the model, as --compile true does")
    p.add_argument("--decoder-ratio", type=float, default=None,
                   help="dual masking: the share of hidden tokens the decoder reconstructs (default: the recipe's, 1)")
    p.add_argument("--model", default=None, help="tiny overrides for a smoke test: model, frames, size")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--assemble", default=AUTO, choices=[AUTO, *ASSEMBLIES],
                   help="where clips' frames are decoded, resized and normalized: loader (workers) | uint8 (workers "
                        "but the normalize, on the device) | device (train/clips/assemble.py); auto (the trainer's "
                        "default): uint8 on CUDA, else loader")
    p.add_argument("--gpu-clips-per-s", type=float, default=None,
                   help="the GPU's clips/s the cores-per-GPU budget is for (default: the step measured on a "
                        "GPU; on a CPU each method's H200 rate, bench/budget.py)")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    shards = resolve_shards(a.shards)
    if a.shards == DEMO_SHARDS and not shards.exists():
        from train.pretrain import ensure_demo_shards

        ensure_demo_shards(TrainConfig())
    name, peak = device_peak_tflops(device)
    print(f"gpu_check: {name}" + (f" (dense bf16 peak {peak:.0f} TFLOP/s)" if peak else "")
          + f", torch {torch.__version__}, {os.cpu_count()} cores, shards {shards}", flush=True)
    timed = a.loader_batches or 3 * max(1, a.workers)
    where = resolve_assemble(a.assemble, device)
    results = check(a.methods, device, shards, a.workers, a.steps, a.warmup, timed, a.batch, a.compile,
                    log=lambda s: print(s, flush=True), model=a.model, num_frames=a.frames, input_size=a.size, assemble=where,
                    decoder_ratio=a.decoder_ratio, gpu_clips_per_s=a.gpu_clips_per_s)
    summary = {"device": name, "peak_tflops": peak, "torch": torch.__version__, "cores": os.cpu_count(),
               "shards": str(shards), "compile": a.compile, "assemble": where, "methods": results}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_main(main, "python -m bench.gpu_check")
