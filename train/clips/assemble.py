"""A clip's frames finished on the training device (`TrainConfig.assemble`, ASSEMBLIES).

With "loader" (the default) each loader worker decodes the clip's stored JPEG frames, crops,
resizes and normalizes them (train/clips/dataset.py `read_clips_at`): ~13 ms of a core per 16x224
clip of the K400-like set, most of it JPEG decoding. A GPU that eats ~700-900 ViT-B clips/s
(docs/benchmarks.md, "The first GPU run") needs ~10 such cores per 100 clips/s.

With "uint8" the workers do the same but stop before normalizing: the clip travels as its
uint8 levels, VIDEO_U8 (T, S, S, 3), a quarter of the float32 clip's bytes through the
collate, shared memory, pinned memory and the host-to-device copy, and this module
normalizes it where the model runs (`normalize_levels`: the float32 operations the loader's
table was built with, so the result is bit-identical to "loader"'s). Any shard set,
`--frames none` included. `auto` (TrainConfig's default) is "uint8" on CUDA, "loader" elsewhere.

With "device" the workers ship the clip's JPEG bytes with its crop box and flip, and this
module does the rest where the model runs: torchvision's `decode_jpeg` (nvJPEG on CUDA, batched
over the whole batch; libjpeg-turbo on CPU), then crop, bilinear resize, flip and ImageNet
normalization in torch. Motion arrays (mv, flow, trajectories, HOG) and the masks are still
made in the workers, on the same draws: only `video` moves.

The same numbers as the loader path, up to rounding: the loader resizes uint8 with OpenCV's
INTER_LINEAR (fixed point) and normalizes the rounded levels; here the resize runs in float
(the same half-pixel bilinear, no antialiasing) and is rounded to levels before normalizing,
so the two differ by at most one grey level (tests/train/clips/test_assemble.py). On CPU torchvision
decodes with the same libjpeg-turbo as OpenCV (bit-identical); nvJPEG may differ from it by a
level or two (the IDCT), far inside what JPEG storage costs (docs/design.md, "Resizing crops").

Batch keys the workers ship (per clip): JPEG (T, N) uint8 rows zero-padded to the batch's
longest, JPEG_LEN (T,) int64 bytes of each, CROP (3,) int64 (x0, y0, side) in stored px, FLIP
() bool. `assemble` replaces them with `video` (B, 3, T, S, S) float32 on the device.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from shards.schema import CELL, HOG_BINS

from train.clips.keys import (CROP, FLIP, HOG_AT, HOG_BOX, HOG_FRAME, HOG_JPEG, HOG_JPEG_LEN, JPEG, JPEG_LEN, TRAJ_HOG,
                              VIDEO, VIDEO_U8)
from train.pretraining.targets.common import reached
from train.pretraining.targets.pixel import MEAN, STD

ASSEMBLIES = ("loader", "uint8", "device")
AUTO = "auto"  # TrainConfig's default: "uint8" when training on CUDA, else "loader" (`resolve`)
KEYS = (JPEG, JPEG_LEN, CROP, FLIP)
HOG_KEYS = (HOG_JPEG, HOG_JPEG_LEN, HOG_BOX, HOG_AT, HOG_FRAME)
SOBEL_GAIN = 8.0  # the 3x3 Sobel's response to a unit ramp: magnitudes / 8 are grey levels per pixel
# (3, 256) float32: the ImageNet-normalized value of every uint8 level per channel: the loader's
# table (cv2.LUT); `normalize_levels` computes the same values in torch
NORM_LUT = ((np.arange(256, dtype=np.float32)[None] / 255 - np.float32(MEAN)[:, None])
            / np.float32(STD)[:, None]).astype(np.float32)


def normalize(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(T,S,S,3) uint8 RGB -> (3,T,S,S) float32, ImageNet-normalized with NORM_LUT (into `out`)."""
    n, height, width, _ = frames.shape
    out = np.empty((3, n, height, width), np.float32) if out is None else out
    if out.size == 0:
        return out
    # cv2.split + cv2.LUT per channel plane (a table lookup straight into channel-first layout is
    # ~10x cheaper than float arithmetic plus a transpose; 5x faster than np.take on the strided
    # channel view: 21 -> 4 ms for 16x224x224 on the busy machine)
    planes = cv2.split(np.ascontiguousarray(frames).reshape(n * height, width, 3))
    for c in range(3):
        cv2.LUT(planes[c], NORM_LUT[c], dst=out[c].reshape(n * height, width))
    return out


