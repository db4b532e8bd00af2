"""Per-GPU batch sizing by memory (`batch_per_device: -1`, the default): the largest micro-batch
whose training step fits the GPU, gradient accumulation keeping the recipe's global batch.

Two probe steps (forward + backward at the run's geometry, mask and decoder, on random input,
in the run's autocast) give the peak memory at `PROBES` x repeated_aug clips; the line through
them (the weights, their gradients and the workspace are the constant, each clip adds its
activations), plus AdamW's two fp32 states per parameter (allocated at the first real step), is
solved for the largest batch within `SHARE` of the GPU's memory, in whole videos. Every process
of a DDP run takes the smallest answer, so they all accumulate alike. On a CPU there is nothing
to size: the whole per-process batch runs at once, as with `batch_per_device: 0`.

The pure part (`largest_batch`) is tested on CPU with a memory model; the probe needs CUDA's
memory counters.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

AUTO = -1
SHARE = 0.9           # of the GPU's memory: the rest for the device's clip assembly and the allocator's slack
PROBES = (1, 4)       # probe batches, in whole videos
ADAMW_BYTES = 8       # per parameter: exp_avg and exp_avg_sq in fp32


def largest_batch(points: list[tuple[int, float]], total: float, extra: float = 0.0, share: float = SHARE,
                  repeats: int = 1) -> int:
    """The largest batch, a multiple of `repeats`, whose peak memory stays within `share` x `total`
    on the line through the smallest and the largest of `points` [(batch, peak memory)], plus
    `extra` that the probes did not allocate (any one unit: bytes, GiB). ValueError when not even
    `repeats` clips fit, or when the memory did not grow with the batch."""
    (b0, m0), (b1, m1) = min(points), max(points)
    if b1 <= b0:
        raise ValueError("largest_batch needs two different probe batches")
    per_clip = (m1 - m0) / (b1 - b0)
    if per_clip <= 0:
        raise ValueError(f"the peak memory did not grow from {b0} to {b1} clips: no line to size the batch by")
    fits = int((share * total - extra - (m0 - per_clip * b0)) // per_clip)
    fits -= fits % repeats
    if fits < repeats:
        raise ValueError(f"{repeats} clip(s) need {(m0 - per_clip * b0 + extra + per_clip * repeats) / 2 ** 30:.1f} GiB "
                         f"of the GPU's {total / 2 ** 30:.1f} GiB (x {share:g}): use a smaller model or input, "
                         f"or a cheaper decoder (--decoder-ratio)")
    return fits


def probe_step(model: torch.nn.Module, batch: int, shape: tuple[int, ...], tokens: int, hidden: int, decoded: int,
               device: torch.device, amp: bool) -> None:
    """One forward + backward of `model` at `batch` clips of `shape` (C, T, H, W) on random input,
    `hidden` of `tokens` hidden and `decoded` of them reconstructed; the gradients cleared after and
    every random state (CPU and device) as it was before."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        video = torch.randn(batch, *shape, device=device)
        order = torch.rand(batch, tokens).argsort(1)
        mask = torch.zeros(batch, tokens, dtype=torch.bool)
        mask.scatter_(1, order[:, :hidden], True)
        decode = mask if decoded == hidden else torch.zeros_like(mask).scatter_(1, order[:, :decoded], True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(video, mask.to(device), decode.to(device))
        pred.float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)


def probe_peak(model: torch.nn.Module, batch: int, shape: tuple[int, ...], tokens: int, hidden: int, decoded: int,
               device: torch.device, amp: bool) -> int:
    """Peak CUDA bytes of `probe_step`."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    probe_step(model, batch, shape, tokens, hidden, decoded, device, amp)
    peak = torch.cuda.max_memory_allocated(device)
    torch.cuda.empty_cache()
    return peak


def fit_batch_per_device(measure: Callable[[int], int], per_process: int, total: float, params: int,
                         repeats: int = 1) -> int:
    """The clips per forward for a process of `per_process` clips: at most the whole of it, else
    the largest that fits (`largest_batch` on `measure(batch)` at the `PROBES` batches)."""
    probes = sorted({min(p * repeats, per_process) for p in PROBES})
    if len(probes) < 2:   # a batch of one video: nothing to choose
        return per_process
    points = [(b, float(measure(b))) for b in probes]
    if points[-1][1] <= points[0][1]:   # nothing grew with the batch (a caching allocator's round-up): all at once
        return per_process
    return min(per_process, largest_batch(points, total, ADAMW_BYTES * params, SHARE, repeats))


def agree(cap: int, device: torch.device, world: int) -> int:
    """The smallest `cap` over the processes of a DDP run (each must accumulate alike)."""
    if world <= 1:
        return cap
    t = torch.tensor([cap], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
