"""Storage cost and clip-read speed, zarr vs hdf5, on realistic 256x340 synthetic videos.

Prints numbers (docs/shards.md quotes them); asserts nothing about speed. Run with
`python -m pytest -q -s -m slow tests/bench/test_extract.py`.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from preprocess.synthetic import MovingObject, Scene, render
from shards import ARRAYS, open_shards, open_writer
from shards.schema import STORED, dims_for

from tests.shards.helpers import video_attrs

pytestmark = pytest.mark.slow

T, H, W, L, STRIDE = 48, 256, 340, 6, 2


def realistic_arrays(seed: int) -> tuple[dict, dict]:
    """Rendered frames plus motion arrays with the structure real ones have: a panning
    background (compensated flow ~0) and two objects with their own motion."""
    scene = Scene(height=H, width=W, num_frames=T, bg_velocity=(1.5, 0.5), seed=seed,
                  objects=(MovingObject(60, (40.0, 60.0), (3.0, 1.0)),
                           MovingObject(48, (200.0, 150.0), (-2.0, 0.5))))
    frames = render(scene)
    attrs = video_attrs(num_frames=T, height=H, width=W, traj_len=L, flow_stride=STRIDE)
    d = dims_for(T, H, W, L, STRIDE)
    rng = np.random.default_rng(seed)
    noise = lambda shape, s: rng.normal(0, s, shape).astype(np.float32)  # noqa: E731
    masks = np.zeros((T, H, W), bool)
    for k in range(len(scene.objects)):
        pos, size = scene.object_positions(k).astype(int), scene.objects[k].size
        for t in range(T):
            x, y = pos[t]
            masks[t, max(y, 0):y + size, max(x, 0):x + size] = True
    obj_v = np.array([1.5, 0.5], np.float32)  # compensated object motion ~ object - camera
    flow = noise((d["T-1"], d["h"], d["w"], 2), 0.2)
    flow[masks[:-1, ::STRIDE, ::STRIDE][:, :d["h"], :d["w"]]] += obj_v
    mv = np.round(noise((T, d["Hc"], d["Wc"], 2), 0.3) * 4) / 4 + np.float32([1.5, 0.5])
    h = np.tile(np.eye(3, dtype=np.float32), (T - 1, 1, 1))
    h[:, 0, 2], h[:, 1, 2] = 1.5, 0.5
    arrays = {"frames": frames, "mv": mv, "mv_valid": rng.random(mv.shape[:3]) < 0.9,
              "flow": np.clip(flow, -20, 20), "homography": h,
              "homography_ok": np.ones(T - 1, bool)}
    return arrays, attrs


def test_bytes_and_clip_reads(tmp_path):
    videos = [realistic_arrays(seed) for seed in range(4)]
    rng = np.random.default_rng(0)
    clips = [(int(rng.integers(len(videos))), int(rng.integers(0, T - 16))) for _ in range(60)]
    report = {}
    for fmt in ("zarr", "hdf5"):
        path = tmp_path / fmt
        w = open_writer(path, format=fmt)
        t0 = time.perf_counter()
        for i, (arrays, attrs) in enumerate(videos):
            w.write_video(f"v{i}", arrays, attrs)
        write_s = (time.perf_counter() - t0) / len(videos)
        w.finalize()
        with open_shards(path) as ds:
            nbytes = {n: sum(ds.nbytes(f"v{i}")[n] for i in range(len(videos))) / (T * len(videos))
                      for n in STORED}
            for video_id, t in clips[:5]:  # warm-up: imports, page cache
                [ds[f"v{video_id}"][n][t:t + 16] for n in STORED]
            t0 = time.perf_counter()
            for video_id, t in clips:
                v = ds[f"v{video_id}"]
                clip = {n: v[n][t:t + 16] for n in STORED}
                assert clip["frames"].shape == (16, H, W, 3)
            read_ms = (time.perf_counter() - t0) / len(clips) * 1e3
        report[fmt] = (nbytes, read_ms, write_s)
    print(f"\n{T}-frame {W}x{H} videos, L={L}, flow_stride={STRIDE}: bytes on disk per frame")
    print(f"{'array':<14}{'raw (stored dtype)':>20}{'zarr':>10}{'hdf5':>10}")
    dims = dims_for(T, H, W, L, STRIDE)
    for n in STORED:
        spec = ARRAYS[n]
        raw = np.prod(spec.shape(dims)) * np.dtype(spec.stored_dtype).itemsize / T
        print(f"{n:<14}{raw:>20.0f}{report['zarr'][0][n]:>10.0f}{report['hdf5'][0][n]:>10.0f}")
    for fmt in ("zarr", "hdf5"):
        nbytes, read_ms, write_s = report[fmt]
        print(f"{fmt}: total {sum(nbytes.values()) / 1e3:.1f} kB/frame, random 16-frame clip "
              f"(all arrays) {read_ms:.1f} ms, write {write_s * 1e3:.0f} ms/video")