def normalize_levels(levels: torch.Tensor) -> torch.Tensor:
    """(..., T, S, S, 3) uint8 RGB levels -> (..., 3, T, S, S) float32 ImageNet-normalized on the
    levels' device, in torch: (level / 255 - mean) / std, three correctly rounded float32 operations
    with tensor operands, as NORM_LUT's entries were computed: on CPU bit-identical to the loader's
    `normalize` (tested), on CUDA too where its division is IEEE (nvcc's default). Torch, not
    OpenCV, so that it runs on the batch's device (on CPU, a cv2 call here once hung the loader
    workers forked after it: `train.clips.dataset.quiet_opencv_pool` now guards every fork)."""
    *lead, T, H, W, _ = levels.shape
    out = torch.empty(*lead, 3, T, H, W, dtype=torch.float32, device=levels.device)
    out.copy_(levels.movedim(-1, -4))
    dev = levels.device
    mean = torch.tensor(MEAN, dtype=torch.float32, device=dev).view(3, 1, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=dev).view(3, 1, 1, 1)
    return out.div_(torch.tensor(255.0, device=dev).expand(1)).sub_(mean).div_(std)


def resolve(assemble: str, device: torch.device) -> str:
    """The assembly a run uses: AUTO is "uint8" on a CUDA device (a quarter of the bytes through
    the loader's collate, shared and pinned memory and the copy to the GPU, which normalizes in
    microseconds) and "loader" elsewhere (on a CPU the normalize would move into the training
    process and cost it what it saves the workers); any other name as given."""
    if assemble == AUTO:
        return "uint8" if torch.device(device).type == "cuda" else "loader"
    if assemble not in ASSEMBLIES:
        raise ValueError(f"unknown assemble {assemble!r}; known: {AUTO}, {', '.join(ASSEMBLIES)}")
    return assemble


def jpeg_lengths(rows) -> np.ndarray:
    """Bytes of each zero-padded JPEG row (n, N): up to its last non-zero byte (a JPEG ends
    with the marker FF D9, so trailing zeros are padding)."""
    rows = np.asarray(rows)
    if rows.shape[1] == 0:
        return np.zeros(len(rows), np.int64)
    nonzero = rows[:, ::-1] != 0
    return np.where(nonzero.any(1), rows.shape[1] - np.argmax(nonzero, axis=1), 0).astype(np.int64)


