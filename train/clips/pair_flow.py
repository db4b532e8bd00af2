"""Camera-inclusive flow between a clip's frames, from the stored per-frame arrays. Pure functions.

The shards store, per stored frame t, the camera-compensated flow t -> t+1 on a grid of
flow_stride px (K,h,w,2) and the homography t -> t+1 (K,3,3). A clip at stride r needs the
on-screen motion between its consecutive frames, i.e. r stored flows chained:

1. per stored frame, on the 8 px cell grid (the grid the masks use): the compensated flow
   averaged over each cell's flow points, plus the homography's displacement H p - p at the
   cell centre p (the mean of those points, so this equals averaging H p - p over them for
   an affine H; for a projective H the difference is the curvature of H over one cell,
   < 1e-3 px on the K400-like set: tests/train/clips/test_pair_flow.py);
2. per clip pair, the r cell flows chained by bilinear lookup (`masks.mgmae.compose`), all
   pairs of the same length in one batched call; the homographies multiplied.

Step 1 used to evaluate the homography at every flow point in float64 and average after
(~4x the points, an einsum over a (K,h,w,3) stack), and step 2 ran one compose per pair:
docs/benchmarks.md, "Every method's clip side by side" has the times, and the test holds the old code as the
reference the new results are compared with.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from shards.schema import CELL

from train.pretraining.masks.mgmae import compose


def grid_points(rows: int, cols: int, stride: int) -> np.ndarray:
    """(rows, cols, 2) pixel (x, y) of grid points that stand for stride x stride blocks."""
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return np.stack([xs, ys], -1) * stride + (stride - 1) / 2


def homography_displacement(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """H p - p (K,h,w,2) float64 for homographies (K,3,3) at pixel points (h,w,2)."""
    hm = homography.astype(np.float64)[:, None, None]                 # (K,1,1,3,3)
    x, y = points[..., 0], points[..., 1]                              # (h,w)
    den = hm[..., 2, 0] * x + hm[..., 2, 1] * y + hm[..., 2, 2]        # (K,h,w)
    return np.stack([(hm[..., 0, 0] * x + hm[..., 0, 1] * y + hm[..., 0, 2]) / den - x,
                     (hm[..., 1, 0] * x + hm[..., 1, 1] * y + hm[..., 1, 2]) / den - y], -1)


def camera_inclusive(flow: np.ndarray, homography: np.ndarray, stride: int) -> np.ndarray:
    """Stored compensated flow (K,h,w,2) + homography displacement (H p - p) -> (K,h,w,2) float64."""
    K, h, w, _ = flow.shape
    return flow + homography_displacement(homography, grid_points(h, w, stride))


def camera_inclusive_cells(flow: np.ndarray, homography: np.ndarray, stride: int) -> np.ndarray:
    """Stored compensated flow (K,h,w,2) + homography displacement -> (K,Hc,Wc,2) float32 on the
    cell grid: the flow averaged over each cell's k x k flow points (k = CELL / stride, which
    divides the cell), the displacement taken at the cell centre."""
    K, h, w, _ = flow.shape
    k = CELL // stride
    hc, wc = h // k, w // k
    if K == 0:  # a one-frame video (an image): no flow, and cv2.resize refuses an empty image
        return np.zeros((0, hc, wc, 2), np.float32)
    # The K frames stacked into one tall image: one INTER_AREA call averages every k x k block
    # exactly (an integer factor; hc*k rows per frame, so no block straddles two frames),
    # ~6x cheaper than k*k strided numpy adds.
    tall = np.ascontiguousarray(flow[:, :hc * k, :wc * k], dtype=np.float32).reshape(K * hc * k, wc * k, 2)
    cells = cv2.resize(tall, (wc, K * hc), interpolation=cv2.INTER_AREA).reshape(K, hc, wc, 2)
    return cells + homography_displacement(homography, grid_points(hc, wc, CELL)).astype(np.float32)


def chain_pairs(flow: np.ndarray, homography: np.ndarray,
                frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flow and homography between consecutive clip frames.

    flow (K,Hc,Wc,2) camera-inclusive cell flow of stored frames lo .. lo+K-1, homography
    (K,3,3) of the same frames, frames (T,) non-decreasing clip frames relative to lo (last
    <= K) -> pair flows (T-1,Hc,Wc,2) float32 on the grid of the pair's first frame, pair
    homographies (T-1,3,3) float64. A pair of equal frames (a short video's repeated last
    frame) did not move: zero flow, identity.
    """
    T = len(frames)
    hc, wc = flow.shape[1:3]
    pair_flow = np.zeros((T - 1, hc, wc, 2), np.float32)
    pair_hom = np.tile(np.eye(3), (T - 1, 1, 1))
    steps = np.diff(frames)
    homs = homography.astype(np.float64)
    for n in np.unique(steps[steps > 0]):
        pairs = np.flatnonzero(steps == n)
        stored = frames[pairs][:, None] + np.arange(n)                # (P,n) stored frames of each pair
        pair_flow[pairs] = compose(torch.from_numpy(flow[stored])).numpy()
        for u in range(n):
            pair_hom[pairs] = homs[stored[:, u]] @ pair_hom[pairs]
    return pair_flow, pair_hom
