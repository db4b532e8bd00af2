"""What a reader derives from the stored trajectory arrays: absolute positions, HOG along tracks.

Pure numpy functions of the arrays `shards.schema` defines (`traj`, `traj_valid`,
`homography`, `hog`), shared by the extractor (`preprocess/`, which tracks the points) and
the loader (`train/clips/dataset.py`, which rebuilds positions and samples HOG along them when it
reads a clip): the two halves of the pipeline meet only in `shards/`.

Convention (`shards.schema`): the point of cell (i, j) starts at its centre
(8 j + 3.5, 8 i + 3.5); p_{l+1} = homography[t + l](p_l + traj[t, i, j, l]).
"""
from __future__ import annotations

import numpy as np

from .schema import CELL


def cell_centres(hc: int, wc: int) -> np.ndarray:
    """(Hc, Wc, 2) float64 (x, y) centres of the 8x8 cells: (8 j + 3.5, 8 i + 3.5)."""
    half = (CELL - 1) / 2
    ys, xs = np.mgrid[0:hc, 0:wc].astype(np.float64)
    return np.stack([CELL * xs + half, CELL * ys + half], axis=-1)


def apply_homography(homs: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Map points q (T, Hc, Wc, 2) with one homography per start frame homs (T, 3, 3)."""
    h = homs.astype(np.float64)[:, None, None]  # (T, 1, 1, 3, 3)
    x, y = q[..., 0], q[..., 1]
    den = h[..., 2, 0] * x + h[..., 2, 1] * y + h[..., 2, 2]
    return np.stack([(h[..., 0, 0] * x + h[..., 0, 1] * y + h[..., 0, 2]) / den,
                     (h[..., 1, 0] * x + h[..., 1, 1] * y + h[..., 1, 2]) / den], axis=-1)


def bilinear_sample(field: np.ndarray, frame: np.ndarray, p: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Sample field (N, H, W, C) at frame index (T,) and points p (T, Hc, Wc, 2) (x, y in
    field pixels), bilinearly, clamped to the border: (T, Hc, Wc, C).

    Exact float64 weights: cv2.remap would quantize them to 1/32 px (an error of up to
    1/64 of the step between neighbouring flow values). `dtype` float32: the weights rounded
    to float32 and the sums taken in float32 (a float32 field read into a float32 result, as
    the loader's HOG along the tracks: ~2x less arithmetic, differences of ~1e-7 relative).
    """
    n, height, width, c = field.shape
    # Clipped to >= 0, so truncation is the floor.
    x = np.clip(p[..., 0], 0, width - 1)
    y = np.clip(p[..., 1], 0, height - 1)
    x0 = np.minimum(x.astype(np.intp), max(width - 2, 0))
    y0 = np.minimum(y.astype(np.intp), max(height - 2, 0))
    fx = (x - x0)[..., None].astype(dtype, copy=False)
    fy = (y - y0)[..., None].astype(dtype, copy=False)
    dx = 1 if width > 1 else 0
    dy = width if height > 1 else 0
    i00 = frame.reshape(-1, 1, 1) * (height * width) + y0 * width + x0
    flat = field.reshape(-1, c)
    # np.take along axis 0 gathers rows ~5x faster than flat[i00] (numpy's general fancy-index path)
    v00, v01, v10, v11 = (np.take(flat, i00 + o, axis=0) for o in (0, dx, dy, dy + dx))
    gx = 1 - fx
    return (v00 * gx + v01 * fx) * (1 - fy) + (v10 * gx + v11 * fx) * fy


def positions(traj: np.ndarray, valid: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """(T, Hc, Wc, L+1, 2) float32 absolute positions of the tracked points, in frame t + l.

    Rebuilt from stored steps and homographies (at load time): p_0 is the cell centre,
    p_{l+1} = homography[t + l](p_l + traj[..., l, :]). After an invalid step the position
    stays at the last valid one (only `valid` says which positions are meaningful).
    """
    n, hc, wc, traj_len, _ = traj.shape
    pairs = len(homography)
    out = np.empty((n, hc, wc, traj_len + 1, 2), np.float32)
    p = np.broadcast_to(cell_centres(hc, wc), (n, hc, wc, 2)).copy()
    out[..., 0, :] = p
    starts = np.arange(n)
    for l in range(traj_len):
        if pairs > 0:
            frame = np.minimum(starts + l, pairs - 1)
            nxt = apply_homography(homography[frame], p + traj[..., l, :])
            p = np.where(valid[..., l, None], nxt, p)
        out[..., l + 1, :] = p
    return out


def reached(valid: np.ndarray) -> np.ndarray:
    """(..., L) bool: position p_l of the point is in the frame, for l = 0 .. L-1.

    `valid[..., l]` says whether step l (p_l -> p_{l+1}) stayed in the frame, so p_l itself
    was reached when l == 0 (the start, always in the frame) or step l - 1 was valid.
    """
    out = np.ones_like(valid, dtype=bool)
    out[..., 1:] = valid[..., :-1]
    return out


def along_trajectories(hog: np.ndarray, positions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, Hc, Wc, L, 9) float32 HOG sampled along trajectories (MME's trajectory-aligned HOG).

    hog: (T, Hc, Wc, 9) from `shards.derived.cell_hog`; positions: (S, Hc, Wc, L+1, 2) from
    `positions` for the points starting in the first S <= T frames of `hog` (S = T for a
    whole video; a loader passes S = 1 with the L frames that point visits); valid:
    (S, Hc, Wc, L). Step l of the point starting in frame t reads the histogram of frame
    t + l at p_l, bilinearly between the 4 nearest cell centres (clamped at the border).
    It is zero where p_l was not reached (`reached`: step l - 1 invalid), i.e. gated on
    valid[l - 1], not on valid[l]: the last in-frame position of a point that leaves at step
    l is p_l, and its HOG is real. This is computed when loading, not stored: storing it
    would cost L x 9 values per point where `hog` costs 9 per cell.
    """
    n, hc, wc, bins = hog.shape
    n_starts, traj_len = valid.shape[0], valid.shape[-1]
    out = np.zeros((n_starts, hc, wc, traj_len, bins), np.float32)
    if n == 0 or n_starts == 0:
        return out
    # Cell (i, j) has its centre at (8 j + 3.5, 8 i + 3.5): cell-grid coordinates of p.
    grid = (positions.astype(np.float64) - (CELL - 1) / 2) / CELL
    starts = np.arange(n_starts)
    seen = reached(valid)
    for l in range(traj_len):
        sample = bilinear_sample(hog, np.minimum(starts + l, n - 1), grid[..., l, :])
        out[..., l, :] = np.where(seen[..., l, None], sample, 0)
    return out
