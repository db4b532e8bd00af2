"""One video -> the arrays and attrs of the shard schema, composing the stages window by window.

The video is decoded in windows of `WINDOW_FRAMES` frames (`FrameStream`); each window
goes through the list of `window_stages` (pure: arrays in, arrays out, with the little
state that crosses a window boundary: the flow's previous frame) and its arrays go to a `Sink` (the shard writer) before the next
window is decoded, so memory does not grow with the video's length. Dropping a computed
array is deleting its stage from the list. Every stage runs under `stage(name)`, so
whatever goes wrong inside it becomes an ExtractionError naming that stage: a failure
record, not a crashed run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import cv2
import numpy as np

from preprocess.config import ExtractConfig
from preprocess.decode import FrameStream
from preprocess.errors import ExtractionError, storage_fault
from preprocess.flow import FlowConfig, WarpedFlow, downsample_frame


@contextmanager
def stage(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Time a stage and turn any error inside it into an ExtractionError for that stage."""
    start = time.perf_counter()
    try:
        yield
    except ExtractionError:
        raise
    except (cv2.error, ValueError, RuntimeError, IndexError, TypeError, ZeroDivisionError,
            MemoryError, OSError) as err:
        if storage_fault(err) is not None:  # a full or read-only disk: the run stops, not the video
            raise
        raise ExtractionError(name, f"{type(err).__name__}: {err}") from err
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def flow_config(cfg: ExtractConfig) -> FlowConfig:
    return FlowConfig(method=cfg.flow_method, dis_preset=cfg.dis_preset, patch_stride=cfg.dis_patch_stride,
                      features=cfg.features, compensation=cfg.compensation)


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB uint8 -> (T, H, W) uint8 luma."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]) if len(frames) else \
        np.zeros(frames.shape[:3], np.uint8)


# Frames decoded and computed together. Memory holds one window of frames and of
# full-resolution compensated flow (~30 MB at 456x256), whatever the video's length.
WINDOW_FRAMES = 32


@dataclass
class Window:
    """Frames start .. start + n - 1 of a video and what earlier stages derived.

    frames (n, H, W, 3) uint8 RGB, gray (n, H, W) uint8, mv (n, Hc, Wc, 2) float32,
    mv_valid (n, Hc, Wc) bool; last: no frame follows. Stages may leave data for the later
    stages of the same window in `shared`."""

    start: int
    frames: np.ndarray
    gray: np.ndarray
    mv: np.ndarray
    mv_valid: np.ndarray
    last: bool
    shared: dict = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + len(self.frames)


class Sink(Protocol):
    """Where a video's arrays go as they are computed (shards.video_writer.VideoWriter, or
    `Collect` in memory). `start` gets the shape attrs before the first `append`."""

    def start(self, attrs: dict) -> None: ...

    def append(self, name: str, rows: np.ndarray) -> None: ...


def decoded_arrays(win: Window) -> dict[str, np.ndarray]:
    """frames, mv and mv_valid as decoded."""
    return {"frames": win.frames, "mv": win.mv, "mv_valid": win.mv_valid}


