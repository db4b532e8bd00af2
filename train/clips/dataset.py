"""Clips from shards: sampling, motion-consistent augmentation, loader. No video decoding.

One clip (shapes: T input frames, S = input_size, Hc = Wc = S/8 cells, t = T/tubelet, L steps):

    video       (3,T,S,S)      float, ImageNet-normalized RGB
    frame_step  ()             stored frames between consecutive input frames
    mv          (T,Hc,Wc,2)    codec motion of each input frame, input px per stored frame
    mv_valid    (T,Hc,Wc)
    flow        (T-1,Hc,Wc,2)  camera-INCLUSIVE forward flow input frame k -> k+1, input px
    homography  (T-1,3,3)      camera motion input frame k -> k+1, input px coordinates
    hog         (T,Hc,Wc,9)
    traj        (t,Hc,Wc,L,2)  compensated steps of the points starting at each tubelet's 1st frame
    traj_valid  (t,Hc,Wc,L)
    traj_hog    (t,Hc,Wc,L,9)  HOG along those trajectories

With `assemble = "device"` (train/clips/assemble.py) a clip carries, instead of `video` (and of
`traj_hog`), its frames' stored JPEG bytes, crop box and flip (and what MME's HOG along the
trajectories needs); the trainer decodes and finishes them on its device.

Only the keys the mask and the target need are read (`needs`). Geometry: a square crop of
the stored frames whose offsets and side are multiples of the 8 px cell, resized to S;
every cell grid is cropped on the same cells and resampled to S/8 cells (nearest cell),
displacements are multiplied by the scale. Resampling cells is exact when the crop side is
S (scale 1) and a nearest-cell approximation otherwise (over the default crop range ~12 % of
tokens repeat a point: docs/design.md, "Crops whose side differs"); HOG magnitudes are not
rescaled.

Flow between input frames spans `sampling_rate` stored frames: the camera-inclusive flows
(stored compensated flow averaged per cell + homography displacement at the cell centre) of
those frames are chained on the stored cell grid (exact up to bilinear lookup), the
homographies multiplied (train/clips/pair_flow.py). Repeated augmentation (`repeated_aug` crops of
one window) reads and chains once and crops per box (`read_clips_at`).

Randomness: sample number g draws from `np.random.default_rng([seed, g])`, so a clip does
not depend on the worker that loads it, and a resumed run sees the same clips. The masks are
made with the batch, in the worker that collates it (`MaskCollate`), from a generator of the
run's seed and the batch's first sample number: the trainer's main process only moves batches
to the device (computed there, MGM's and MGMAE's masks were the loading bottleneck on a GPU:
docs/benchmarks.md, "The first GPU run").
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from shards.schema import CELL, HOG_BINS
from shards.tracks import bilinear_sample, reached

from train.clips.assemble import ASSEMBLIES, jpeg_lengths, normalize
from train.clips.keys import (CROP, FLIP, FRAME_STEP, HOG_AT, HOG_BOX, HOG_FRAME, HOG_JPEG, HOG_JPEG_LEN, JPEG, JPEG_LEN,
                              SAMPLE, SKIPPED, TRAJ_HOG, VIDEO, VIDEO_U8)
from train.pretraining.masks import batch_generator, get_mask
from train.clips.pair_flow import camera_inclusive_cells, chain_pairs
from train.pretraining.skips import READ_ERRORS
from shards.derived import decode_gray
from shards import ShardRef, open_shards

MOTION_KEYS = ("mv", "mv_valid", "flow", "homography", "hog", "traj", "traj_valid", TRAJ_HOG)


# Bilinear for every crop, up or down (the papers' fine-tuning and evaluation resize, torch's
# bilinear without antialiasing). INTER_AREA for downscaling cost 1.29 ms a 256 -> 224 px frame
# against 0.11 (~19 ms of a 16-frame clip, every method) and sits 0.28-0.45 grey levels from
# PIL's antialiased bilinear of VideoMAE's pretraining crop, INTER_LINEAR 0.47-0.78: both far
# inside the 2.7-3.1 the frames' JPEG storage already costs (docs/design.md, "Resizing crops").
RESIZE = cv2.INTER_LINEAR


@dataclass(frozen=True)
class ClipSpec:
    num_frames: int = 16
    sampling_rate: int = 4
    input_size: int = 224
    tubelet: int = 2
    min_crop: float = 0.66
    flip: bool = True
    needs: frozenset[str] = frozenset()
    repeated_aug: int = 1   # clips per video read: the same frames, each its own crop and flip (MGMAE)
    traj_len: int = 0       # steps per trajectory (MME); 0 = the shards' attrs["traj_len"]
    assemble: str = "loader"  # "uint8": ship the clip's levels; "device": its JPEG bytes, crop and flip (train/clips/assemble.py)

    def __post_init__(self):
        if self.assemble not in ASSEMBLIES:
            raise ValueError(f"unknown assemble {self.assemble!r}; known: {', '.join(ASSEMBLIES)}")


def clip_traj_len(video, spec: ClipSpec) -> int:
    """Trajectory steps a clip of `video` carries: `spec.traj_len`, else the shards' own.

    Shard schema 3 derives trajectories when read, from flow stored for every frame pair, so
    any length can be tracked (MME's K400 script trains L = 4 where its paper says 6); a
    schema-2 set stores `traj_len` steps and can only be cut shorter."""
    stored = int(video.attrs["traj_len"])
    if not spec.traj_len:
        return stored
    if spec.traj_len < 0:
        raise ValueError(f"traj_len must be >= 0, got {spec.traj_len}")
    if spec.traj_len > stored and not video.specs["traj"].derived:
        raise ValueError(f"traj_len {spec.traj_len}: this shard set stores {stored} steps per trajectory "
                         f"(schema {video.attrs.get('schema_version', '?')}); re-extract it, or train with "
                         f"traj_len <= {stored}")
    return spec.traj_len


# ---- geometry -------------------------------------------------------------------------------

def frame_indices(num_stored: int, spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Stored frame numbers of the clip (T,) and the stride used (lowered for short videos)."""
    T = spec.num_frames
    rate = max(1, min(spec.sampling_rate, (num_stored - 1) // max(T - 1, 1)))
    span = (T - 1) * rate + 1
    t0 = int(rng.integers(0, max(num_stored - span, 0) + 1))
    # a video shorter than T frames repeats its last frame
    return np.minimum(t0 + rate * np.arange(T), num_stored - 1), rate


def crop_box(height: int, width: int, spec: ClipSpec, rng: np.random.Generator) -> tuple[int, int, int]:
    """(x0, y0, side) in stored px, all multiples of the cell."""
    short = min(height, width) // CELL
    side = max(1, int(short * rng.uniform(spec.min_crop, 1.0))) * CELL
    x0 = int(rng.integers(0, width // CELL - side // CELL + 1)) * CELL
    y0 = int(rng.integers(0, height // CELL - side // CELL + 1)) * CELL
    return x0, y0, side


def resample_cells(grid: np.ndarray, x0: int, y0: int, side: int, out_cells: int) -> np.ndarray:
    """Crop a (..., Hc, Wc, ...) cell grid (axes 1 and 2 after the leading one) and resample
    it to out_cells x out_cells by nearest cell."""
    n = side // CELL
    src = ((np.arange(out_cells) + 0.5) * n / out_cells).astype(int)
    return grid[:, y0 // CELL + src][:, :, x0 // CELL + src]


def crop_homography(h: np.ndarray, x0: int, y0: int, scale: float) -> np.ndarray:
    """Homographies (K,3,3) of stored px -> of input px: A H A^-1, x' = s (x - x0 + 0.5) - 0.5."""
    a = np.array([[scale, 0, scale * (0.5 - x0) - 0.5], [0, scale, scale * (0.5 - y0) - 0.5], [0, 0, 1]])
    return (a @ h.astype(np.float64) @ np.linalg.inv(a)).astype(np.float32)


# ---- one clip -------------------------------------------------------------------------------

def read_clip(video, spec: ClipSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sample and read one clip of a shard `Video`; numpy arrays in the module's layout."""
    a = video.attrs
    idx, rate = frame_indices(int(a["num_frames"]), spec, rng)
    box = crop_box(int(a["height"]), int(a["width"]), spec, rng)
    return read_clip_at(video, spec, idx, rate, box)


def eval_views(num_stored: int, height: int, width: int, spec: ClipSpec,
               num_clips: int) -> list[tuple[np.ndarray, int, tuple[int, int, int]]]:
    """Deterministic test views (VideoMAE multi-view testing, one spatial crop): `num_clips`
    temporal windows spread evenly over the video, each the centre square of the full short
    side (offsets on the cell grid). Returns [(frame indices (T,), stride, (x0, y0, side))]."""
    rate = max(1, min(spec.sampling_rate, (num_stored - 1) // max(spec.num_frames - 1, 1)))
    span = (spec.num_frames - 1) * rate + 1
    starts = np.linspace(0, max(num_stored - span, 0), num_clips).round().astype(int)
    side = (min(height, width) // CELL) * CELL
    box = ((width - side) // 2 // CELL * CELL, (height - side) // 2 // CELL * CELL, side)
    return [(np.minimum(t0 + rate * np.arange(spec.num_frames), num_stored - 1), rate, box) for t0 in starts]


def read_clip_at(video, spec: ClipSpec, idx: np.ndarray, rate: int,
                 box: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Read the clip of stored frames `idx` (T,) (stride `rate`) cropped to `box` = (x0, y0, side)."""
    return read_clips_at(video, spec, idx, rate, [box])[0]


def read_clips_at(video, spec: ClipSpec, idx: np.ndarray, rate: int,
                  boxes: list[tuple[int, int, int]]) -> list[dict[str, np.ndarray]]:
    """The clips of stored frames `idx` (T,), one per crop box (repeated augmentation): frames,
    motion vectors and the flow between clip frames are read, decoded and chained once, then
    cropped per box; HOG and trajectories are computed per box, only on the cells it keeps
    (`clip_hog`, `clip_trajectories`: shard schema 3 derives both when read)."""
    S, cells = spec.input_size, spec.input_size // CELL
    uniq, inv = np.unique(idx, return_inverse=True)
    # clip frames are distinct unless a short video repeats its last one: then no copy by `inv`
    distinct = len(uniq) == len(idx)

    def at_clip_frames(name: str) -> np.ndarray:
        return video[name][uniq] if distinct else video[name][uniq][inv]

    need = spec.needs
    tracks = need & {"traj", "traj_valid", TRAJ_HOG}
    traj_len = clip_traj_len(video, spec) if tracks else 0
    gray: dict[int, np.ndarray] = {}
    if spec.assemble == "device":
        stored, gray = device_frames(video, spec, idx, uniq, inv, distinct, traj_len)
    elif tracks and hasattr(video, "frames_and_gray") and video.specs["hog"].derived:
        # the frames the trajectories visit besides the clip's own, read with them, in grey
        # (a schema-2 set stores its hog: no frames to add)
        n_stored = int(video.attrs["num_frames"])
        visited = np.unique(np.minimum(idx[::spec.tubelet, None] + np.arange(traj_len), n_stored - 1))
        extra = np.setdiff1d(visited, uniq)
        rgb, grey = video.frames_and_gray(uniq, extra)
        gray = dict(zip(extra.tolist(), grey))
        full = rgb if distinct else rgb[inv]
    else:
        full = at_clip_frames("frames")                                                  # (T,H,W,3)
    if (tracks or "hog" in need) and spec.assemble != "device":
        # the clip's frames, already decoded: their luma (for HOG) costs one colour conversion
        first = np.unique(inv, return_index=True)[1]  # one clip position per stored frame
        gray.update({int(t): cv2.cvtColor(full[k], cv2.COLOR_RGB2GRAY) for t, k in zip(uniq.tolist(), first)})
    if spec.assemble != "device":
        stored = {"frames": full}
    if need & {"mv", "mv_valid"}:
        stored["mv"], stored["mv_valid"] = at_clip_frames("mv"), at_clip_frames("mv_valid")
    if need & {"flow", "homography"}:
        stored["flow"], stored["homography"] = stored_pair_flow(video, idx)
    clips = []
    for x0, y0, side in boxes:
        scale = S / side
        if JPEG in stored:  # assembled on the training device (train/clips/assemble.py)
            out = {JPEG: stored[JPEG], JPEG_LEN: stored[JPEG_LEN], CROP: np.array([x0, y0, side], np.int64),
                   FLIP: np.bool_(False), FRAME_STEP: np.int64(rate)}   # hflip sets FLIP
        else:  # "uint8": normalized on the training device (train/clips/assemble.py)
            levels = crop_resize_levels(stored["frames"], x0, y0, side, S)
            out = {VIDEO_U8: levels} if spec.assemble == "uint8" else {VIDEO: normalize(levels)}
            out[FRAME_STEP] = np.int64(rate)
        if "mv" in stored:
            out["mv"] = resample_cells(stored["mv"], x0, y0, side, cells) * np.float32(scale)
            out["mv_valid"] = resample_cells(stored["mv_valid"], x0, y0, side, cells)
        if "hog" in need:
            out["hog"] = clip_hog(video, uniq, gray, x0, y0, side, cells)[inv]
        if "flow" in stored:
            out["flow"] = resample_cells(stored["flow"], x0, y0, side, cells) * np.float32(scale)
            out["homography"] = crop_homography(stored["homography"], x0, y0, scale)
        if tracks:
            deferred = stored.get("hog_frames")  # the device samples the HOG (assemble "device")
            out.update(clip_trajectories(video, idx[::spec.tubelet], x0, y0, side, cells, scale, gray, traj_len,
                                         deferred))
            if deferred is not None:
                out[HOG_JPEG], out[HOG_JPEG_LEN] = stored[HOG_JPEG], stored[HOG_JPEG_LEN]
        clips.append(out)
    return clips


def crop_resize_levels(stored: np.ndarray, x0: int, y0: int, side: int, S: int) -> np.ndarray:
    """(T,H,W,3) uint8 stored frames -> the box resized to S: (T,S,S,3) uint8."""
    frames = np.empty((len(stored), S, S) + stored.shape[3:], stored.dtype)               # (T,S,S,3)
    for f, dst in zip(stored, frames):  # resized in place: no stacked copy of the clip
        made = cv2.resize(f[y0:y0 + side, x0:x0 + side], (S, S), dst=dst, interpolation=RESIZE)
        if not np.shares_memory(made, frames):  # OpenCV allocated its own output after all
            dst[...] = made
    return frames


def device_frames(video, spec: ClipSpec, idx: np.ndarray, uniq: np.ndarray, inv: np.ndarray, distinct: bool,
                  traj_len: int) -> tuple[dict, dict[int, np.ndarray]]:
    """`assemble = "device"`: the clip frames' stored JPEG rows (T, N) and their lengths, to be
    decoded where the model runs; for MME's trajectories, the rows of the frames they visit
    (their HOG is computed on the device too, train/clips/assemble.py); for the `hog` target, (frame ->
    luma) of the clip's frames, decoded grey here. One read of the union of those frames."""
    grey_for = uniq if "hog" in spec.needs else np.zeros(0, np.intp)
    visited = np.zeros(0, np.intp)
    if spec.needs & {"traj", "traj_valid", TRAJ_HOG} and video.specs["hog"].derived:
        n_stored = int(video.attrs["num_frames"])
        visited = np.unique(np.minimum(idx[::spec.tubelet, None] + np.arange(traj_len), n_stored - 1))
    want = np.union1d(np.union1d(uniq, grey_for), visited)
    rows = video.jpeg_rows(want)
    jpeg = rows[np.searchsorted(want, uniq)]
    jpeg = jpeg if distinct else jpeg[inv]
    out = {JPEG: jpeg, JPEG_LEN: jpeg_lengths(jpeg)}
    if len(visited):  # the HOG along the trajectories is computed on the device too
        hog_rows = rows[np.searchsorted(want, visited)]
        out.update({HOG_JPEG: hog_rows, HOG_JPEG_LEN: jpeg_lengths(hog_rows), "hog_frames": visited})
    gray: dict[int, np.ndarray] = {}
    if len(grey_for):
        try:
            grey = decode_gray(rows[np.searchsorted(want, grey_for)])
        except ValueError as e:
            raise ValueError(f"{video.where}: video {video.id!r} array 'frames': {e}") from e
        gray = dict(zip(grey_for.tolist(), grey))
    return out, gray


def stored_pair_flow(video, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-inclusive flow (T-1,Hc,Wc,2) on the stored cell grid and homographies (T-1,3,3)
    between consecutive clip frames `idx` (train/clips/pair_flow.py); not yet cropped."""
    lo, hi = int(idx[0]), int(idx[-1])
    homs = video["homography"][lo:hi]                                                # one read of each array
    flow = camera_inclusive_cells(video["flow"][lo:hi], homs, int(video.attrs["flow_stride"]))  # (hi-lo,Hc,Wc,2)
    return chain_pairs(flow, homs, idx - lo)


def clip_hog(video, frames: np.ndarray, gray: dict[int, np.ndarray], x0: int, y0: int, side: int,
             cells: int) -> np.ndarray:
    """(len(frames), cells, cells, 9) HOG of the crop's cells, resampled like every grid; only
    the cells `resample_cells` picks are computed, from the luma in `gray` (frame -> (H, W))."""
    src = ((np.arange(cells) + 0.5) * (side // CELL) / cells).astype(int)
    rows, cols = y0 // CELL + src, x0 // CELL + src
    box_r, box_c = (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)
    if not hasattr(video, "hog_box"):  # an in-memory stand-in
        return resample_cells(video["hog"][frames], x0, y0, side, cells)
    hog = video.hog_box(frames, box_r, box_c, [gray[int(t)] for t in frames])
    return hog[:, rows - box_r[0]][:, :, cols - box_c[0]]


def clip_trajectories(video, starts: np.ndarray, x0: int, y0: int, side: int, cells: int, scale: float,
                      gray: dict[int, np.ndarray] | None = None, traj_len: int = 0,
                      device_hog: np.ndarray | None = None) -> dict:
    """Trajectories (steps, validity, HOG along them) of the points starting at `starts`.

    Only what the clip uses is computed: the points of the crop's cells that `resample_cells`
    picks, each once (`Video.tracks` on those cells only, one vectorized pass for all starts; a
    crop smaller than the input repeats cells: copied at the end) and the HOG of
    the frames they visit on the cells they visit (`Video.hog_box`), since shard schema 3
    derives both when read. `gray`: frame index -> (H, W) luma the caller already has (the
    clip's own frames: their HOG then needs no second read and decode). `traj_len`: steps per
    trajectory, resolved by the caller (`clip_traj_len`). `device_hog`: the stored frames (sorted)
    whose JPEG rows travel to the device (assemble "device"): then the HOG is not computed
    here; what the device needs to compute and sample it comes instead (train/clips/assemble.py:
    the box of cells, the positions in it and the frame of each step).
    """
    if traj_len < 1:
        raise ValueError(f"clip_trajectories needs traj_len >= 1 (clip_traj_len resolves it), got {traj_len}")
    n_stored = int(video.attrs["num_frames"])
    hc, wc = int(video.attrs["height"]) // CELL, int(video.attrs["width"]) // CELL
    src = ((np.arange(cells) + 0.5) * (side // CELL) / cells).astype(int)   # resample_cells' pick
    picked, spread = np.unique(src, return_inverse=True)
    ustarts, inv = np.unique(starts, return_inverse=True)
    traj, valid, pos = video.tracks(ustarts, traj_len=traj_len,                  # (S,r,r,L,2) (S,r,r,L) (S,r,r,L+1,2)
                                    cells=(y0 // CELL + picked, x0 // CELL + picked))
    # Frame of step l of start s: s + l (the last frame when a short video ends first).
    frame_of = np.minimum(ustarts[:, None] + np.arange(traj_len), n_stored - 1)   # (S, L)
    frames = np.unique(frame_of)
    # Cell-grid coordinates of the positions, and the box of cells their bilinear lookups read.
    grid = (pos[..., :traj_len, :].astype(np.float64) - (CELL - 1) / 2) / CELL     # (S,r,c,L,2)
    # (per coordinate: a strided reduction over the other axes is ~30x slower than one per plane)
    lo = np.floor(np.maximum([grid[..., 0].min(), grid[..., 1].min()], 0)).astype(int)
    hi = np.minimum(np.floor([grid[..., 0].max(), grid[..., 1].max()]).astype(int) + 2, (wc, hc))
    lo = np.minimum(lo, hi - 1)
    hog_r, hog_c = (int(lo[1]), int(hi[1])), (int(lo[0]), int(hi[0]))
    box_grid = grid - np.array([hog_c[0], hog_r[0]], np.float64)
    spread_out = len(picked) < cells or not np.array_equal(inv, np.arange(len(starts)))
    if device_hog is not None:
        at, frame = box_grid.astype(np.float32), np.searchsorted(device_hog, frame_of)   # (S,r,c,L,2), (S,L)
        if spread_out:
            traj, valid, at = (a[inv][:, spread][:, :, spread] for a in (traj, valid, at))
            frame = frame[inv]
        return {"traj": traj * np.float32(scale), "traj_valid": valid.copy(), HOG_AT: at, HOG_FRAME: frame,
                HOG_BOX: np.array([hog_r[0], hog_r[1], hog_c[0], hog_c[1]], np.int64)}
    known = gray or {}
    have = np.array([f in known for f in frames.tolist()], bool)
    hog = np.empty((len(frames), hog_r[1] - hog_r[0], hog_c[1] - hog_c[0], HOG_BINS), np.float32)
    if have.any():
        hog[have] = video.hog_box(frames[have], hog_r, hog_c, [known[f] for f in frames[have].tolist()])
    if (~have).any():
        hog[~have] = video.hog_box(frames[~have], hog_r, hog_c)
    seen = reached(valid)
    traj_hog = np.zeros(valid.shape + (HOG_BINS,), np.float32)
    for l in range(traj_len):
        k = np.searchsorted(frames, frame_of[:, l])
        sample = bilinear_sample(hog, k, box_grid[..., l, :], np.float32)
        np.copyto(traj_hog[..., l, :], sample, where=seen[..., l, None])
    if spread_out:
        # repeated cells (a crop smaller than the input), or starts (a short video's last frame)
        traj, valid, traj_hog = (a[inv][:, spread][:, :, spread] for a in (traj, valid, traj_hog))
    # (`valid` copied: Video.tracks keeps its result for the next call)
    return {"traj": traj * np.float32(scale), "traj_valid": valid.copy(), TRAJ_HOG: traj_hog}


# ---- augmentation ---------------------------------------------------------------------------

def hflip(clip: dict[str, np.ndarray], width: int | None = None) -> dict[str, np.ndarray]:
    """Mirror a clip left-right, keeping every motion quantity consistent.

    Grids are mirrored along their width axis, x displacements negated, homographies
    conjugated by the mirror x -> W-1-x, and HOG bins mirrored: an orientation a becomes
    180 - a, so bin [20b, 20b+20) becomes bin 8 - b (the bin order reversed).
    """
    out = dict(clip)
    if width is None:
        width = clip[VIDEO].shape[-1] if VIDEO in clip else clip[VIDEO_U8].shape[-2]
    neg_x = np.array([-1, 1], np.float32)
    for key in ("mv", "flow", "traj"):
        if key in clip:
            out[key] = clip[key][:, :, ::-1] * neg_x
    for key in ("mv_valid", "traj_valid"):
        if key in clip:
            out[key] = clip[key][:, :, ::-1]
    for key in ("hog", TRAJ_HOG):
        if key in clip:
            out[key] = clip[key][:, :, ::-1][..., ::-1]
    if HOG_AT in clip:  # positions in the unflipped frames: the layout flips; the device mirrors the bins
        out[HOG_AT] = clip[HOG_AT][:, :, ::-1]
    if "homography" in clip:
        m = np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], np.float32)
        out["homography"] = m @ clip["homography"] @ m
    if VIDEO in clip:
        out[VIDEO] = clip[VIDEO][..., ::-1]
    elif VIDEO_U8 in clip:  # (T,S,S,3) levels
        out[VIDEO_U8] = clip[VIDEO_U8][:, :, ::-1]
    else:  # assembled on the device, which flips the frames (train/clips/assemble.py)
        out[FLIP] = np.bool_(True)
    return out


# ---- dataset and loader ---------------------------------------------------------------------

OPEN_VIDEOS = 1024  # videos a loader worker keeps open (ClipDataset._video)
MAX_SUBSTITUTES = 16  # unreadable videos in a row before a sample gives up: the set is broken


class ShardSetChanged(RuntimeError):
    """A video listed at start is gone: the set was re-extracted under the run (never skipped)."""


class ClipDataset(Dataset):
    """Items are (g, video index) pairs from `ClipSampler`; returns a dict of tensors."""

    def __init__(self, shards, spec: ClipSpec, seed: int = 0, split: str = "", skip_damaged: bool = False):
        self.shards, self.seed = ShardRef.of(shards), seed  # a path, or a ShardRef (a --frames none set's videos moved)
        self.path = self.shards.path
        # serve the next readable video when one fails to read; items then carry what was
        # skipped (train/pretraining/skips.py records it and enforces the limit)
        self.skip_damaged = skip_damaged
        self._damaged: dict[str, str] = {}  # this worker's unreadable videos -> reason
        ds = open_shards(self.shards)
        # from the corpus index (one read), not each video's attrs (240k reads on K400)
        self.ids = ds.ids(split) if split else ds.ids()
        if not self.ids:
            raise ValueError(f"{self.path}: no videos" + (f" with split {split!r}" if split else ""))
        first = ds[self.ids[0]]
        if spec.assemble == "device" and not first.stores_jpeg():
            raise ValueError(f"{self.path}: assemble 'device' decodes the stored JPEG frames on the device, and this "
                             f"set keeps no frames (extracted with --frames none: its clips are decoded from the "
                             f"source videos in the loader). Train it with assemble 'loader'.")
        if "traj_len" in first.attrs:  # resolved once, here: every clip of the run tracks this many steps
            spec = replace(spec, traj_len=clip_traj_len(first, spec))
        self.spec, self.traj_len = spec, spec.traj_len
        # "loader" reads the levels too and normalizes after the flip (`_clip`): a mirrored copy of
        # the uint8 levels, not of the 4x larger float clip (the same values: the flip commutes with it)
        self._read_spec = replace(spec, assemble="uint8") if spec.assemble == "loader" else spec
        self.hog_bins = HOG_BINS
        ds.close()
        self._ds = None  # opened per worker process
        self._videos: OrderedDict = OrderedDict()  # the most recently read OPEN_VIDEOS

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        g, index = item
        if self._ds is None:
            self._ds = open_shards(self.shards)
        if not self.skip_damaged:
            return self._clip(g, index, np.random.default_rng([self.seed, g]))
        skipped = []
        for k in range(min(len(self.ids), MAX_SUBSTITUTES + 1)):
            vid = self.ids[(index + k) % len(self.ids)]
            if vid not in self._damaged:
                try:  # substitute k > 0 draws from its own generator: still one clip per (g, k)
                    clip = self._clip(g, (index + k) % len(self.ids),
                                      np.random.default_rng([self.seed, g] + ([k] if k else [])))
                    return with_keys(clip, {SKIPPED: json.dumps(skipped)})
                except ShardSetChanged:
                    raise
                except READ_ERRORS as err:
                    self._damaged[vid] = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            skipped.append({"video": vid, "reason": self._damaged[vid]})
        raise RuntimeError(f"{self.path}: {len(skipped)} videos in a row failed to read "
                           f"(first: {skipped[0]['video']}: {skipped[0]['reason']})")

    def _clip(self, g: int, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor] | list:
        video = self._video(self.ids[index])
        a = video.attrs
        idx, rate = frame_indices(int(a["num_frames"]), self.spec, rng)
        # Repeated augmentation as MGMAE's loader (VideoMAE v2 `num_sample`): one temporal
        # window, `repeated_aug` spatial crops (and flips) of it, read once (read_clips_at).
        boxes, flips = [], []
        for _ in range(self.spec.repeated_aug):  # the draws in the order of one clip at a time
            boxes.append(crop_box(int(a["height"]), int(a["width"]), self.spec, rng))
            flips.append(self.spec.flip and rng.random() < 0.5)
        clips = []
        for clip, flip in zip(read_clips_at(video, self._read_spec, idx, rate, boxes), flips):
            clip = hflip(clip, self.spec.input_size) if flip else clip
            if self.spec.assemble == "loader":
                clip = dict(clip)
                clip[VIDEO] = normalize(clip.pop(VIDEO_U8))
            clips.append({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in clip.items()})
        return clips[0] if self.spec.repeated_aug == 1 else clips

    def _video(self, video_id: str):
        """Kept open per worker: opening reads the video's metadata (~10 ms on zarr, one or
        more requests on an object store). At most OPEN_VIDEOS stay open (least recently
        read go first): each holds ~40 kB, so keeping all of K400 would cost a worker ~10 GB."""
        if video_id in self._videos:
            self._videos.move_to_end(video_id)
        else:
            while len(self._videos) >= OPEN_VIDEOS:
                self._videos.popitem(last=False)
            try:
                self._videos[video_id] = self._ds[video_id]
            except KeyError as e:  # listed when the dataset was built, gone now
                raise ShardSetChanged(f"{self.path} changed under the loader: video {video_id!r} was committed when "
                                   f"training started and is not now ({e.args[0]}). Was the set re-extracted "
                                   f"(--overwrite) or edited during the run? Restart on a stable shard set.") from e
        return self._videos[video_id]

    def __getstate__(self):
        return {**self.__dict__, "_ds": None, "_videos": OrderedDict()}


def with_keys(clip: dict | list[dict], extra: dict) -> dict | list[dict]:
    """A sample (one clip, or a video's clips under repeated augmentation) with `extra` in each clip."""
    return [{**c, **extra} for c in clip] if isinstance(clip, list) else {**clip, **extra}


class ClipSampler(Sampler):
    """Endless, resumable stream of (g, video index) for one rank.

    This rank's n-th sample is global sample g = (start + n) * world + rank; g // len(videos)
    is its epoch, whose order is a permutation seeded by (seed, epoch). Resuming at step k
    means start = k * batch_size.
    """

    def __init__(self, num_videos: int, seed: int = 0, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = num_videos, seed, start, rank, world

    def __iter__(self):
        q, epoch, perm = self.start, -1, None
        while True:
            g = q * self.world + self.rank
            if g // self.n != epoch:
                epoch = g // self.n
                perm = np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)
            yield g, int(perm[g % self.n])
            q += 1


def seed_worker(worker_id: int) -> None:
    # clips draw from per-sample generators; this only pins library-level RNGs (cv2, torch)
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    cv2.setRNGSeed(seed % 2 ** 31)
    cv2.setNumThreads(1)


def quiet_opencv_pool() -> None:
    """Stop OpenCV's pool threads (they start again at its next parallel call). Run before every
    fork of a process that imported this module: a loader worker forked while the pool was
    running (any earlier cv2 call that used it, e.g. a resize or LUT in the training process)
    inherited it without its threads, and `seed_worker`'s cv2.setNumThreads(1) then waited for
    them forever (tests/train/clips/test_assemble.py)."""
    n = cv2.getNumThreads()
    cv2.setNumThreads(1)
    cv2.setNumThreads(n)


os.register_at_fork(before=quiet_opencv_pool)


def collate_clips(items: list, repeats: int = 1) -> dict[str, torch.Tensor]:
    """A batch of clips. Repeated augmentation (repeats > 1): every item is a list of clips of
    one video -> one flat batch, the clips of a video next to each other. JPEG rows (assemble
    "device") are zero-padded to the batch's longest."""
    clips = [clip for clips in items for clip in clips] if repeats > 1 else items
    for rows, lengths in ((JPEG, JPEG_LEN), (HOG_JPEG, HOG_JPEG_LEN)):
        if not clips or rows not in clips[0]:
            continue
        # to the longest row, and (the frames trajectories visit: fewer in a short video) the most rows
        f, n = max(len(c[rows]) for c in clips), max(c[rows].shape[1] for c in clips)
        pad = torch.nn.functional.pad
        clips = [{**c, rows: pad(c[rows], (0, n - c[rows].shape[1], 0, f - len(c[rows]))),
                  lengths: pad(c[lengths], (0, f - len(c[lengths])))} for c in clips]
    return default_collate(clips)


@dataclass(frozen=True)
class MaskCollate:
    """Collate a batch and make its masks (`batch["mask"]`, (B,N) bool) in the loader's worker.

    One generator per batch, `batch_generator(seed, g)` with g the batch's first global sample
    number, so the masks depend on the run's seed and the step alone (not on the worker, the
    number of workers or a resume). Batched: a mask call per batch costs MGM 1.4 and MGMAE 1.2
    ms a 16x224 clip on one core, against 4.4 and 7.7 called clip by clip."""
    mask: str
    grid: tuple[int, int, int]
    ratio: float
    seed: int
    repeats: int = 1

    def __call__(self, items: list) -> dict[str, torch.Tensor]:
        batch = collate_clips(items, self.repeats)
        first = int(batch.pop(SAMPLE)[0])
        batch["mask"] = get_mask(self.mask)(batch, self.grid, self.ratio, batch_generator(self.seed, first))
        return batch


class _Tagged(Dataset):
    """The clips of `dataset`, each carrying its global sample number to the collate."""

    def __init__(self, dataset: ClipDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        return with_keys(self.dataset[item], {SAMPLE: torch.tensor(item[0])})


def make_loader(dataset: ClipDataset, batch_size: int, start_step: int = 0, seed: int = 0, rank: int = 0,
                world: int = 1, num_workers: int = 2, pin_memory: bool = False,
                masks: MaskCollate | None = None) -> DataLoader:
    """Batches of `batch_size` clips (batch_size / repeated_aug video reads); start_step
    counts batches already consumed by this rank. With `masks`, every batch also holds its
    masks (`batch["mask"]`), made in the worker that collates it."""
    repeats = getattr(dataset.spec, "repeated_aug", 1)
    if batch_size % repeats:
        raise ValueError(f"batch of {batch_size} clips is not whole videos of repeated_aug {repeats} clips")
    videos = batch_size // repeats
    sampler = ClipSampler(len(dataset), seed, start_step * videos, rank, world)
    collate = functools.partial(collate_clips, repeats=repeats)
    if masks is not None:
        dataset, collate = _Tagged(dataset), masks
    return DataLoader(dataset, batch_size=videos, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=True, worker_init_fn=seed_worker,
                      collate_fn=collate, prefetch_factor=4 if num_workers > 0 else None,
                      persistent_workers=num_workers > 0)


class Timer:
    """Wall time between marks: data_time = waiting for the loader, step_time = the whole step."""

    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt
