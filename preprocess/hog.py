"""Per-cell histograms of oriented gradients (HOG); sampled along trajectories at load time by
`shards.tracks.along_trajectories`.

The appearance half of MME's target (ANCHORS "MME"): 9 unsigned orientation bins,
3x3 Sobel gradients, 8x8 px cells on the same grid as the trajectories, no block
normalization. MME's public code computes the Sobel gradients with a conv layer whose
bias was left random (untrained); here they come from `cv2.Sobel`, with no bias.

Units (`shards.schema`, "hog"): the 3x3 Sobel kernel weighs the central difference by
1 + 2 + 1 = 4 and spans two pixels, so it returns 8x the slope of a linear ramp; it is
divided by 8 so that magnitudes are grey levels per pixel (a ramp rising by s grey levels
per pixel has magnitude s). A cell's bin b holds the sum of the magnitudes of its pixels
whose orientation atan2(gy, gx) mod 180 deg (y pointing down) falls in [20 b, 20 b + 20),
divided by 64: the mean per pixel of the cell. So a vertical edge (gradient along x) is in
bin 0 (or bin 8 when gy is a hair negative: 179.9 deg), a 45 deg gradient (down-right) in
bin 2, a horizontal edge (gradient along y) in bin 4.
"""
from __future__ import annotations

import cv2
import numpy as np

from shards.schema import CELL, HOG_BINS

_SOBEL_GAIN = 8.0  # 3x3 Sobel response to a unit ramp
# 20-degree sector of [0, 360) -> unsigned bin; the extra entry guards an angle of exactly 360.
_SECTOR_TO_BIN = np.array([*range(HOG_BINS), *range(HOG_BINS), 0], np.int64)


def _frame_hog(gray: np.ndarray, cell_of_pixel: np.ndarray) -> np.ndarray:
    """Flat (Hc * Wc * 9,) float64 sums of Sobel magnitude per (cell, bin) of one cropped frame."""
    img = np.asarray(gray, np.float32)
    # BORDER_REPLICATE: the frame edge is not an edge of the content.
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    # cartToPolar's angle is atan2(gy, gx) in [0, 360) degrees, accurate to ~0.3 deg.
    mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    # A table lookup of the 20-degree sector is 4x faster than mod 180 then divide.
    bins = _SECTOR_TO_BIN[(ang * np.float32(1 / 20)).astype(np.int32)]
    return np.bincount((cell_of_pixel + bins).ravel(), weights=mag.ravel(),
                       minlength=cell_of_pixel.size // (CELL * CELL) * HOG_BINS)


def cell_hog(gray: np.ndarray) -> np.ndarray:
    """(T, Hc, Wc, 9) float32 cell histograms of (T, H, W) or (H, W) grey frames (uint8 or float, 0-255).

    A single (H, W) frame gives (1, Hc, Wc, 9). Trailing rows / columns that do not fill
    a cell are dropped (the cell grid is aligned with the top-left corner).
    """
    frames = gray[None] if gray.ndim == 2 else gray
    if frames.ndim != 3:
        raise ValueError(f"gray must be (T, H, W) or (H, W), got {gray.shape}")
    hc, wc = frames.shape[1] // CELL, frames.shape[2] // CELL
    # (cell index) * 9 for every pixel of the cropped frame: adding the bin gives the label.
    rows = (np.arange(hc * CELL) // CELL)[:, None] * wc
    cols = (np.arange(wc * CELL) // CELL)[None, :]
    cell_of_pixel = (rows + cols) * HOG_BINS
    out = np.empty((len(frames), hc, wc, HOG_BINS), np.float32)
    for t, frame in enumerate(frames):
        sums = _frame_hog(frame[:hc * CELL, :wc * CELL], cell_of_pixel)
        out[t] = (sums / (_SOBEL_GAIN * CELL * CELL)).reshape(hc, wc, HOG_BINS)
    return out