class FlowStage:
    """Compensated flow and camera homography of the pairs t -> t+1 whose frame t+1 has arrived:
    the first frame of a window closes the last pair of the window before."""

    name = "flow"

    def __init__(self, cfg: ExtractConfig):
        self.stride = cfg.flow_stride
        self.flow = WarpedFlow(flow_config(cfg))
        self.previous: np.ndarray | None = None  # last grey frame of the window before
        self.fallbacks = 0

    def __call__(self, win: Window) -> dict[str, np.ndarray]:
        height, width = win.gray.shape[1:]
        gray = win.gray if self.previous is None else np.concatenate([self.previous[None], win.gray])
        first = win.start - (len(gray) - len(win.gray))  # frame index of gray[0]
        pairs = len(gray) - 1
        flow_small = np.empty((pairs, height // self.stride, width // self.stride, 2), np.float32)
        homography = np.empty((pairs, 3, 3), np.float32)
        ok = np.zeros(pairs, bool)
        for i in range(pairs):
            t = first + i
            k = t + 1 - win.start  # frame t+1 within the window
            comp, h, ok[i] = self.flow.pair(t, gray[i], gray[i + 1], win.mv[k], win.mv_valid[k])
            homography[i] = h
            downsample_frame(comp, self.stride, flow_small[i])
        self.previous = win.gray[-1]
        self.fallbacks += int((~ok).sum())
        return {"flow": flow_small, "homography": homography, "homography_ok": ok}


def window_stages(cfg: ExtractConfig) -> list:
    """The per-window stages, in order (a stage reads what earlier ones left in `shared`).
    Each returns arrays of the schema for frames (or pairs) it has finished, in time order."""
    return [FlowStage(cfg)]  # schema 3: trajectories and HOG are derived when read (shards/derived.py)


def windows(stream: FrameStream, size: int, timings: dict[str, float]) -> Iterator[Window]:
    """The decoded frames of `stream` in windows of `size` (the last one shorter)."""
    items = iter(stream)
    batch: list = []
    start = 0
    while True:
        with stage("decode", None):  # decode errors become ExtractionError("decode")
            item = next(items, None)
        if item is not None and len(batch) < size:
            batch.append(item)
            continue
        if batch:
            frames = np.stack([b[0] for b in batch])
            with stage("flow", timings):
                gray = to_gray(frames)
            yield Window(start, frames, gray, np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]),
                         last=item is None)
            start += len(batch)
        if item is None:
            return
        batch = [item]


def extract_video_into(path: str, cfg: ExtractConfig, sink: Sink) -> dict:
    """Decode one file in windows of frames and hand each window's arrays to `sink` as soon as
    they are computed; returns the video's attrs. Raises ExtractionError on bad input.

    Peak memory is a window (plus the stages' look-behind: one grey frame for the flow), not the video: the same arrays as computing the whole
    video at once, for videos of any length (tests/preprocess/test_stream.py)."""
    timings: dict[str, float] = {}
    stream = FrameStream(path, short_side=cfg.short_side, fps=cfg.fps,
                         max_ref_distance=cfg.max_ref_distance, allow_images=cfg.allow_images)
    stages = window_stages(cfg)
    started = False
    for win in windows(stream, WINDOW_FRAMES, timings):
        if not started:
            with stage("write", timings):
                sink.start({"height": win.frames.shape[1], "width": win.frames.shape[2],
                            "traj_len": cfg.traj_len, "flow_stride": cfg.flow_stride,
                            "frames_storage": cfg.frames})
            started = True
        outputs = decoded_arrays(win)
        for st in stages:
            with stage(st.name, timings):
                outputs.update(st(win))
        with stage("write", timings):
            for name, rows in outputs.items():
                if not (name == "frames" and cfg.frames == "none"):  # decoded from the source when read
                    sink.append(name, rows)
    # FrameStream reports its own split of decode / motion-vector / reference-distance time
    for key, seconds in stream.attrs.pop("timings").items():
        timings[key] = timings.get(key, 0.0) + seconds
    attrs = dict(stream.attrs)
    flow = next(st for st in stages if isinstance(st, FlowStage))
    attrs.update({
        "traj_len": cfg.traj_len,
        "flow_stride": cfg.flow_stride,
        "frames_storage": cfg.frames,
        "homography_fallbacks": flow.fallbacks,
        "timings": {k: round(v, 4) for k, v in timings.items() if k != "write"},
    })
    return attrs


class Collect:
    """A `Sink` that keeps every array in memory (`extract_video`)."""

    def __init__(self):
        self.blocks: dict[str, list[np.ndarray]] = {}

    def start(self, attrs: dict) -> None:
        pass

    def append(self, name: str, rows: np.ndarray) -> None:
        self.blocks.setdefault(name, []).append(rows)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(blocks) for name, blocks in self.blocks.items()}


def extract_video(path: str, cfg: ExtractConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Decode one file and compute its arrays, all held in memory; raises ExtractionError on bad
    input. The extractor streams them into the shards instead (`extract_video_into`)."""
    sink = Collect()
    attrs = extract_video_into(path, cfg, sink)
    return sink.arrays(), attrs
