"""Clip read time, side by side: frames stored as JPEG vs decoded from the source (`--frames none`).

    python -m bench.source_clips --pair 340x256 JPEG_SET NONE_SET --pair 720p JPEG_SET NONE_SET

Each pair is the same corpus extracted both ways. One core (one torch and OpenCV thread), the
same random VideoMAE clips for both sets (16 frames at stride 4, a random square crop resized
to 224 px, normalized: `train.clips.dataset.read_clip_at` with the tube mask and pixel target, i.e.
frames only), a video opened per clip as a loader does. The source path's packet index is
cached per video by the reader (a loader revisits a video once per epoch, so the bench clears
that cache before every clip: the cold cost, what a K400-sized corpus pays).
"""
from __future__ import annotations

import platform
import time

import cv2
import numpy as np

from shards import open_shards
from shards.cli import ArgumentParser, run_main
from train.clips.dataset import ClipSpec, crop_box, frame_indices, read_clip_at


def plan(path: str, clips: int, spec: ClipSpec, seed: int) -> list[tuple]:
    """(video id, frame indices, stride, crop box) for `clips` random clips (videos round-robin)."""
    rng = np.random.default_rng(seed)
    with open_shards(path) as ds:
        ids = ds.ids()
        out = []
        for k in range(clips):
            a = ds[ids[k % len(ids)]].attrs
            idx, rate = frame_indices(int(a["num_frames"]), spec, rng)
            out.append((ids[k % len(ids)], idx, rate, crop_box(int(a["height"]), int(a["width"]), spec, rng)))
    return out


def clip_ms(path: str, clips: list[tuple], spec: ClipSpec) -> tuple[list[float], list[float]]:
    """(CPU ms, wall ms) per clip. CPU time is this process's own: on a shared machine the
    wall clock also counts the other jobs' turns on the core."""
    cpu, wall = [], []
    with open_shards(path) as ds:
        for vid, idx, rate, box in clips:
            ds._source_index.clear()  # cold: the packet index is read again, as a first visit
            tic, tic_cpu = time.perf_counter(), time.process_time()
            read_clip_at(ds[vid], spec, idx, rate, box)
            cpu.append(1e3 * (time.process_time() - tic_cpu))
            wall.append(1e3 * (time.perf_counter() - tic))
    return cpu, wall


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.source_clips", description=__doc__)
    p.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "JPEG_SET", "NONE_SET"), required=True)
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)
    spec = ClipSpec(num_frames=16, sampling_rate=4, input_size=224, flip=False, needs=frozenset())
    print(f"{platform.machine()}, one thread; {a.clips} clips per set, 16 frames at stride 4, 224 px")
    print("| source | frames | CPU ms per clip, median | p90 | wall ms, median | vs stored JPEG (CPU) |\n"
          "|---|---|---|---|---|---|")
    for name, jpeg_set, none_set in a.pair:
        clips = plan(jpeg_set, a.clips, spec, a.seed)
        jpeg, _ = runs = clip_ms(jpeg_set, clips, spec)
        for label, (cpu, wall) in (("stored JPEG", runs), ("decoded from source (--frames none)",
                                                           clip_ms(none_set, clips, spec))):
            print(f"| {name} | {label} | {np.median(cpu):.1f} | {np.percentile(cpu, 90):.1f} | "
                  f"{np.median(wall):.1f} | {np.median(cpu) / np.median(jpeg):.1f}x |")


if __name__ == "__main__":
    run_main(main, "python -m bench.source_clips")
