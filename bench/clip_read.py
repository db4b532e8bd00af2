"""Clip-read time per method on shard sets side by side: `python -m bench.clip_read SET [SET ...]`.

One core, the training clip (16 frames at stride 4, 224 px), the same videos, frame starts
and crops for every set, rounds interleaved (set A, set B, set A, ...) so that a busy
machine slows each set alike. Reports the median ms per clip and method for each set;
`--profile METHOD` prints cProfile's top functions for the first set instead.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from shards import open_shards  # noqa: E402
from shards.cli import ArgumentParser, run_main  # noqa: E402
from train.clips.dataset import ClipSpec, crop_box, frame_indices, read_clip_at  # noqa: E402
from train.methods import METHODS as PUBLISHED  # noqa: E402
from train.pretraining.pairing import reads  # noqa: E402

# method -> (mask, target): the pairing each paper trains with, and MaskFeat-style HOG
METHODS = {**{key: (m.mask, m.target) for key, m in PUBLISHED.items()}, "hog": ("tube", "hog")}


def spec_for(method: str) -> ClipSpec:
    mask, target = METHODS[method]
    return ClipSpec(needs=reads(mask, target))


def draws(ds, clips: int, spec: ClipSpec, seed: int = 0) -> list[tuple[str, np.ndarray, int, tuple]]:
    """(video id, frame indices, stride, crop) of `clips` clips, round robin over the videos."""
    ids = ds.ids()
    out = []
    for g in range(clips):
        rng = np.random.default_rng([seed, g])
        v = ds[ids[g % len(ids)]]
        a = v.attrs
        idx, rate = frame_indices(int(a["num_frames"]), spec, rng)
        out.append((v.id, idx, rate, crop_box(int(a["height"]), int(a["width"]), spec, rng)))
    return out


def time_clips(ds, spec: ClipSpec, plan) -> list[float]:
    out = []
    for vid, idx, rate, box in plan:
        t0 = time.perf_counter()
        read_clip_at(ds[vid], spec, idx, rate, box)
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m bench.clip_read", description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+")
    p.add_argument("--methods", default="videomae,mme")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", default=None, help="a method: cProfile its clips on the first set")
    args = p.parse_args(argv)
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    sets = [open_shards(s) for s in args.sets]
    if args.profile:
        import cProfile
        import pstats

        spec = spec_for(args.profile)
        plan = draws(sets[0], args.clips, spec)
        time_clips(sets[0], spec, plan[:3])
        prof = cProfile.Profile()
        prof.runcall(time_clips, sets[0], spec, plan)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return 0
    methods = args.methods.split(",")
    times = {(m, i): [] for m in methods for i in range(len(sets))}
    for m in methods:
        spec = spec_for(m)
        plan = draws(sets[0], args.clips, spec)
        for i, ds in enumerate(sets):
            time_clips(ds, spec, plan[:3])  # warm-up: imports, page cache
        for _ in range(args.rounds):
            for i, ds in enumerate(sets):
                times[m, i] += time_clips(ds, spec, plan)
    print(f"median ms per clip, {args.clips} clips x {args.rounds} interleaved rounds, one core")
    print(f"{'method':<10}" + "".join(f"{os.path.basename(s.rstrip('/')):>14}" for s in args.sets))
    for m in methods:
        print(f"{m:<10}" + "".join(f"{1e3 * np.median(times[m, i]):>14.1f}" for i in range(len(sets))))
    return 0


if __name__ == "__main__":
    run_main(main, "python -m bench.clip_read")
