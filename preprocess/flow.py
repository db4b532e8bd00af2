"""Optical flow, camera homography and camera-compensated ("warped") flow.

Pure functions of grey frames (uint8 numpy arrays); no I/O. Conventions follow
`shards.schema`: pixels of the given frames, pixel centres at integers, x before y,
forward displacement (where content at t is at t+1). `homography[t]` maps frame t
pixel coordinates to frame t+1, and the camera-inclusive flow at p is
`flow[t](p) + (H p - p)`.

Why these defaults (numbers in `docs/benchmarks.md` and ANCHORS "Optical flow on CPU"):
- DIS, not TV-L1: TV-L1 runs at 0.2-0.5 pairs/s on one core, far too slow for a corpus.
- DIS at full resolution (`finest_scale=0`) with a sparser patch grid (`patch_stride=6`):
  the stock presets stop at scale 2 and are off by ~0.1 px per step, which a 6-step
  trajectory accumulates. Scale 1 fixes pure pans (~0.02 px) but still underestimates
  the motion of a 64 px object against its background by ~0.07 px per step (0.45 px
  median endpoint error over 6 steps, on H.264 frames); scale 0 brings that to ~0.08 px
  over 6 steps. Scale 0 with the ultrafast stride of 4 costs 12 ms at 340x256, stride 6
  halves that (~6 ms) for the same accuracy within ~0.02 px.
- 6 gradient-descent iterations per patch instead of the preset's 12: on panned scenes with
  moving objects (456x256, H.264) the 6-step endpoint error fell from 0.058-0.066 to
  0.051-0.058 px median and flow got ~5 % cheaper; fewer iterations are enough at full
  resolution, where each scale's initial guess is already close.
- The homography is fitted to matches sampled from the flow field (textured, away from
  motion boundaries); feature matches alone drift on low-texture frames (no ORB corners)
  while flow matches hold there. Feature matches and codec motion vectors (free matches,
  when given) take over where the flow matches are too few (see `_homography`).
- `compensation="subtract"` removes the homography's displacement field from the raw
  flow (one flow call per frame); `"reflow"` recomputes flow between frame t and frame
  t+1 warped back by the homography, as iDT / MME do (two flow calls per frame).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from shards.schema import CELL, FLOW_CLIP

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class FlowConfig:
    """How flow, the camera homography and the compensated flow are computed."""

    method: str = "dis"               # "dis" | "tvl1" (opt-in quality mode, ~1000x slower)
    dis_preset: str = "ultrafast"     # "ultrafast" | "fast" | "medium"
    finest_scale: int | None = 0      # DIS pyramid level to stop at (0 = full res); None: preset's
    patch_stride: int | None = 6      # DIS patch stride, px; None keeps the preset's
    gd_iterations: int | None = 6     # DIS gradient-descent iterations per patch; None: preset's (12)
    features: str = "orb"             # "orb" | "sift" | "none": keypoints where flow matches are too few
    max_features: int = 300           # keypoints per frame (ORB: ~2 ms at 340x256)
    use_flow_matches: bool = True     # add matches sampled from the raw flow field
    flow_grid: int = 8                # least px between flow-match samples
    flow_samples: int = 640           # the grid widens so a frame has about this many samples at most
    min_texture: float = 2e-5         # cv2.cornerMinEigenVal below which a flow sample is skipped
    min_flow_samples: int = 96        # unless fewer pass (or fewer than half the grid): the most textured are kept
    boundary_px: float = 0.3          # flow change within +-flow_grid/2 px that marks a motion boundary
    use_mv_matches: bool = True       # add codec motion vectors as matches when they are given
    ransac_px: float = 1.0            # RANSAC reprojection threshold, px
    min_inliers: int = 20             # fewer inliers -> identity homography, ok=False
    compensation: str = "subtract"    # "subtract" | "reflow"
    clip: float = FLOW_CLIP           # compensated flow is clipped to +-clip px per component

    def __post_init__(self):
        choices = {"method": ("dis", "tvl1"), "dis_preset": tuple(_DIS_PRESETS),
                   "features": ("orb", "sift", "none"), "compensation": ("subtract", "reflow")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"FlowConfig.{name}={getattr(self, name)!r}, expected one of {allowed}")
        if self.flow_grid < 1 or self.min_inliers < 4 or self.ransac_px <= 0 or self.clip <= 0:
            raise ValueError(f"FlowConfig out of range: {self}")


def flow_algorithm(cfg: FlowConfig = FlowConfig()) -> cv2.DenseOpticalFlow:
    """A configured flow instance; `calc` keeps no state between pairs (no initial flow is passed)."""
    if cfg.method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    algo = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.dis_preset])
    if cfg.finest_scale is not None:
        algo.setFinestScale(cfg.finest_scale)
    if cfg.patch_stride is not None:
        algo.setPatchStride(cfg.patch_stride)
    if cfg.gd_iterations is not None:
        algo.setGradientDescentIterations(cfg.gd_iterations)
    return algo


def forward_flow(g0: np.ndarray, g1: np.ndarray, cfg: FlowConfig = FlowConfig(),
                 algo: cv2.DenseOpticalFlow | None = None) -> np.ndarray:
    """(H, W, 2) float32 raw flow from grey frame g0 to g1 (forward, px, x before y).

    `algo` (from `flow_algorithm(cfg)`) is reused across the pairs of a video; a fresh
    one is made when omitted.
    """
    return (flow_algorithm(cfg) if algo is None else algo).calc(g0, g1, None)


def _keypoints(gray: np.ndarray, cfg: FlowConfig):
    """(points (N, 2) float32, descriptors) of one frame, or None when features are off."""
    if cfg.features == "none":
        return None
    if cfg.features == "orb":
        # 3 pyramid levels suffice between consecutive frames and cost half of the default 8.
        detector = cv2.ORB_create(nfeatures=cfg.max_features, nlevels=3)
    else:
        detector = cv2.SIFT_create(nfeatures=cfg.max_features)
    kps, desc = detector.detectAndCompute(gray, None)
    pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
    return pts, desc


def _feature_matches(f0, f1, cfg: FlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cross-checked nearest-neighbour matches between two frames' keypoints."""
    empty = np.zeros((0, 2), np.float32)
    if f0 is None or f1 is None or f0[1] is None or f1[1] is None or len(f0[0]) < 2 or len(f1[0]) < 2:
        return empty, empty
    norm = cv2.NORM_HAMMING if cfg.features == "orb" else cv2.NORM_L2
    matches = cv2.BFMatcher(norm, crossCheck=True).match(f0[1], f1[1])
    if not matches:
        return empty, empty
    q = np.array([m.queryIdx for m in matches])
    t = np.array([m.trainIdx for m in matches])
    return f0[0][q], f1[0][t]


