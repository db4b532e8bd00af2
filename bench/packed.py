"""Packed vs unpacked shard sets, side by side: files per video and clip-read ms per method.

    python -m shards pack SET PACKED --videos-per-file 1000
    python -m bench.packed --shards SET --packed PACKED --clips 20

The same random clips (`bench.scale.clip_plan`) read through `train.clips.dataset.read_clip_at`
with what each method's mask and target need, one core, from both sets; per clip the two reads
alternate which goes first (page cache and CPU frequency favour neither), and the outputs must be
equal. Requests per clip on S3 are counted by tests/shards/test_s3.py (moto's request log).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.loader import METHODS
from bench.scale import clip_plan
from shards import open_shards
from shards.cli import ArgumentParser, run_main
from train.clips.dataset import ClipSpec, read_clip_at
from train.pretraining.pairing import reads


def files_per_video(path: str) -> dict:
    """Files of a local set, per committed video (root documents and failure records included)."""
    with open_shards(path) as ds:
        videos = len(ds)
        fmt = ds.format
    files = sum(1 for p in Path(path).rglob("*") if p.is_file())
    return {"format": fmt, "videos": videos, "files": files, "files_per_video": round(files / videos, 3)}


def side_by_side(unpacked: str, packed: str, clips: int, size: int = 224, seed: int = 0) -> dict:
    plan = clip_plan(unpacked, clips, seed)
    out: dict = {"clips": len(plan), "input_size": size}
    with open_shards(unpacked) as a, open_shards(packed) as b:
        for name, (mask, target) in METHODS.items():
            spec = ClipSpec(num_frames=len(range(plan[0]["start"], plan[0]["stop"], plan[0]["stride"])),
                            input_size=size, flip=False,
                            needs=reads(mask, target))
            times: dict[str, list[float]] = {"unpacked": [], "packed": []}
            for k, c in enumerate(plan):
                h, w = c["hw"]
                side = min(h, w) // 8 * 8
                box = ((w - side) // 2 // 8 * 8, (h - side) // 2 // 8 * 8, side)
                idx = np.arange(c["start"], c["stop"], c["stride"])
                order = [("unpacked", a), ("packed", b)][:: 1 if k % 2 == 0 else -1]
                got = {}
                for label, ds in order:
                    tic = time.perf_counter()
                    got[label] = read_clip_at(ds[c["id"]], spec, idx, c["stride"], box)
                    times[label].append(time.perf_counter() - tic)
                for key, value in got["unpacked"].items():
                    np.testing.assert_array_equal(got["packed"][key], value, err_msg=f"{name} {key}")
            out[name] = {label: round(1000 * float(np.median(s)), 2) for label, s in times.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.packed", description=__doc__)
    p.add_argument("--shards", required=True, help="an unpacked (zarr or hdf5) shard set")
    p.add_argument("--packed", required=True, help="the same set after python -m shards pack")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    result = {"files": {"unpacked": files_per_video(a.shards), "packed": files_per_video(a.packed)},
              "clip_ms_median": side_by_side(a.shards, a.packed, a.clips, a.input_size)}
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    run_main(main, "python -m bench.packed")
