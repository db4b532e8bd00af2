"""Codec motion vectors -> dense per-cell forward motion field (pure functions, no I/O).

Input is PyAV's MOTION_VECTORS side data of one decoded frame, a structured array with
fields source, w, h, src_x, src_y, dst_x, dst_y, motion_x, motion_y, motion_scale
(FFmpeg's AVMotionVector). What FFmpeg means by them, checked on synthetic pans:
- (dst_x, dst_y) is the *centre* of a w x h block of the current frame t;
- the block was predicted from (dst + motion / motion_scale) in a reference frame, so
  content moved from src to dst between the reference and t;
- `source` is the reference *list* (-1: list 0, normally a past frame; +1: list 1,
  normally a future frame), not the distance to the reference, which is not exported:
  a P-frame after two B-frames, or a multi-reference encode, predicts from 2-4 frames
  away and its vectors are that many times the per-frame motion;
- only inter blocks are exported (intra blocks and I-frames have none), a bi-predicted
  block appears once per list with the same dst.

With a reference at signed display offset d (t + d, d < 0 past, d > 0 future), content
at dst in frame t is at src in frame t + d, so the forward per-frame displacement is
(dst - src) / (-d) = motion / (motion_scale * d). `recover_distances` estimates |d| by
block matching because the codec does not say; `frame_field` paints the block
velocities onto the 8x8 cell grid of the stored resolution.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import cv2
import numpy as np

from shards.schema import CELL

# Coverage a cell needs from inter blocks to be valid: "most of its area".
MIN_COVERAGE = 0.5


def block_geometry(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-left x, y and size w, h (int64, source pixels) of each block; dst is its centre."""
    w = vectors["w"].astype(np.int64)
    h = vectors["h"].astype(np.int64)
    return vectors["dst_x"].astype(np.int64) - w // 2, vectors["dst_y"].astype(np.int64) - h // 2, w, h


