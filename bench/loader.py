"""Trainer benchmark: clips/s of the shard loader against decoding the same clips, and step time.
(Here, not in train/: it compares the loader with the decoders of preprocess/.)

    python -m bench.loader                      # demo shards (extracted first if missing)
    python -m bench.loader --shards PATH --decord-python /tmp/decord-venv/bin/python \
        --torchcodec-path /tmp/torchcodec

Loader, one worker (one core), the same random clips for every reader: the shard loader
(`train.clips.dataset.read_clip_at`: frames plus the motion arrays each method needs, crop, resize,
normalize) against PyAV, decord and torchcodec decoding the frames of that clip from the source
video (PyAV's followed by the same crop and resize; decord's and torchcodec's are decode and resize
to the stored size only). decord and torchcodec are not dependencies:
point --decord-python at an interpreter that has decord (a separate venv) and --torchcodec-path at
the folder torchcodec was installed into (see docs/benchmarks.md).
Step: forward + backward + AdamW step of the MAE on random input, per model size.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.scale import clip_plan, decode_clip_pyav, decord_seconds, torchcodec_seconds
from shards import open_shards
from shards.cli import ArgumentParser, run_main
from train.clips.dataset import RESIZE, ClipSpec, read_clip_at
from train.pretraining.model import build_model
from train.pretraining.targets import get_target
from train.methods import METHODS as PUBLISHED
from train.pretraining.pairing import reads

METHODS = {f"{m.key} ({m.pair})": (m.mask, m.target) for m in PUBLISHED.values()}


def _median_ms(seconds: list[float], plan: list[dict]) -> dict[str, float]:
    """Median ms per clip over all clips and per stride (stride 4 = the long natural videos)."""
    out = {"all": round(1000 * float(np.median(seconds)), 2)}
    for stride in sorted({c["stride"] for c in plan}):
        picked = [s for s, c in zip(seconds, plan) if c["stride"] == stride]
        out[f"stride {stride} ({len(picked)} clips)"] = round(1000 * float(np.median(picked)), 2)
    return out


def crop_resize(frames: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """The loader's geometry applied to decoded frames: square crop, resize, normalize."""
    x0, y0, side = box
    out = np.stack([cv2.resize(f[y0:y0 + side, x0:x0 + side], (size, size), interpolation=RESIZE)
                    for f in frames])
    return out.astype(np.float32) / 255


def loader(shards: str, clips: int, size: int, decord_python: str | None, seed: int = 0,
           torchcodec_path: str | None = None) -> dict:
    plan = clip_plan(shards, clips, seed)
    boxes = []
    for c in plan:
        h, w = c["hw"]
        side = min(h, w) // 8 * 8
        boxes.append(((w - side) // 2 // 8 * 8, (h - side) // 2 // 8 * 8, side))
    out: dict = {"clips": len(plan), "input_size": size, "frames_per_clip": len(range(*[plan[0][k] for k in
                                                                                            ("start", "stop", "stride")]))}
    with open_shards(shards) as ds:
        for name, (mask, target) in METHODS.items():
            spec = ClipSpec(num_frames=out["frames_per_clip"], input_size=size, flip=False,
                            needs=reads(mask, target))
            seconds = []
            for c, box in zip(plan, boxes):
                idx = np.arange(c["start"], c["stop"], c["stride"])
                tic = time.perf_counter()
                read_clip_at(ds[c["id"]], spec, idx, c["stride"], box)
                seconds.append(time.perf_counter() - tic)
            out[f"shards: {name}"] = _median_ms(seconds, plan)
    seconds = []
    for c, box in zip(plan, boxes):
        tic = time.perf_counter()
        crop_resize(decode_clip_pyav(c), box, size)
        seconds.append(time.perf_counter() - tic)
    out["pyav decode: frames only"] = _median_ms(seconds, plan)
    dec, note = decord_seconds(decord_python, plan)
    out["decord decode: frames only (no crop/resize)"] = _median_ms(dec, plan) if dec else None
    out["decord_note"] = note
    dec, note = torchcodec_seconds(torchcodec_path, plan)
    out["torchcodec decode: frames only (no crop/resize)"] = _median_ms(dec, plan) if dec else None
    out["torchcodec_note"] = note
    return out


def step_time(model: str, frames: int, size: int, batch: int, target: str = "pixel", ratio: float = 0.9,
              steps: int = 3) -> dict:
    torch.manual_seed(0)
    grid = (frames // 2, size // 16, size // 16)
    t = get_target(target)
    net = build_model(model, grid, t.heads(2, 16, 6))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    n = grid[0] * grid[1] * grid[2]
    video = torch.randn(batch, 3, frames, size, size)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask[:, : round(ratio * n)] = True
    times = []
    for _ in range(steps + 1):
        tic = time.perf_counter()
        pred = net(video, mask)
        loss = pred.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - tic)
    ms = 1000 * float(np.median(times[1:]))  # the first step pays for allocation
    return {"model": model, "input": f"{frames}x{size}x{size}", "batch": batch, "ms_per_step": round(ms, 1),
            "clips_per_s": round(batch / (ms / 1000), 2)}


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.loader", description=__doc__)
    p.add_argument("--shards", default=None, help="default: the demo shards (extracted if missing)")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--decord-python", default=None, help="an interpreter that can import decord")
    p.add_argument("--torchcodec-path", default=None,
                   help="a folder torchcodec was installed into (pip install --no-deps --target DIR torchcodec)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if a.shards is None:
        from train.pretraining.config import TrainConfig
        from train.pretrain import ensure_demo_shards

        cfg = TrainConfig()
        ensure_demo_shards(cfg)
        a.shards = str(cfg.shards_path())
    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, CPU",
              "loader_ms_per_clip": loader(a.shards, a.clips, a.input_size, a.decord_python,
                                          torchcodec_path=a.torchcodec_path),
              "steps": [step_time("vit_pico", 8, 64, 8), step_time("vit_small", 16, 224, 1),
                        step_time("vit_base", 16, 224, 1, steps=2)]}
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_main(main, "python -m bench.loader")
