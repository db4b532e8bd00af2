"""One video -> the dict of arrays and attrs of the shard schema, composing the stages.

`compute_arrays` is pure (decoded frames and vectors in, arrays out); `extract_video`
adds the decode at the edge. Every stage runs under `stage(name)`, so whatever goes
wrong inside it becomes an ExtractionError naming that stage: a failure record, not a
crashed run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import cv2
import numpy as np

from preprocess.config import ExtractConfig
from preprocess.decode import DecodedVideo, decode_video
from preprocess.errors import ExtractionError
from preprocess.flow import FlowConfig, downsample_frame, iter_warped_flow


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


def compute_arrays(decoded: DecodedVideo, cfg: ExtractConfig,
                   timings: dict[str, float]) -> dict[str, np.ndarray]:
    """Decoded frames + codec vectors -> every stored array of the schema (reader dtypes and
    units). Trajectories and HOG are not computed here: shard schema 3 derives them when read,
    from the stored flow and frames (shards/derived.py).

    Flow is streamed pair by pair into the downsampled store, so only one full-resolution
    flow field is alive at a time.
    """
    with stage("flow", timings):
        gray = to_gray(decoded.frames)
        n, height, width = gray.shape
        pairs = iter_warped_flow(gray, flow_config(cfg), mv=decoded.mv, mv_valid=decoded.mv_valid)
        stride = cfg.flow_stride
        flow_small = np.empty((max(n - 1, 0), height // stride, width // stride, 2), np.float32)
        homography = np.empty((max(n - 1, 0), 3, 3), np.float32)
        ok = np.zeros(max(n - 1, 0), bool)
    for t in range(n - 1):
        with stage("flow", timings):
            comp, h, ok[t] = next(pairs)
            homography[t] = h
            downsample_frame(comp, stride, flow_small[t])
    return {
        "frames": decoded.frames,
        "mv": decoded.mv,
        "mv_valid": decoded.mv_valid,
        "flow": flow_small,
        "homography": homography,
        "homography_ok": ok,
    }


def extract_video(path: str, cfg: ExtractConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Decode one file and compute its arrays; raises ExtractionError on bad input."""
    timings: dict[str, float] = {}
    with stage("decode", timings):
        decoded = decode_video(path, short_side=cfg.short_side, fps=cfg.fps,
                               max_ref_distance=cfg.max_ref_distance, allow_images=cfg.allow_images)
    # decode_video reports its own split of decode / motion-vector / reference-distance time
    inner = dict(decoded.attrs.get("timings", {}))
    if inner:
        timings["decode"] = 0.0
        for key, seconds in inner.items():
            timings[key] = timings.get(key, 0.0) + seconds
    arrays = compute_arrays(decoded, cfg, timings)
    attrs = {k: v for k, v in decoded.attrs.items() if k != "timings"}
    attrs.update({
        "traj_len": cfg.traj_len,
        "flow_stride": cfg.flow_stride,
        "homography_fallbacks": int((~arrays["homography_ok"]).sum()),
        "timings": {k: round(v, 4) for k, v in timings.items()},
    })
    return arrays, attrs
