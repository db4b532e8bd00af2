"""One side of `python -m bench.clips`: times clip reads with the code of one checkout.

    python bench/clip_worker.py CHECKOUT SHARDS [ASSEMBLE]     (started by bench/clips.py, not by hand)

Imports `shards` and `train` from CHECKOUT, so an older checkout is measured with its own
loader; it uses only what every checkout since the loader rework has (`open_shards`,
`train.clips.dataset.ClipSpec / frame_indices / read_clip_at`
(and `read_clips_at` where it exists), `train.pretraining.masks.MASKS`,
`train.pretraining.targets.get_target`). One JSON command per line on stdin, one JSON answer per line
on stdout; everything the libraries print goes to stderr.
"""
from __future__ import annotations

import json
import sys
import time

MASK_BATCH = 8  # clips per mask call when timing the mask (it runs per batch in the training loop)
OPEN = "_open"  # the key of a round's answer holding the times of the videos it opened first
CROPS = ("full", "train")  # plan(): the box each clip reads


def plan(ds, clips: int, seed: int, num_frames: int, stride: int, crops: str = "full") -> list[dict]:
    """`clips` random clips as training samples them (train.clips.dataset.frame_indices), each read
    as the centre square of the full short side (`crops` "full": as bench.loader and evaluation
    views, the largest box a clip reads) or from a box drawn as training draws it (`crops`
    "train": train.clips.dataset.crop_box, a side of 0.66-1 of the short side, ~0.7 of the full box's
    area on average)."""
    import numpy as np

    from shards.schema import CELL
    from train.clips.dataset import ClipSpec, crop_box, frame_indices

    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops!r}")
    rng = np.random.default_rng(seed)
    spec = ClipSpec(num_frames=num_frames, sampling_rate=stride)
    ids, out = ds.ids(), []
    for _ in range(clips):
        vid = ids[int(rng.integers(len(ids)))]
        a = ds[vid].attrs
        idx, rate = frame_indices(int(a["num_frames"]), spec, rng)
        h, w = int(a["height"]), int(a["width"])
        if crops == "train":
            box = list(crop_box(h, w, spec, rng))
        else:
            side = min(h, w) // CELL * CELL
            box = [(w - side) // 2 // CELL * CELL, (h - side) // 2 // CELL * CELL, side]
        out.append({"id": vid, "idx": idx.tolist(), "stride": int(rate), "box": box})
    return out


def one_round(ds, videos: dict, clips: list[dict], methods: list[list], size: int, assemble: str = "loader") -> dict:
    """Every method [name, mask, target, crops, traj_len] over every clip, one method after the other in
    the given order. Videos are opened once and kept in `videos` (as a training worker does;
    opening costs ~5-10 ms). `crops` > 1 is repeated augmentation: that many crops of each
    clip's frames (the same box: the cost is the same), read with `read_clips_at` where the
    checkout has it, else one `read_clip_at` per crop (as its loader did); a clip's time is
    the read's time / crops.
    -> {name: {"wall": [s per clip], "cpu": [s per clip], "mask_cpu": s per clip}}, and under
    OPEN {"wall": [s], "cpu": [s]} per video opened in this round (a training loader that keeps
    1024 videos open per worker reopens one for most clips of a large corpus).
    CPU time is the process's (zarr's and blosc's threads included): what the clip costs one
    core, less sensitive to the other load on a shared machine than wall time."""
    import numpy as np
    import torch
    from torch.utils.data import default_collate

    import train.clips.dataset as data

    # assemble "device" (train/clips/assemble.py): the worker ships JPEG bytes; only checkouts that
    # have that mode are asked for it
    how = {"assemble": assemble} if assemble != "loader" else {}
    collate = getattr(data, "collate_clips", default_collate)
    from train.pretraining.masks import MASKS
    from train.pretraining.targets import get_target

    out, opens = {}, []
    for name, mask, target, crops, *rest in methods:
        traj_len = rest[0] if rest else 0
        extra = {"traj_len": traj_len} if traj_len else {}
        if extra and "traj_len" not in data.ClipSpec.__dataclass_fields__:
            continue  # a checkout whose loader reads the shards' trajectory length only
        spec = data.ClipSpec(num_frames=len(clips[0]["idx"]), input_size=size, flip=False,
                             needs=frozenset(MASKS[mask].needs | get_target(target).needs), **extra, **how)
        wall, cpu, read = [], [], []
        for c in clips:
            if c["id"] not in videos:  # the first open of a video (the warm-up round): timed on its own
                w0, c0 = time.perf_counter(), time.process_time()
                videos[c["id"]] = ds[c["id"]]
                opens.append((time.perf_counter() - w0, time.process_time() - c0))
            args = (videos[c["id"]], spec, np.asarray(c["idx"]), c["stride"])
            w0, c0 = time.perf_counter(), time.process_time()
            if crops == 1:
                got = [data.read_clip_at(*args, tuple(c["box"]))]
            elif hasattr(data, "read_clips_at"):
                got = data.read_clips_at(*args, [tuple(c["box"])] * crops)
            else:
                got = [data.read_clip_at(*args, tuple(c["box"])) for _ in range(crops)]
            cpu.append((time.process_time() - c0) / crops)
            wall.append((time.perf_counter() - w0) / crops)
            read += got
        batch = collate([{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in r.items()}
                         for r in read[:MASK_BATCH]])
        T = len(clips[0]["idx"])
        grid = (T // spec.tubelet, size // 16, size // 16)
        gen = torch.Generator().manual_seed(0)
        c0 = time.process_time()
        MASKS[mask](batch, grid, 0.9, gen)
        out[name] = {"wall": wall, "cpu": cpu, "mask_cpu": (time.process_time() - c0) / len(read[:MASK_BATCH])}
    if opens:
        out[OPEN] = {"wall": [w for w, _ in opens], "cpu": [c for _, c in opens]}
    return out


def main() -> None:
    checkout, path = sys.argv[1], sys.argv[2]
    assemble = sys.argv[3] if len(sys.argv) > 3 else "loader"
    sys.path[0] = checkout                       # instead of this script's folder: that checkout's code
    answer, sys.stdout = sys.stdout, sys.stderr
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from shards import open_shards

    with open_shards(path) as ds:
        videos: dict = {}
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "plan":
                reply = plan(ds, cmd["clips"], cmd["seed"], cmd["num_frames"], cmd["stride"], cmd["crops"])
            else:
                reply = one_round(ds, videos, cmd["clips"], cmd["methods"], cmd["size"], assemble)
            answer.write(json.dumps(reply) + "\n")
            answer.flush()


if __name__ == "__main__":
    main()
