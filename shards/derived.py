"""Arrays computed when read instead of stored (schema 3): `hog` from the frames' luma,
`traj` / `traj_valid` from the stored flow and homographies.

Stored, they were 7 of the 9.4 bytes of motion data per source byte on the K400-like corpus
(hog 3.8, traj 3.2: docs/benchmarks.md). Both are cheap functions of arrays the shards hold
anyway, and a clip needs them only at a few frames and on the cells of its crop:

- `cell_hog_box`: the HOG of `schema.CONVENTIONS["hog"]` of a box of cells of grey frames
  (the extractor computed it until schema 2, in preprocess/hog.py), all frames in one pass: each frame is cut with a one-pixel margin
  (what the 3x3 Sobel reads; replicated where the frame ends, as BORDER_REPLICATE), and one
  `np.bincount` over (cell, bin) labels weighted by the magnitude sums each cell's bins.
  Frames go in groups of ~32k pixels stacked one above the other (one frame at 224 px:
  stacking large frames was slower, the working set leaves the cache; ~7 at 64 px, where
  per-call overhead dominates); 9 masked `cv2.resize(INTER_AREA)` passes (one per bin) were
  3.5x slower than the one `np.bincount`. The gradients of uint8 frames come from
  `cv2.spatialGradient` (exact int16, the same 3x3 Sobel).
- `track`: one point per cell centre (of a box of cells) of each start frame, all starts in
  one vectorized pass: the stored (block-mean, quantized) compensated flow is looked up
  bilinearly between flow-grid points, then the homography: p_{l+1} = H_{t+l}(p_l + d_l),
  the convention of `schema.CONVENTIONS["traj"]`. The extractor's tracker used the
  full-resolution median-filtered flow; the difference is measured in docs/design.md.
Pure functions of numpy arrays; the reader (`shards.reader.Video`) feeds them.

HOG, the appearance half of MME's target (ANCHORS "MME"): 9 unsigned orientation bins,
3x3 Sobel gradients, 8x8 px cells on the same grid as the trajectories, no block
normalization. MME's public code computes the Sobel gradients with a conv layer whose
bias was left random (untrained); here they come from `cv2.Sobel`, with no bias.
Units: the 3x3 Sobel kernel weighs the central difference by 1 + 2 + 1 = 4 and spans two
pixels, so it returns 8x the slope of a linear ramp; it is divided by 8 so that magnitudes
are grey levels per pixel (a ramp rising by s grey levels per pixel has magnitude s). A
cell's bin b holds the sum of the magnitudes of its pixels whose orientation
atan2(gy, gx) mod 180 deg (y pointing down) falls in [20 b, 20 b + 20), divided by 64: the
mean per pixel of the cell. So a vertical edge (gradient along x) is in bin 0 (or bin 8 when
gy is a hair negative: 179.9 deg), a 45 deg gradient (down-right) in bin 2, a horizontal
edge (gradient along y) in bin 4.
"""
from __future__ import annotations

import cv2
import numpy as np

from .schema import CELL, HOG_BINS, _jpeg_decode
from .tracks import apply_homography, bilinear_sample

STACK_PIXELS = 32768  # cell_hog_box: frames per group of calls, by their pixels
_SOBEL_GAIN = 8.0  # 3x3 Sobel response to a unit ramp: magnitudes become grey levels per pixel
# 20-degree sector of [0, 360) -> unsigned bin (sector 18, an angle of exactly 360, is bin 0),
# as a 256-entry table for cv2.LUT: ~10x faster than numpy's fancy indexing or np.take.
_SECTOR_TO_BIN = np.array([*range(HOG_BINS), *range(HOG_BINS)] + [0] * (256 - 2 * HOG_BINS), np.uint8)


