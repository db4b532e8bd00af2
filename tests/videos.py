"""Small corpora of real H.264 files with motion known by construction, shared by the tests that
extract, kill, repair or store them."""
from __future__ import annotations

from pathlib import Path

from preprocess.synthetic import MovingObject, Scene, encode, render


def pan_clips(root: Path, count: int, seed: int, height: int = 48, width: int = 64, frames: int = 6,
              bg_dy: float = 0.0, side: int = 12, at: tuple[int, int] = (10, 10),
              velocity: tuple[float, float] = (1.0, 1.0)) -> Path:
    """`count` clips `clip<i>` in `root`: a pan of (1 + i, `bg_dy`) px a frame (faster in each) and
    one object of `side` px starting at `at`, moving `velocity`; scene seeds `seed + i`."""
    for i in range(count):
        scene = Scene(height=height, width=width, num_frames=frames, bg_velocity=(1.0 + i, bg_dy), seed=seed + i,
                      objects=(MovingObject(side, at, velocity),))
        encode(root / f"clip{i}", render(scene), codec="h264")
    return root