def _flow_matches(g0: np.ndarray, flow: np.ndarray, cfg: FlowConfig) -> tuple[np.ndarray, np.ndarray]:
    """Matches (p, p + flow(p)) on a grid, skipping flat points and motion boundaries.

    On flat points DIS only propagates flow from elsewhere. Near a moving object its flow
    bleeds into the background over a patch or two; those samples are within RANSAC's 1 px
    of the camera motion yet pulled the fit by ~0.1 px on a synthetic pan, so samples whose
    flow changes by more than `cfg.boundary_px` within +-half a grid step are dropped.
    """
    h, w = g0.shape
    # ~640 samples fit the 8-dof homography as well as 1,800 at 456x256 (same camera error and
    # trajectory endpoints on the synthetic pans) and cost 0.4-1 ms less per frame
    step = max(cfg.flow_grid, int(np.sqrt(h * w / max(cfg.flow_samples, 1))))
    # Half resolution: texture is a coarse property here, and it is 3x cheaper.
    small = cv2.resize(g0, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    texture = cv2.cornerMinEigenVal(small, 5, 3)
    # The border is left out: content entering the frame has no correspondence.
    margin = max(step, 8)
    ys, xs = np.mgrid[margin:h - margin:step, margin:w - margin:step]
    tex = texture[np.minimum(ys // 2, h // 2 - 1), np.minimum(xs // 2, w // 2 - 1)]
    keep = tex > cfg.min_texture
    floor = min(max(cfg.min_flow_samples, len(tex) // 2), int((tex > 0).sum()))
    if keep.sum() < floor:
        # A smooth background passes few samples while a textured object passes all of its own,
        # and RANSAC then fits the object: keep the most textured `floor` samples instead, so the
        # background keeps its share of the fit.
        keep = tex >= np.sort(tex[tex > 0])[-floor]
    ys, xs = ys[keep], xs[keep]
    f = flow[ys, xs]
    r = max(step // 2, 1)
    change = np.zeros(len(f), np.float32)
    for dy, dx in ((0, r), (0, -r), (r, 0), (-r, 0)):
        change = np.maximum(change, np.abs(flow[ys + dy, xs + dx] - f).max(axis=-1))
    smooth = change <= cfg.boundary_px
    src = np.stack([xs[smooth], ys[smooth]], axis=-1).astype(np.float32)
    return src, src + f[smooth]


def _mv_matches(mv: np.ndarray, mv_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matches (centre - mv, centre) from the codec's vectors of frame t+1 (on its cell grid)."""
    i, j = np.nonzero(mv_valid)
    dst = np.stack([CELL * j + (CELL - 1) / 2, CELL * i + (CELL - 1) / 2], axis=-1).astype(np.float32)
    return dst - mv[i, j].astype(np.float32), dst


def _fit(src: np.ndarray, dst: np.ndarray, cfg: FlowConfig) -> tuple[np.ndarray, bool, int]:
    """RANSAC homography (its inliers refined by OpenCV's Levenberg-Marquardt step)."""
    if len(src) < cfg.min_inliers:
        return np.eye(3), False, 0
    h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_px)
    if h is None or not np.all(np.isfinite(h)):
        return np.eye(3), False, 0
    n = int(inliers.sum())
    if n < cfg.min_inliers:
        return np.eye(3), False, n
    return h.astype(np.float64), True, n


def _homography(g0, flow, keypoints, cfg: FlowConfig, mv, mv_valid) -> tuple[np.ndarray, bool, int]:
    """Flow matches first; keypoint and codec-vector matches where those are too few.

    Flow samples cover the frame evenly and are sub-pixel. Keypoints cluster on the most
    textured content, often a moving object: mixed with the flow samples they let the
    8-dof homography settle on a compromise between object and background (4 px off on a
    static synthetic shot), and their pixel-quantized positions biased the fit by ~0.1 px.
    Codec vectors are chosen for rate, not truth. So those two only decide where the flow
    matches cannot (low texture, flow matches off), pooled with whatever flow matches exist.
    """
    flow_src = flow_dst = np.zeros((0, 2), np.float32)
    if cfg.use_flow_matches:
        flow_src, flow_dst = _flow_matches(g0, flow, cfg)
        h, ok, n = _fit(flow_src, flow_dst, cfg)
        if ok:
            return h, ok, n
    pairs = [(flow_src, flow_dst), _feature_matches(*keypoints(), cfg)]
    if cfg.use_mv_matches and mv is not None:
        pairs.append(_mv_matches(mv, mv_valid))
    src = np.concatenate([p[0] for p in pairs]).astype(np.float32)
    dst = np.concatenate([p[1] for p in pairs]).astype(np.float32)
    return _fit(src, dst, cfg)


def estimate_homography(g0: np.ndarray, g1: np.ndarray, flow: np.ndarray, cfg: FlowConfig = FlowConfig(),
                        mv: np.ndarray | None = None, mv_valid: np.ndarray | None = None,
                        ) -> tuple[np.ndarray, bool, int]:
    """Camera motion between two grey frames: (H 3x3 float64 frame t px -> t+1 px, ok, n_inliers).

    `flow` is the raw forward flow g0 -> g1 (H, W, 2). `mv`, `mv_valid` are the codec's
    vectors of frame t+1 (Hc, Wc, 2) / (Hc, Wc): displacement t -> t+1 on t+1's cell grid.
    With fewer than `cfg.min_inliers` RANSAC inliers the identity is returned with ok=False.
    """
    if mv is not None and mv_valid is None:
        raise ValueError("mv given without mv_valid")
    return _homography(g0, flow, lambda: (_keypoints(g0, cfg), _keypoints(g1, cfg)), cfg, mv, mv_valid)


def displacement_field(h: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width, 2) float32 H p - p: where the camera alone moves each pixel."""
    # float32 is exact to ~1e-4 px at these coordinates and halves the cost.
    h = np.asarray(h, np.float32)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    den = h[2, 0] * xs + h[2, 1] * ys + h[2, 2]
    out = np.empty((height, width, 2), np.float32)
    out[..., 0] = (h[0, 0] * xs + h[0, 1] * ys + h[0, 2]) / den - xs
    out[..., 1] = (h[1, 0] * xs + h[1, 1] * ys + h[1, 2]) / den - ys
    return out


class WarpedFlow:
    """Camera-compensated flow of consecutive frame pairs fed one at a time (`iter_warped_flow`
    over frames that arrive as a stream: the extractor's windows never hold the whole video).

    `pair(t, g0, g1, mv1, mv_valid1)` must see t = 0, 1, ... with g0 the g1 of the previous
    call; it returns what `iter_warped_flow` yields for pair t. `timings` gets "flow" and
    "homography" seconds added.
    """

    def __init__(self, cfg: FlowConfig = FlowConfig(), timings: dict[str, float] | None = None):
        self.cfg = cfg
        self.timings = {} if timings is None else timings
        self.timings.setdefault("flow", 0.0)
        self.timings.setdefault("homography", 0.0)
        self._algo = flow_algorithm(cfg)
        self._keypoints: dict[int, object] = {}

    def _cached_keypoints(self, i: int, gray: np.ndarray):
        # Frame t+1's keypoints are frame t's of the next pair; only frames i - 1 and i are
        # kept (dropping only i - 2 kept every frame of an isolated fallback: 12 kB each, a
        # leak on a long video).
        if i not in self._keypoints:
            self._keypoints = {k: v for k, v in self._keypoints.items() if k == i - 1}
            self._keypoints[i] = _keypoints(gray, self.cfg)
        return self._keypoints[i]

    def pair(self, t: int, g0: np.ndarray, g1: np.ndarray, mv1: np.ndarray | None = None,
             mv_valid1: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """(compensated flow (H, W, 2) float32 clipped, homography (3, 3) float64 t -> t+1, ok).

        mv1, mv_valid1: the codec's vectors of frame t+1 (the motion t -> t+1), or None."""
        cfg, timings = self.cfg, self.timings
        height, width = g0.shape
        s = time.perf_counter()
        raw = forward_flow(g0, g1, cfg, self._algo)
        timings["flow"] += time.perf_counter() - s

        s = time.perf_counter()
        h, ok, _ = _homography(g0, raw, lambda: (self._cached_keypoints(t, g0), self._cached_keypoints(t + 1, g1)),
                               cfg, mv1, mv_valid1)
        if not ok:
            comp = raw
        elif cfg.compensation == "subtract":
            comp = np.subtract(raw, displacement_field(h, height, width), out=raw)
        else:
            # g1 resampled at H p: frame t+1 seen from frame t's camera.
            g1w = cv2.warpPerspective(g1, h, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                      borderMode=cv2.BORDER_REPLICATE)
            timings["homography"] += time.perf_counter() - s
            s = time.perf_counter()
            comp = forward_flow(g0, g1w, cfg, self._algo)
            timings["flow"] += time.perf_counter() - s
            s = time.perf_counter()
        # np.minimum / np.maximum: np.clip's argument checks cost as much as the work here
        np.maximum(np.minimum(comp, cfg.clip, out=comp), -cfg.clip, out=comp)
        timings["homography"] += time.perf_counter() - s
        return comp, h, ok


def iter_warped_flow(frames_gray: np.ndarray, cfg: FlowConfig = FlowConfig(),
                     mv: np.ndarray | None = None, mv_valid: np.ndarray | None = None,
                     timings: dict[str, float] | None = None,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """Camera-compensated forward flow, one frame pair at a time (see `warped_flow`).

    Yields, for t = 0 .. T-2: (flow (H, W, 2) float32 compensated and clipped, a new array
    per pair; homography (3, 3) float64 frame t -> t+1; ok). Streaming keeps one full-
    resolution flow field alive instead of T-1 (300 MB for 10 s at 455x256), and the
    page faults of filling that array cost ~2 ms per frame. `timings` gets "flow" and
    "homography" seconds added as pairs are produced.
    """
    if frames_gray.ndim != 3 or frames_gray.dtype != np.uint8:
        raise ValueError(f"frames_gray must be (T, H, W) uint8, got {frames_gray.shape} {frames_gray.dtype}")
    if mv is not None and (mv_valid is None or len(mv) != len(frames_gray)):
        raise ValueError("mv needs mv_valid and one entry per frame")
    stepper = WarpedFlow(cfg, timings)
    for t in range(len(frames_gray) - 1):
        yield stepper.pair(t, frames_gray[t], frames_gray[t + 1], None if mv is None else mv[t + 1],
                           None if mv_valid is None else mv_valid[t + 1])


def warped_flow(frames_gray: np.ndarray, cfg: FlowConfig = FlowConfig(),
                mv: np.ndarray | None = None, mv_valid: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Camera-compensated forward flow of a video.

    frames_gray: (T, H, W) uint8. mv, mv_valid: optional codec vectors (T, Hc, Wc, 2) /
    (T, Hc, Wc) in the schema's convention (mv[t+1] is the motion t -> t+1).
    Returns flow (T-1, H, W, 2) float32 compensated and clipped to +-cfg.clip,
    homography (T-1, 3, 3) float32 (frame t -> t+1), ok (T-1,) bool (False: identity used,
    flow left uncompensated), timings {"flow": s, "homography": s} summed over the video
    ("homography" includes features, matching, RANSAC and compensation).
    The extractor streams `iter_warped_flow` instead and never holds all of it.
    """
    timings: dict[str, float] = {}
    pairs = iter_warped_flow(frames_gray, cfg, mv, mv_valid, timings)
    n, height, width = frames_gray.shape
    flows = np.empty((max(n - 1, 0), height, width, 2), np.float32)
    homs = np.empty((max(n - 1, 0), 3, 3), np.float32)
    ok = np.zeros(max(n - 1, 0), bool)
    for t, (comp, h, ok_t) in enumerate(pairs):
        flows[t], homs[t], ok[t] = comp, h, ok_t
    return flows, homs, ok, timings


def downsample_flow(flow: np.ndarray, stride: int) -> np.ndarray:
    """(T-1, H // stride, W // stride, 2) block means of (T-1, H, W, 2) flow.

    Values stay in pixels of the full (stored) resolution; block (i, j) covers pixels
    [stride j, stride j + stride) x [stride i, stride i + stride), centre
    (stride j + (stride - 1) / 2, stride i + (stride - 1) / 2). Trailing rows / columns
    that do not fill a block are dropped, as the cell grid does.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n, height, width, _ = flow.shape
    h, w = height // stride, width // stride
    if stride == 1:
        return flow.astype(np.float32, copy=True)
    out = np.empty((n, h, w, 2), np.float32)
    if h == 0 or w == 0:
        return out
    for t in range(n):
        downsample_frame(flow[t], stride, out[t])
    return out


def downsample_frame(flow: np.ndarray, stride: int, out: np.ndarray | None = None) -> np.ndarray:
    """(H // stride, W // stride, 2) block means of one (H, W, 2) flow field (`downsample_flow`)."""
    height, width = flow.shape[:2]
    h, w = height // stride, width // stride
    if out is None:
        out = np.empty((h, w, 2), np.float32)
    if stride == 1:
        np.copyto(out, flow)
    elif h and w:
        # INTER_AREA at an integer factor is an exact block mean, ~10x faster than numpy's
        # mean over the two strided block axes.
        cv2.resize(flow[:h * stride, :w * stride], (w, h), dst=out, interpolation=cv2.INTER_AREA)
    return out