def cell_hog(gray: np.ndarray) -> np.ndarray:
    """(T, Hc, Wc, 9) float32 cell histograms of (T, H, W) or (H, W) grey frames (uint8 or
    float, 0-255). A single (H, W) frame gives (1, Hc, Wc, 9). Trailing rows / columns that do
    not fill a cell are dropped (the cell grid is aligned with the top-left corner)."""
    gray = gray[None] if gray.ndim == 2 else gray
    if gray.ndim != 3:
        raise ValueError(f"gray must be (T, H, W) or (H, W), got {gray.shape}")
    _, height, width = gray.shape
    return cell_hog_box(gray, (0, height // CELL), (0, width // CELL))


def cell_hog_box(gray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """`cell_hog(gray)[:, r0:r1, c0:c1]`, computed from those cells' pixels only (plus the
    one-pixel margin the Sobel reads): (T, r1 - r0, c1 - c0, 9) float32. `gray`: (T, H, W), or
    a sequence of T (H, W) frames (a loader's frames as it decoded them: no stacked copy)."""
    n = len(gray)
    height, width = gray[0].shape if n else (0, 0)
    (r0, r1), (c0, c1) = rows, cols
    hc, wc = max(r1 - r0, 0), max(c1 - c0, 0)
    if n == 0 or hc == 0 or wc == 0:
        return np.zeros((n, hc, wc, HOG_BINS), np.float32)
    y0, y1, x0, x1 = CELL * r0, CELL * r1, CELL * c0, CELL * c1
    # the margin the frame has; where it ends, a replicated one (the whole frame's BORDER_REPLICATE)
    top, bottom, left, right = min(1, y0), min(1, height - y1), min(1, x0), min(1, width - x1)
    bh, bw = CELL * hc, CELL * wc
    # (cell index) * 9 of every pixel of the box: adding the bin gives the bincount label
    label_base = ((np.arange(bh) // CELL)[:, None] * wc + (np.arange(bw) // CELL)[None, :]) * HOG_BINS
    per_frame = hc * wc * HOG_BINS
    out = np.empty((n, per_frame), np.float32)
    cuts = [f[y0 - top:y1 + bottom, x0 - left:x1 + right] for f in gray]
    if cuts[0].dtype not in (np.uint8, np.float32):
        cuts = [c.astype(np.float32) for c in cuts]
    margins = (1 - top, 1 - bottom, 1 - left, 1 - right)
    # Frames in groups of ~STACK_PIXELS, stacked one above the other with their margins, so that
    # each OpenCV / numpy call covers several small frames (a 64 px clip's 40 frames in 6 groups
    # instead of 40 rounds of ~8 calls); at 224 px a group is one frame (larger stacks left the
    # cache and were slower). A frame's inner pixels read only its own rows: the same values.
    group = min(n, max(1, STACK_PIXELS // ((bh + 2) * (bw + 2))))
    bases = label_base + (np.arange(group) * per_frame)[:, None, None]                  # (group, bh, bw)
    labels = np.empty(bases.shape, np.intp)
    block = np.empty((group, bh + 2, bw + 2), cuts[0].dtype)
    for g0 in range(0, n, group):
        m = min(group, n - g0)
        for k in range(m):
            if any(margins):  # the replicated margin where the frame ends (the whole frame's BORDER_REPLICATE)
                made = cv2.copyMakeBorder(cuts[g0 + k], *margins, cv2.BORDER_REPLICATE, dst=block[k])
                if not np.shares_memory(made, block):  # OpenCV allocated its own output after all
                    block[k] = made
            else:
                block[k] = cuts[g0 + k]
        tall = block[:m].reshape(m * (bh + 2), bw + 2)
        if tall.dtype == np.uint8:
            # the same 3x3 Sobel in exact int16 (|g| <= 4 x 255), one pass for both: ~1/3 of
            # a frame's HOG faster than two float Sobels, bit-identical once converted
            gx, gy = cv2.spatialGradient(tall)
        else:
            gx, gy = cv2.Sobel(tall, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(tall, cv2.CV_32F, 0, 1, ksize=3)
        gx, gy = (g.reshape(m, bh + 2, bw + 2)[:, 1:-1, 1:-1].astype(np.float32).reshape(m * bh, bw) for g in (gx, gy))
        # cartToPolar's angle is atan2(gy, gx) in [0, 360) degrees, accurate to ~0.3 deg.
        mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
        # a table lookup of the 20-degree sector is 4x faster than mod 180 then divide
        bins = cv2.LUT((ang * np.float32(1 / 20)).astype(np.uint8), _SECTOR_TO_BIN).reshape(m, bh, bw)
        np.add(bases[:m], bins, out=labels[:m])
        out[g0:g0 + m] = np.bincount(labels[:m].ravel(), weights=mag.ravel(), minlength=m * per_frame).reshape(m, per_frame)
    out *= np.float32(1 / (_SOBEL_GAIN * CELL * CELL))
    return out.reshape(n, hc, wc, HOG_BINS)


def decode_gray(rows: np.ndarray) -> np.ndarray:
    """(n, N) stored JPEG rows (schema "jpeg") -> (n, H, W) uint8 luma, decoded grey."""
    return _jpeg_decode(rows, gray=True)


def track(flow: np.ndarray, homography: np.ndarray, first: int, starts: np.ndarray, num_frames: int,
          height: int, width: int, traj_len: int, flow_stride: int,
          rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None,
          cells: tuple[np.ndarray, np.ndarray] | None = None,
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trajectories of the cell-centre points of frames `starts` (S,), on cells rows x cols
    (default: all), or with `cells` = (row indices, column indices) on their outer product
    only (a loader's resampled grid: the same points' tracks, each independent of the others).

    flow (K, h, w, 2) px and homography (K, 3, 3) hold stored pairs first .. first + K - 1,
    which must cover every pair s + l < num_frames - 1 the starts use. Returns traj
    (S, Hc', Wc', L, 2) float32, valid (S, Hc', Wc', L) bool and positions (S, Hc', Wc', L+1, 2)
    float32 (p_0 the cell centre; after an invalid step a point stays where it was, as
    `shards.tracks.positions` rebuilds them). A step is invalid (and 0) once the point has
    left [0, W-1] x [0, H-1] or frame s + l + 1 does not exist.
    """
    if cells is None:
        r0, r1 = rows if rows is not None else (0, height // CELL)
        c0, c1 = cols if cols is not None else (0, width // CELL)
        cells = (np.arange(r0, r1), np.arange(c0, c1))
    s = np.asarray(starts, np.intp)
    shape = (len(s), len(cells[0]), len(cells[1]))
    traj = np.zeros(shape + (traj_len, 2), np.float32)
    valid = np.zeros(shape + (traj_len,), bool)
    pos = np.empty(shape + (traj_len + 1, 2), np.float32)
    half = (CELL - 1) / 2
    ys, xs = np.meshgrid(np.asarray(cells[0], np.float64), np.asarray(cells[1], np.float64), indexing="ij")
    p = np.broadcast_to(np.stack([CELL * xs + half, CELL * ys + half], -1), shape + (2,)).copy()
    pos[..., 0, :] = p
    if len(s) == 0 or len(flow) == 0:
        pos[...] = p[..., None, :]
        return traj, valid, pos
    alive = np.ones(shape, bool)
    field = np.asarray(flow, np.float32)  # float64 weights: exact enough, no copy of the window
    grid_half = (flow_stride - 1) / 2  # flow point (a, b) stands for the block centred there
    for l in range(traj_len):
        pair = s + l
        exists = pair < num_frames - 1
        k = np.clip(pair - first, 0, len(flow) - 1)
        d = bilinear_sample(field, k, (p - grid_half) / flow_stride)
        nxt = apply_homography(homography[k], p + d)
        alive &= (exists[:, None, None] & (nxt[..., 0] >= 0) & (nxt[..., 0] <= width - 1)
                  & (nxt[..., 1] >= 0) & (nxt[..., 1] <= height - 1))
        traj[..., l, :] = np.where(alive[..., None], d, 0)
        valid[..., l] = alive
        np.copyto(p, nxt, where=alive[..., None])
        pos[..., l + 1, :] = p
    return traj, valid, pos
