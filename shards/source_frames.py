"""The frames extraction stores, as functions of the source video: which native frames (the fps
resampling of `keep_indices`), at what size (`stored_size`), scaled how (`stored_rgb`: swscale
area scaling in the YUV -> RGB pass) and turned how (`quarter_turns`). preprocess/decode.py
imports them from here so that a reader can reproduce the stored frames from the source.
"""
from __future__ import annotations

import av
import numpy as np


# ---- pure helpers shared with extraction (preprocess/decode.py imports them) ----------------

def stored_size(source_hw: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(H, W) with the short side = short_side, the long side rounded half up; never upscales.

    320x240 at short_side=128 -> 171x128 (170.67 rounds up): rounding keeps the aspect
    ratio closest, odd sizes are fine since cells simply drop the last W % 8 columns.
    """
    hs, ws = source_hw
    if min(hs, ws) <= short_side:
        return hs, ws
    s = short_side / min(hs, ws)
    return (short_side, int(np.floor(ws * s + 0.5))) if hs <= ws else (int(np.floor(hs * s + 0.5)), short_side)


def keep_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Native frame indices nearest to the timestamps times[0] + j / fps (unique, ascending)."""
    targets = times[0] + np.arange(0.0, times[-1] - times[0] + 0.5 / fps, 1.0 / fps)
    right = np.clip(np.searchsorted(times, targets), 0, len(times) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    return np.unique(nearest)


def frame_times(pts: list[int | None], time_base, native_fps: float) -> np.ndarray:
    """Seconds of each frame as PyAV's `frame.time` gives them (float(pts) * num / den); every
    frame at n / native_fps when any timestamp is missing (what extraction resamples by)."""
    if any(p is None for p in pts):
        return np.arange(len(pts)) / native_fps
    return np.asarray(pts, np.float64) * time_base.numerator / time_base.denominator


def stored_rgb(frame: av.VideoFrame, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB at the stored size: one swscale pass, area-averaged when shrinking.

    Converting and scaling in one pass from the decoder's YUV costs 1.7 ms at 720p -> 455x256
    against 6 ms for RGB at the source size + cv2.resize(INTER_AREA) (mean difference 1.2 grey
    levels: swscale averages chroma at its own resolution; docs/benchmarks.md).
    """
    if (frame.height, frame.width) == hw:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=hw[1], height=hw[0], format="rgb24", interpolation="AREA").to_ndarray()


def quarter_turns(rotation_degrees) -> int:
    """Counterclockwise quarter turns (np.rot90's k) of a display-matrix rotation in degrees."""
    return round(int(round(rotation_degrees or 0)) / 90) % 4


# ---- decoding -------------------------------------------------------------------------------

def _open(path: str):
    try:
        container = av.open(path)
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise OSError(f"{path}: not a readable video: {getattr(e, 'strerror', None) or type(e).__name__}") from e
    stream = container.streams.video[0]
    stream.thread_type = "NONE"  # one core per loader worker, as the shards' own reads
    stream.thread_count = 1
    return container, stream


def decode_all(path: str, short_side: int) -> np.ndarray:
    """(T, H, W, 3) uint8 every native frame at the stored size, coded orientation (for benchmarks)."""
    container, stream = _open(path)
    with container:
        frames, hw = [], None
        for frame in container.decode(stream):
            hw = hw or stored_size((frame.height, frame.width), short_side)
            frames.append(stored_rgb(frame, hw))
    return np.stack(frames)