def decode(jpeg: torch.Tensor, lengths: torch.Tensor, device: torch.device, gray: bool = False) -> list:
    """(B, T, N) padded rows -> B*T (3, H, W) uint8 RGB on `device` (or (1, H, W) luma with
    `gray`: JPEG's Y plane, as the loader's HOG reads it), one batched decode; rows of length 0
    (padding) give None.

    torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec's, which our
    pinned set does not carry; the warning is silenced here and the call kept until it does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

    B, T, _ = jpeg.shape
    n = lengths.reshape(-1).tolist()
    rows = jpeg.reshape(B * T, -1)
    keep = [i for i in range(B * T) if n[i] > 0]
    data = [rows[i, :n[i]] for i in keep]  # contiguous views of the (pinned) batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = decode_jpeg(data, mode=ImageReadMode.GRAY if gray else ImageReadMode.RGB, device=device) if data else []
    got = got if isinstance(got, list) else [got]
    out = [None] * (B * T)
    for i, img in zip(keep, got):
        out[i] = img
    return out


def clip_video(frames: list[torch.Tensor], crop: tuple[int, int, int], flip: bool, size: int) -> torch.Tensor:
    """T decoded (3, H, W) uint8 frames -> (3, T, S, S) float32 normalized: crop, bilinear resize
    (half-pixel centres, no antialiasing: OpenCV's INTER_LINEAR), rounded to levels, flipped."""
    x0, y0, side = crop
    clip = torch.stack(frames)[:, :, y0:y0 + side, x0:x0 + side].float()            # (T,3,side,side)
    if side != size:
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        clip = clip.round_().clamp_(0, 255)
    if flip:
        clip = clip.flip(-1)
    return normalize_levels(clip.to(torch.uint8).permute(0, 2, 3, 1))          # (3,T,S,S)


def cell_hog_box(gray: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(F, 1, H, W) uint8 luma -> (F, r1 - r0, c1 - c0, 9) float32: `shards.derived.cell_hog_box`
    in torch (the same 3x3 Sobel with the frame's replicated border, magnitudes in grey levels
    per pixel, unsigned 20-degree bins, the mean per pixel of each 8x8 cell). The angle is
    exact here where OpenCV's cartToPolar is within ~0.3 deg: a pixel on a bin's edge may
    change bins (tests/train/clips/test_assemble.py measures the difference)."""
    r0, r1, c0, c1 = box
    y0, y1, x0, x1 = CELL * r0, CELL * r1, CELL * c0, CELL * c1
    # the frame with a one-pixel replicated border: the box and its margin in padded coordinates
    cut = F.pad(gray.float(), (1, 1, 1, 1), mode="replicate")[:, 0, y0:y1 + 2, x0:x1 + 2]
    # the separable 3x3 Sobel as shifted differences (a 1-channel conv2d is ~20x slower on CPU)
    dx = cut[:, :, 2:] - cut[:, :, :-2]                                                   # (F,bh+2,bw)
    dy = cut[:, 2:] - cut[:, :-2]                                                         # (F,bh,bw+2)
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]                                 # (F,bh,bw)
    mag = torch.sqrt(gx * gx + gy * gy)
    ang = torch.rad2deg(torch.atan2(gy, gx))
    ang = torch.where(ang < 0, ang + 360.0, ang)
    bins = (ang / 20.0).long().clamp_(0, 2 * HOG_BINS - 1) % HOG_BINS                     # (F,bh,bw)
    f, bh, bw = mag.shape
    hc, wc = bh // CELL, bw // CELL
    # one scatter-add over (frame, cell, bin) labels weighted by the magnitudes (as the reader's bincount)
    rows = torch.arange(bh, device=gray.device) // CELL
    cols = torch.arange(bw, device=gray.device) // CELL
    cell = (rows[:, None] * wc + cols[None, :]) * HOG_BINS                               # (bh,bw)
    labels = bins + cell + (torch.arange(f, device=gray.device) * (hc * wc * HOG_BINS))[:, None, None]
    hist = torch.zeros(f * hc * wc * HOG_BINS, device=gray.device).scatter_add_(0, labels.reshape(-1), mag.reshape(-1))
    return hist.reshape(f, hc, wc, HOG_BINS) / (SOBEL_GAIN * CELL * CELL)


def sample_along(hog: torch.Tensor, frame: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """`shards.tracks.bilinear_sample` in torch: hog (F, h, w, 9) at frame (S, L) and points at
    (S, r, c, L, 2) (x, y in cells of the box), clamped to the border -> (S, r, c, L, 9)."""
    n, h, w, c = hog.shape
    x, y = at[..., 0].clamp(0, w - 1), at[..., 1].clamp(0, h - 1)
    x0, y0 = x.long().clamp(max=max(w - 2, 0)), y.long().clamp(max=max(h - 2, 0))
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    dx, dy = (1 if w > 1 else 0), (w if h > 1 else 0)
    i00 = frame[:, None, None, :] * (h * w) + y0 * w + x0
    flat = hog.reshape(-1, c)
    v00, v01, v10, v11 = (flat[i00 + o] for o in (0, dx, dy, dy + dx))
    return (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy


def traj_hog(batch: dict, device: torch.device) -> torch.Tensor:
    """MME's HOG along the trajectories (B, t, r, c, L, 9), as `train.clips.dataset.clip_trajectories`
    computes it in the loader: each clip's visited frames decoded grey, their HOG on the box of
    cells the tracks read, sampled bilinearly at each step's position, 0 where the point had
    left the frame (`shards.tracks.reached`), the bins mirrored in a flipped clip."""
    rows, lengths = batch[HOG_JPEG], batch[HOG_JPEG_LEN]
    B, Fmax = rows.shape[:2]
    frames = decode(rows, lengths, device, gray=True)
    seen = reached(batch["traj_valid"].to(device))
    out = []
    for b in range(B):
        gray = torch.stack([f for f in frames[b * Fmax:(b + 1) * Fmax] if f is not None])
        hog = cell_hog_box(gray, tuple(batch[HOG_BOX][b].tolist()))
        made = sample_along(hog, batch[HOG_FRAME][b].to(device), batch[HOG_AT][b].to(device))
        made = made * seen[b, ..., None]
        out.append(made.flip(-1) if bool(batch[FLIP][b]) else made)
    return torch.stack(out)


def assemble(batch: dict, size: int, device: torch.device) -> dict:
    """The batch with its JPEG keys (assemble "device") or its levels (VIDEO_U8, "uint8")
    replaced by `video` (B, 3, T, S, S) on `device`; a batch the loader assembled already
    passes through unchanged."""
    if VIDEO_U8 in batch:
        batch = dict(batch)
        batch[VIDEO] = normalize_levels(batch.pop(VIDEO_U8).to(device, non_blocking=True))
        return batch
    if JPEG not in batch:
        return batch
    batch = dict(batch)
    if HOG_JPEG in batch:
        batch[TRAJ_HOG] = traj_hog(batch, device)
        for k in HOG_KEYS:
            batch.pop(k)
    jpeg, lengths, crops, flips = (batch.pop(k) for k in KEYS)
    B, T = jpeg.shape[:2]
    frames = decode(jpeg, lengths, device)
    crops, flips = crops.tolist(), flips.reshape(-1).tolist()
    batch[VIDEO] = torch.stack([clip_video(frames[b * T:(b + 1) * T], crops[b], bool(flips[b]), size)
                                  for b in range(B)])
    return batch
