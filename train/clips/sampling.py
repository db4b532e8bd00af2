"""Which stored frames and which crop a fine-tuning clip or a test view reads. Pure geometry, no I/O.

Two temporal samplings (T = num_frames input frames, n = stored frames of the video):

- **stride** (K400, the pretraining clips): T frames `sampling_rate` apart from a random
  start (`train.clips.dataset.frame_indices`); test views are `clips` such windows spread evenly.
- **TSN segments** (SSv2, VideoMAE's `ssv2.py`): the whole video cut into T equal segments,
  one frame from each: a random frame of its segment in training; in testing view c of
  `clips` takes frame int(tick * (k + c / clips)) of segment k (tick = n / T), so with 2
  clips the segment starts and the segment centres, as VideoMAE's 2 test clips.

Test crops: `crops` squares of the full short side, spread evenly along the long side
(VideoMAE: left / centre / right for 3; the centre for 1), offsets on the 8 px cell grid.
"""
from __future__ import annotations

import math

import numpy as np

from shards.schema import CELL

from train.clips.dataset import ClipSpec, eval_views

Box = tuple[int, int, int, int]  # (x0, y0, width, height) in stored px


def tsn_indices(num_stored: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) stored frame numbers: one random frame from each of T equal segments of the video.

    A video shorter than T frames repeats frames in order: VideoMAE reads frame 0 T times
    there (its `len(vr) // num_segment == 0` branch); an ordered spread keeps the motion."""
    seg = num_stored // num_frames
    if seg == 0:
        return (np.arange(num_frames) * num_stored // num_frames).astype(np.int64)
    return np.arange(num_frames) * seg + rng.integers(0, seg, num_frames)


def tsn_test_indices(num_stored: int, num_frames: int, view: int, clips: int) -> np.ndarray:
    """(T,) frames of test view `view` of `clips`: frame int(tick * (k + view / clips)) of segment k."""
    tick = num_stored / num_frames
    return np.minimum((tick * (np.arange(num_frames) + view / clips)).astype(np.int64), num_stored - 1)


def spatial_crops(height: int, width: int, crops: int) -> list[tuple[int, int, int]]:
    """`crops` square boxes (x0, y0, side) of the full short side, evenly along the long side."""
    side = (min(height, width) // CELL) * CELL
    slack = max(height, width) - side
    if crops == 1:
        starts = [slack // 2 // CELL * CELL]  # the centre, as train.clips.dataset.eval_views
    else:
        starts = [k * slack // (crops - 1) // CELL * CELL for k in range(crops)]
    return [(s, 0, side) if width >= height else (0, s, side) for s in starts]


def multi_views(num_stored: int, height: int, width: int, spec: ClipSpec, clips: int, crops: int = 1,
                tsn: bool = False) -> list[tuple[np.ndarray, int, tuple[int, int, int]]]:
    """clips x crops deterministic views, clip-major: [(frame indices (T,), stride, (x0, y0, side))]."""
    if tsn:
        rate = max(1, num_stored // spec.num_frames)  # the mean gap; motion keys are not read in testing
        temporal = [(tsn_test_indices(num_stored, spec.num_frames, c, clips), rate) for c in range(clips)]
    else:
        temporal = [(idx, rate) for idx, rate, _ in eval_views(num_stored, height, width, spec, clips)]
    boxes = spatial_crops(height, width, crops)
    return [(idx, rate, box) for idx, rate in temporal for box in boxes]


def random_resized_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                       rng: np.random.Generator) -> Box:
    """Inception-style crop (torchvision's RandomResizedCrop.get_params, VideoMAE's
    `random_resized_crop`): area fraction in `scale`, aspect w/h log-uniform in `ratio`,
    10 tries, then the largest centred box of an allowed aspect. Drawn from `rng` so that
    a clip depends only on its sample number (train/clips/dataset.py)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h