def mirror_vectors(vectors: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray | None:
    """Side-data vectors of an (H, W) picture as seen after mirroring it left-right (an
    hflip): a block covering columns [x0, x0 + w) covers [W - x0 - w, W - x0); a
    displacement (dx, dy) becomes (-dx, dy)."""
    if vectors is None or len(vectors) == 0:
        return vectors
    ws = hw[1]
    x0, _, w, _ = block_geometry(vectors)
    out = vectors.copy()
    for name, values in (("dst_x", ws - x0 - w + w // 2), ("src_x", ws - vectors["src_x"].astype(np.int64)),
                         ("motion_x", -vectors["motion_x"].astype(np.int64))):
        out[name] = values.astype(out.dtype[name])
    return out


def rotate_vectors(vectors: np.ndarray | None, source_hw: tuple[int, int],
                   quarter_turns: int) -> np.ndarray | None:
    """Side-data vectors of a (Hs, Ws) coded frame as seen after rotating the picture
    counterclockwise by quarter_turns x 90 degrees (np.rot90's direction), the display
    orientation of a rotated phone video. Blocks keep their pixels: a block covering
    columns [x0, x0 + w) and rows [y0, y0 + h) covers, after one turn, columns [y0, y0 + h)
    and rows [Ws - x0 - w, Ws - x0); a displacement (dx, dy) becomes (dy, -dx)."""
    k = quarter_turns % 4
    if k == 0 or vectors is None or len(vectors) == 0:
        return vectors
    hs, ws = source_hw
    x0, y0, w, h = block_geometry(vectors)
    mx, my = vectors["motion_x"].astype(np.int64), vectors["motion_y"].astype(np.int64)
    sx, sy = vectors["src_x"].astype(np.int64), vectors["src_y"].astype(np.int64)
    if k == 1:
        x0, y0, w, h = y0, ws - x0 - w, h, w
        mx, my, sx, sy = my, -mx, sy, ws - sx
    elif k == 2:
        x0, y0 = ws - x0 - w, hs - y0 - h
        mx, my, sx, sy = -mx, -my, ws - sx, hs - sy
    else:
        x0, y0, w, h = hs - y0 - h, x0, h, w
        mx, my, sx, sy = -my, mx, hs - sy, sx
    out = vectors.copy()
    for name, values in (("w", w), ("h", h), ("dst_x", x0 + w // 2), ("dst_y", y0 + h // 2),
                         ("src_x", sx), ("src_y", sy), ("motion_x", mx), ("motion_y", my)):
        out[name] = values.astype(out.dtype[name])
    return out


def default_distances(vectors: np.ndarray) -> np.ndarray:
    """Signed reference offsets assuming the adjacent frame: -1 for list 0, +1 for list 1."""
    return np.where(vectors["source"] > 0, 1, -1).astype(np.int64)


def block_velocities(vectors: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(N, 2) float64 forward displacement per frame of each block, x before y, source px.

    `distances` is the signed display offset of each block's reference frame.
    """
    scale = vectors["motion_scale"].astype(np.float64) * distances
    return np.stack([vectors["motion_x"] / scale, vectors["motion_y"] / scale], axis=1)


def drop_unused_lists(vectors: np.ndarray) -> np.ndarray:
    """Vectors without FFmpeg's placeholders for lists a partition does not use.

    FFmpeg decides per macroblock which lists to export, so in a B macroblock split into
    one list-0 and one list-1 partition each partition is also exported for its unused
    list, with a zero vector. Seen on every x264 B-frame with 16x8 / 8x16 partitions:
    averaged in, they halve the motion. A zero vector whose block (same dst, w, h) also
    has a non-zero vector from the other list is therefore dropped; real bi-prediction
    with one static and one moving reference would need non-constant motion.
    """
    if len(vectors) == 0:
        return vectors
    # one int64 per block (int16 dst + 32768 fits 16 bits, w and h 8 bits): a 1-D unique is fast
    key = (((vectors["dst_x"].astype(np.int64) + 32768) << 32) | ((vectors["dst_y"].astype(np.int64) + 32768) << 16)
           | (vectors["w"].astype(np.int64) << 8) | vectors["h"].astype(np.int64))
    _, group = np.unique(key, return_inverse=True)
    zero = (vectors["motion_x"] == 0) & (vectors["motion_y"] == 0)
    moving_in_group = np.bincount(group, weights=~zero)[group]
    return vectors[~(zero & (moving_in_group > 0))]


# A block whose best candidate still leaves it misaligned by about this many pixels
# (mean absolute difference / mean gradient magnitude) matched none of the candidates:
# its reference is further than max_ref_distance. Measured on x264 refs=3 pans:
# right distances give 0.05-0.3 (98 % below 0.5), distances beyond the range 0.6-2.
MATCH_TOLERANCE_PX = 0.5
# Below this mean absolute difference (grey levels) a match is accepted whatever the
# gradient: flat blocks differ by compression noise only.
MATCH_FLOOR = 2.0
SAMPLES_PER_SIDE = 4  # block-matching lattice per block side
_REMAP_MAX_ROWS = 32767  # cv2.remap takes maps of fewer rows (SHRT_MAX)


def recover_distances(vectors: np.ndarray, current: np.ndarray, references: Mapping[int, np.ndarray],
                      max_ref_distance: int = 4, current_float: np.ndarray | None = None) -> np.ndarray:
    """(N,) int64 signed reference offset of each block, 0 where none fits.

    current: (Hs, Ws) grey frame t at the resolution the vectors refer to (uint8 is fastest).
    references: signed display offset d -> grey frame t + d, for the offsets that exist.
    current_float: `current` as float32 when the caller has it already (saves a conversion).
    For k in 1..max_ref_distance in the block's own direction (list 0 past, list 1
    future) the block at dst in frame t is compared with the reference sampled
    bilinearly at the exact sub-pixel src in frame t -+ k; the smallest mean absolute
    difference wins and ties go to the smallest k, so flat content keeps the
    adjacent-frame reading. If even the best candidate is off by more than
    MATCH_TOLERANCE_PX (and MATCH_FLOOR grey levels) the distance is 0: unknown, and the
    block is better left out than divided by the wrong k. Zero vectors keep +-1.
    """
    sign = np.where(vectors["source"] > 0, 1, -1).astype(np.int64)
    out = sign.copy()
    moving = (vectors["motion_x"] != 0) | (vectors["motion_y"] != 0)
    if not moving.any():
        return out
    x0, y0, w, h = block_geometry(vectors)
    scale = vectors["motion_scale"].astype(np.float64)
    mx = (vectors["motion_x"] / scale).astype(np.float32)  # src - dst, source px
    my = (vectors["motion_y"] / scale).astype(np.float32)
    cur = np.asarray(current if current_float is None else current_float, np.float32)
    refs = {d: np.asarray(r, np.float32) for d, r in references.items() if abs(d) <= max_ref_distance}
    texture = 0.5 * _gradient_mean(current, x0, y0, w, h)  # [-1, 0, 1] kernels: twice a central difference
    # Every block is read on a 4x4 lattice of samples (its side / 4 apart: 16x16 macroblocks
    # down to 4x4 partitions alike), so all blocks share one cv2.remap per candidate frame.
    # 16 samples tell the right k apart as well as every pixel does on textured blocks, at
    # 1/16 of the cost for 16x16 macroblocks.
    idx = np.flatnonzero(moving)
    lattice = np.arange(SAMPLES_PER_SIDE)
    ys = _lattice(y0[idx], h[idx], lattice)  # (n, 4)
    xs = _lattice(x0[idx], w[idx], lattice)  # (n, 4)
    block = _sample(cur, ys, xs).reshape(len(idx), -1)  # (n, 16)
    # The mean over the lattice as a product with 1 / m: numpy's mean over small
    # trailing axes was most of this function's time.
    average = np.full(block.shape[1], 1.0 / block.shape[1], np.float32)
    mad = np.full((max_ref_distance, len(idx)), np.inf, np.float32)
    for s in (-1, 1):
        sel = np.flatnonzero(sign[idx] == s)
        if len(sel) == 0:
            continue
        ys_s, xs_s = ys[sel] + my[idx[sel], None], xs[sel] + mx[idx[sel], None]
        block_s = block[sel]
        for k in range(1, max_ref_distance + 1):
            if s * k not in refs:
                continue
            diff = _sample(refs[s * k], ys_s, xs_s).reshape(len(sel), -1)
            diff -= block_s
            np.abs(diff, out=diff)
            mad[k - 1, sel] = diff @ average
    best_k = np.argmin(mad, axis=0) + 1  # argmin keeps the first: the smallest k
    best = mad[best_k - 1, np.arange(len(idx))]
    fits = best <= np.maximum(MATCH_TOLERANCE_PX * texture[idx], MATCH_FLOOR)
    out[idx] = np.where(fits, sign[idx] * best_k, 0)
    return out


def _lattice(start: np.ndarray, size: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """(n, len(lattice)) float32 sample rows (or columns): start + (size // m) * j, inside the block."""
    step = np.maximum(size // len(lattice), 1)
    offsets = np.minimum(step[:, None] * lattice[None], size[:, None] - 1)
    return (start[:, None] + offsets).astype(np.float32)


def _sample(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(n, bh, bw) bilinear samples of img at rows ys (n, bh) x columns xs (n, bw).

    Out-of-frame coordinates read the edge pixel, as codecs extend frame edges.
    """
    n, bh, bw = len(ys), ys.shape[1], xs.shape[1]
    # cv2.remap refuses maps of SHRT_MAX rows or more (a 720p frame has ~3600 blocks of 16 rows)
    step = max(1, (_REMAP_MAX_ROWS - 1) // max(bh, 1))
    out = np.empty((n, bh, bw), np.float32)
    for a in range(0, n, step):
        m = min(step, n - a)
        map_y = np.broadcast_to(ys[a:a + m, :, None], (m, bh, bw)).reshape(m * bh, bw)
        map_x = np.broadcast_to(xs[a:a + m, None, :], (m, bh, bw)).reshape(m * bh, bw)
        out[a:a + m] = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE).reshape(m, bh, bw)
    return out




def _gradient_mean(img: np.ndarray, x0: np.ndarray, y0: np.ndarray, w: np.ndarray,
                   h: np.ndarray) -> np.ndarray:
    """Mean of |I(x+1) - I(x-1)| + |I(y+1) - I(y-1)| over each block's part inside the frame.

    The [-1, 0, 1] Sobel with its default reflect-101 border, which is 0 on the outermost
    rows / columns. A uint8 frame takes an exact integer path (absdiff, 32-bit integral
    images): 3-4x faster at 720p than float Sobel + float64 integral, same values.
    """
    if img.dtype != np.uint8:
        cur = np.asarray(img, np.float32)
        grad = np.abs(cv2.Sobel(cur, cv2.CV_32F, 1, 0, ksize=1)) + np.abs(cv2.Sobel(cur, cv2.CV_32F, 0, 1, ksize=1))
        return _box_mean(grad, x0, y0, w, h)
    hi, wi = img.shape
    gx = np.zeros((hi, wi), np.uint8)
    gy = np.zeros((hi, wi), np.uint8)
    if wi > 2:
        gx[:, 1:-1] = cv2.absdiff(img[:, 2:], img[:, :-2])
    if hi > 2:
        gy[1:-1] = cv2.absdiff(img[2:], img[:-2])
    return _box_mean(gx, x0, y0, w, h, cv2.CV_32S) + _box_mean(gy, x0, y0, w, h, cv2.CV_32S)


def _box_mean(img: np.ndarray, x0: np.ndarray, y0: np.ndarray, w: np.ndarray, h: np.ndarray,
              sdepth: int = cv2.CV_64F) -> np.ndarray:
    """Mean of img over each block's part inside the frame (integral image, O(1) per block)."""
    ii = cv2.integral(img, sdepth=sdepth)
    hi, wi = img.shape
    xa, xb = np.clip(x0, 0, wi), np.clip(x0 + w, 0, wi)
    ya, yb = np.clip(y0, 0, hi), np.clip(y0 + h, 0, hi)
    # only the four corners of each block become float64 (a 720p integral image is 7 MB as float64)
    corners = [ii[yb, xb], ii[ya, xb], ii[yb, xa], ii[ya, xa]]
    a, b, c, d = (x.astype(np.float64) for x in corners)
    total = a - b - c + d
    return total / np.maximum((xb - xa) * (yb - ya), 1)


def frame_field(vectors: np.ndarray | None, source_hw: tuple[int, int], stored_hw: tuple[int, int],
                distances: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense motion field of one frame on the stored cell grid.

    vectors: side data of frame t (None or empty: no inter blocks, e.g. an I-frame).
    source_hw: (Hs, Ws) pixel space of the vectors; stored_hw: (H, W) stored resolution.
    distances: signed reference offsets per block (default: adjacent frame); blocks with
    distance 0 (unknown) are left out.
    Returns mv (Hc, Wc, 2) float32 forward px/frame in stored pixels, valid (Hc, Wc) bool
    (cell at least MIN_COVERAGE covered by inter blocks; value = area-weighted mean of
    the blocks; where past-referenced blocks cover a cell, only those: a bi-predicted block
    counts as its past estimate) and
    distance (Hc, Wc) uint8, the area-weighted mean |d| rounded, 0 where invalid.
    """
    (hs, ws), (h, w) = source_hw, stored_hw
    hc, wc = h // CELL, w // CELL
    mv = np.zeros((hc, wc, 2), np.float32)
    valid = np.zeros((hc, wc), bool)
    distance = np.zeros((hc, wc), np.uint8)
    if vectors is None or len(vectors) == 0 or hc == 0 or wc == 0:
        return mv, valid, distance
    if distances is None:
        distances = default_distances(vectors)
    known = distances != 0
    vectors, distances = vectors[known], distances[known]
    if len(vectors) == 0:
        return mv, valid, distance
    x0, y0, bw, bh = block_geometry(vectors)
    # Paint on the coarsest grid all blocks align to (4 px for MPEG codecs) rather
    # than per pixel: exact, and 16x fewer cells.
    g = int(np.gcd.reduce(np.concatenate([[16], x0, y0, bw, bh])))
    hg, wg = -(-hs // g), -(-ws // g)
    velocity = block_velocities(vectors, distances)
    values = np.concatenate([velocity, np.abs(distances)[:, None].astype(np.float64)], axis=1)
    # Past references (d < 0) measure mv[t]'s own interval (t-1 -> t); a future reference
    # measures t -> t+d, which differs at a change of speed. Where a grid cell has a
    # past-referenced block, its future-referenced ones (the other half of a bi-prediction)
    # are left out; cells predicted only from the future keep them.
    past = distances < 0
    count_p, sums_p = _paint(np.flatnonzero(past), x0, y0, bw, bh, g, hg, wg, values)
    count_f, sums_f = _paint(np.flatnonzero(~past), x0, y0, bw, bh, g, hg, wg, values)
    use_past = count_p > 0
    count = np.where(use_past, count_p, count_f)
    sums = np.where(use_past, sums_p, sums_f)
    covered = (count > 0).astype(np.float64).reshape(hg, wg)
    mean = np.divide(sums, count, out=np.zeros_like(sums), where=count > 0).reshape(3, hg, wg)
    ay = _overlap(hs, h, hc, g)
    ax = _overlap(ws, w, wc, g)
    area = ay @ covered @ ax.T  # (hc, wc) source px^2 of each cell covered by inter blocks
    cell_area = (CELL * hs / h) * (CELL * ws / w)
    valid = area > MIN_COVERAGE * cell_area
    per_cell = np.stack([ay @ (mean[c] * covered) @ ax.T for c in range(3)], axis=-1)
    per_cell = np.divide(per_cell, area[..., None], out=np.zeros_like(per_cell), where=valid[..., None])
    mv = (per_cell[..., :2] * np.array([w / ws, h / hs])).astype(np.float32)
    distance = np.where(valid, np.rint(per_cell[..., 2]), 0).astype(np.uint8)
    return mv, valid, distance


def _paint(idx_all: np.ndarray, x0: np.ndarray, y0: np.ndarray, bw: np.ndarray, bh: np.ndarray,
           g: int, hg: int, wg: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks idx_all painted on the (hg, wg) grid of g px cells: per grid cell, the number of
    blocks covering it (hg*wg,) and the sums of their `values` columns (3, hg*wg)."""
    count = np.zeros(hg * wg)
    sums = np.zeros((3, hg * wg))
    for sw, sh in set(zip((bw[idx_all] // g).tolist(), (bh[idx_all] // g).tolist())):
        idx = idx_all[(bw[idx_all] // g == sw) & (bh[idx_all] // g == sh)]
        gy = y0[idx, None, None] // g + np.arange(sh)[None, :, None]  # (n, sh, 1)
        gx = x0[idx, None, None] // g + np.arange(sw)[None, None, :]  # (n, 1, sw)
        inside = (gy >= 0) & (gy < hg) & (gx >= 0) & (gx < wg)  # macroblocks overhang the frame
        flat = (gy * wg + gx)[inside]
        owner = np.broadcast_to(np.arange(len(idx))[:, None, None], inside.shape)[inside]
        count += np.bincount(flat, minlength=hg * wg)
        for c in range(3):
            sums[c] += np.bincount(flat, weights=values[idx[owner], c], minlength=hg * wg)
    return count, sums


@lru_cache(maxsize=32)
def _overlap(source_len: int, stored_len: int, cells: int, g: int) -> np.ndarray:
    """(cells, ceil(source_len / g)) length of source px shared by stored cell i and grid cell c.

    Stored pixel x covers source [x s, (x + 1) s), s = source_len / stored_len, the
    footprint area scaling (swscale AREA, cv2.INTER_AREA) gives it, so cells line up with the
    resized frames.
    """
    s = source_len / stored_len
    lo = np.arange(cells)[:, None] * CELL * s
    hi = lo + CELL * s
    edges = np.minimum(np.arange(-(-source_len // g) + 1) * g, source_len).astype(np.float64)
    out = np.minimum(hi, edges[None, 1:]) - np.maximum(lo, edges[None, :-1])
    out = np.clip(out, 0, None)
    out.flags.writeable = False  # shared through the cache
    return out
