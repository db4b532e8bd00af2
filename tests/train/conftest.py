"""A tiny shard set written with shards.open_writer from arrays whose motion is known.

Each video: a textured background panned by the camera at `pan` px/frame, plus a bright
16 px square moving at `velocity` px/frame on screen (camera-inclusive). mv holds the
on-screen motion, flow the camera-compensated one (object motion minus pan on the square,
0 elsewhere), homography the pan. traj / traj_valid / hog are derived when read (schema 3):
the steps tracked on that flow, the HOG of the frames.
"""
from __future__ import annotations

import numpy as np
import pytest

from shards.schema import CELL
from shards.writer import open_writer

H, W, T, TRAJ_LEN, FLOW_STRIDE = 48, 64, 20, 3, 4
VIDEOS = {  # id -> (pan, velocity)
    "still": ((0.0, 0.0), (2.0, 1.0)),
    "pan": ((1.0, 0.0), (3.0, -1.0)),
    "fast": ((0.0, 0.0), (-2.0, 0.0)),
    "slow": ((0.0, 1.0), (1.0, 1.0)),
}


def inside(points: np.ndarray, corner: np.ndarray, size: float = 16) -> np.ndarray:
    return ((points >= corner) & (points < corner + size)).all(-1)


def synthetic_video(pan, velocity, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    pan, vel = np.asarray(pan, np.float32), np.asarray(velocity, np.float32)
    corner = np.array([24.0, 16.0]) + vel * np.arange(T)[:, None]                  # (T,2)
    ys, xs = np.mgrid[0:H, 0:W]
    bg = rng.integers(0, 120, (H + T * 2, W + T * 2, 3))
    frames = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        dx, dy = np.rint(pan * t).astype(int)
        frames[t] = bg[T - dy:T - dy + H, T - dx:T - dx + W]
        frames[t][inside(np.stack([xs, ys], -1), corner[t])] = 230
    hc, wc = H // CELL, W // CELL
    cells = np.stack(np.meshgrid(np.arange(wc), np.arange(hc)), -1) * CELL + 3.5     # (Hc,Wc,2)
    fine = np.stack(np.meshgrid(np.arange(W // FLOW_STRIDE), np.arange(H // FLOW_STRIDE)), -1) * FLOW_STRIDE + 1.5
    on = np.stack([inside(cells, corner[t]) for t in range(T)])                      # (T,Hc,Wc)
    mv = np.where(on[..., None], vel, pan).astype(np.float32)
    flow = np.stack([np.where(inside(fine, corner[t])[..., None], vel - pan, 0) for t in range(T - 1)])
    hom = np.tile(np.eye(3, dtype=np.float32), (T - 1, 1, 1))
    hom[:, :2, 2] = pan
    arrays = {
        "frames": frames, "mv": mv, "mv_valid": np.ones((T, hc, wc), bool),
        "flow": flow.astype(np.float32), "homography": hom, "homography_ok": np.ones(T - 1, bool),
    }
    arrays["mv_valid"][0] = False
    attrs = {"source": "synthetic", "fps": 25.0, "height": H, "width": W, "source_height": H,
             "source_width": W, "num_frames": T, "codec": "h264", "traj_len": TRAJ_LEN,
             "flow_stride": FLOW_STRIDE, "label": 0, "split": "train"}
    return arrays, attrs


def write_tiny_set(path, **attrs):
    """The tiny set (`VIDEOS`, each `synthetic_video`) written to `path`, `attrs` over each video's own."""
    writer = open_writer(path, format="zarr")
    for k, (vid, (pan, vel)) in enumerate(VIDEOS.items()):
        arrays, own = synthetic_video(pan, vel, seed=k)
        writer.write_video(vid, arrays, {**own, **attrs})
    writer.finalize()
    return path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    return write_tiny_set(tmp_path_factory.mktemp("shards") / "tiny")
