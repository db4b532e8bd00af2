"""Motion probes: how much of a clip's motion a frozen encoder's features hold, as R² of ridge
regressions fit on the train split and scored on val.

- **Dense**: every token of the centre clip of each video -> its camera-compensated displacement
  over its tubelet (input px, (dx, dy)): on a generated corpus the generator's own (the object's
  motion relative to the background at each of the token's pixels, 0 on the background:
  `object_displacement`), else the shards' stored flow (`token_displacement`). The generator's,
  where there is one, because the stored flow's camera compensation fails on some of the small
  synthetic videos (a homography fit to the object rather than the background).
  R² on all val tokens, and on the moving tokens alone (displacement above `moving_px`): most
  tokens are background, whose compensated displacement is ~0, so the first R² rewards telling
  object from background and the second how the object moves. A direction is an odd function of
  the frames (a random encoder's features hold none of it linearly); the token's speed (the
  displacement's length, its own ridge) is an even one: "speed_r2" says whether the features
  know *that* a token moves, the displacement R² *where to*.
- **Clip**: the main probe's pooling of the same tokens -> the generator's per-video motion
  parameters over the clip's span (relative velocity x and y and speed in input px per stored
  frame, angular velocity in deg per stored frame; `clip_targets`). R² per parameter and their mean.

Both ridges standardize the features and choose the penalty by cross-validated R² over folds of
train videos. Everything is computed from per-fold sufficient statistics (`Moments`: the sums of
x, y, x x^T, x y^T, y^2), so the train tokens stream through once and no feature matrix is kept;
val R² comes with a 95 % percentile bootstrap interval over val videos (the tokens of one video
are not independent draws).

The centre clip of each video (its frames as uint8, the token displacements and where the clip
sits) is read once per shard set and geometry into a cache folder and reused by every checkpoint.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shards import ShardRef, open_shards
from shards.schema import CELL
from train.clips.assemble import normalize_levels
from train.clips.keys import VIDEO_U8
from train.clips.dataset import ClipSpec, eval_views, read_clip_at
from train.clips.pair_flow import grid_points, homography_displacement
from train.eval.classifier import VideoClassifier, load_encoder
from train.eval.config import EvalConfig
from train.eval.evaluation import labelled
from train.eval.probe import cpu_threads, pool
from train.eval.view_cache import shard_signature

# per-sample L2 on standardized features, up to strong enough that a feature without signal predicts the mean
RIDGE_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
MOVING_PX = 1.0     # input px over a tubelet: the synthetic objects move 1.6-3.7 px per tubelet at the study's regime
CLIP_PARAMS = ("vx", "vy", "speed", "angular_velocity")
CACHE_VERSION = 2


# ---- ridge regression from sufficient statistics ---------------------------------------------

@dataclass
class Moments:
    """Sums over rows of x (D,) and y (K,): n, x, y, x x^T, x y^T, y^2 (float64)."""
    n: float
    sx: np.ndarray
    sy: np.ndarray
    sxx: np.ndarray
    sxy: np.ndarray
    syy: np.ndarray

    @classmethod
    def zeros(cls, d: int, k: int) -> "Moments":
        return cls(0.0, np.zeros(d), np.zeros(k), np.zeros((d, d)), np.zeros((d, k)), np.zeros(k))

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Rows x (M, D), y (M, K)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n += len(x)
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.sxx += x.T @ x
        self.sxy += x.T @ y
        self.syy += (y * y).sum(0)

    def __add__(self, other: "Moments") -> "Moments":
        return Moments(self.n + other.n, self.sx + other.sx, self.sy + other.sy, self.sxx + other.sxx,
                       self.sxy + other.sxy, self.syy + other.syy)


def ridge_path(m: Moments, penalties) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ridge on standardized features for each of `penalties`: minimizes the mean squared error +
    penalty |beta|^2 over the rows summed in `m`. Returns [(weights W (D, K), intercept b (K,))] on
    the raw features. A linear solve per penalty: on the shared 2-core machine one solve of a
    1155-wide system took 0.15 s against 2 s for the eigendecomposition that would serve them all."""
    mx, my = m.sx / m.n, m.sy / m.n
    cxx = m.sxx / m.n - np.outer(mx, mx)
    cxy = m.sxy / m.n - np.outer(mx, my)
    s = np.sqrt(np.clip(np.diag(cxx), 1e-12, None))
    czz, czy = cxx / np.outer(s, s), cxy / s[:, None]
    out = []
    for penalty in penalties:
        w = np.linalg.solve(czz + penalty * np.eye(len(s)), czy) / s[:, None]
        out.append((w, my - mx @ w))
    return out


def ridge_fit(m: Moments, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """`ridge_path` at one penalty."""
    return ridge_path(m, [penalty])[0]


def sse(m: Moments, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of squared errors (K,) of the prediction x W + b over the rows summed in `m`."""
    return (m.syy - 2 * (w * m.sxy).sum(0) - 2 * b * m.sy + (w * (m.sxx @ w)).sum(0)
            + 2 * b * (m.sx @ w) + m.n * b * b)


def sst(m: Moments) -> np.ndarray:
    """Total sum of squares (K,) about the rows' own mean."""
    return m.syy - m.sy ** 2 / max(m.n, 1.0)


def choose_penalty(folds: list[Moments], grid: tuple[float, ...] = RIDGE_GRID, pooled: bool = True
                   ) -> tuple[float, dict[float, float]]:
    """The penalty of `grid` with the best cross-validated R² (each fold scored by the fit on the
    others; ties: the stronger). `pooled`: R² of the outputs together (one vector target), else the
    mean of each output's. Returns the penalty and {penalty: R²}."""
    errors = {penalty: 0.0 for penalty in grid}
    totals = 0.0
    for k, held in enumerate(folds):
        rest = sum((f for j, f in enumerate(folds) if j != k), Moments.zeros(*held.sxy.shape))
        for penalty, fit in zip(grid, ridge_path(rest, grid)):
            errors[penalty] = errors[penalty] + sse(held, *fit)
        totals = totals + sst(held)
    scores = {penalty: r2_score(errors[penalty], totals, pooled) for penalty in grid}
    best = max(scores.values())
    return max(p for p, v in scores.items() if v >= best - 1e-12), scores


def r2_score(errors: np.ndarray, totals: np.ndarray, pooled: bool = True) -> float:
    """1 - SSE / SST: of the outputs together (`pooled`), else the mean of each output's."""
    errors, totals = np.asarray(errors, np.float64), np.asarray(totals, np.float64)
    if pooled:
        return float(1 - errors.sum() / totals.sum()) if totals.sum() > 0 else float("nan")
    some = totals > 0   # an output constant over the rows has no R²
    return float(np.mean(1 - errors[some] / totals[some])) if some.any() else float("nan")


# ---- R² over val videos with a bootstrap -----------------------------------------------------

def video_stats(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """One video's rows y, pred (M, K) -> (4, K): squared error, rows, sum y, sum y^2."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    return np.stack([((y - pred) ** 2).sum(0), np.full(y.shape[1], float(len(y))), y.sum(0), (y * y).sum(0)])


def r2_videos(stats: np.ndarray, pooled: bool = True) -> float:
    """R² over the videos of `stats` (V, 4, K) (`video_stats`), the total about their pooled mean."""
    e, n, s, q = stats.sum(0)
    return r2_score(e, q - s * s / np.maximum(n, 1.0), pooled)


def bootstrap_r2(stats: np.ndarray, pooled: bool = True, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile bootstrap interval of `r2_videos` over videos (fixed resampling seed)."""
    rng = np.random.default_rng(seed)
    V = len(stats)
    counts = np.stack([np.bincount(rng.integers(0, V, V), minlength=V) for _ in range(resamples)])   # (R,V)
    e, n, s, q = np.moveaxis((counts @ stats.reshape(V, -1)).reshape(resamples, *stats.shape[1:]), 1, 0)
    total = q - s * s / np.maximum(n, 1.0)                                                           # (R,K)
    with np.errstate(divide="ignore", invalid="ignore"):   # a draw of videos with no rows has no R²
        if pooled:
            draws = 1 - e.sum(1) / total.sum(1)
        else:
            some = total > 0
            draws = np.where(some, 1 - e / total, 0.0).sum(1) / some.sum(1)
    return [float(x) for x in np.nanquantile(draws, [0.025, 0.975])]


# ---- what a token and a clip moved -------------------------------------------------------------

def token_displacement(flow: np.ndarray, homography: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
    """Camera-compensated displacement of every token over its tubelet, (t, h, w, 2) input px.

    flow (T-1, Hc, Wc, 2) is the camera-inclusive flow between consecutive clip frames on the 8 px
    cell grid and homography (T-1, 3, 3) the camera's motion (a clip's `flow` / `homography`,
    train/clips/dataset.py); the camera's displacement H p - p at each cell centre is taken off.
    A token's displacement is the sum over the tubelet-1 frame pairs inside it (exact for tubelet
    2, the study's) of its cells' mean."""
    steps, hc, wc, _ = flow.shape
    own = flow - homography_displacement(homography, grid_points(hc, wc, CELL))            # (T-1,Hc,Wc,2)
    t, k = (steps + 1) // tubelet, patch // CELL
    pairs = np.stack([own[i * tubelet:i * tubelet + tubelet - 1].sum(0) for i in range(t)])  # (t,Hc,Wc,2)
    return pairs.reshape(t, hc // k, k, wc // k, k, 2).mean((2, 4)).astype(np.float32)


def clip_targets(motion: dict, frames: np.ndarray, scale: float) -> np.ndarray:
    """The generator's motion of one video over a clip's stored frames (T,) -> (vx, vy, speed,
    angular velocity): the object's velocity relative to the background averaged over the clip's
    steps and its mean speed, in input px per stored frame (`scale` = input / stored px), and its
    angular velocity in deg per stored frame. `motion`: {"relative": (T_stored - 1, 2) px/frame,
    "angular_velocity": deg/frame}."""
    rel = np.asarray(motion["relative"], np.float64)[int(frames[0]):int(frames[-1])]
    if not len(rel):
        rel = np.zeros((1, 2))
    v = rel.mean(0) * scale
    return np.array([v[0], v[1], np.linalg.norm(rel, axis=1).mean() * scale, motion["angular_velocity"]])


def rotation(degrees: np.ndarray) -> np.ndarray:
    """(..., 2, 2) rotations counter-clockwise on screen (y down), as the generator's."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)


def object_displacement(motion: dict, frames: np.ndarray, box: tuple[int, int, int], input_size: int,
                        tubelet: int, patch: int, points: int = 4) -> np.ndarray:
    """The generator's camera-compensated displacement of every token over its tubelet, (t, h, w, 2)
    input px: the mean over `points` x `points` points of the token of their motion from the
    tubelet's first stored frame to its last, relative to the background: the object's translation
    and rotation about its centre for a point on the object, 0 for a point on the background.
    `motion`: the generator's parameters of the video (preprocess/motion_params.py); `frames` (T,)
    the clip's stored frames, `box` = (x0, y0, side) its crop in stored px."""
    x0, y0, side = box
    scale = input_size / side
    n = input_size // patch
    sub = (np.arange(n * points) + 0.5) * patch / points                                   # input px
    ys, xs = np.meshgrid(y0 + sub / scale - 0.5, x0 + sub / scale - 0.5, indexing="ij")
    p = np.stack([xs, ys], -1)                                                              # (nP,nP,2) stored px
    relative = np.asarray(motion["relative"], np.float64)
    pan = np.asarray(motion["pan"], np.float64)
    track = np.concatenate([[[0.0, 0.0]], np.cumsum(relative + pan, 0)])                    # image-space
    centre = np.asarray(motion["start"], np.float64) + motion["size"] / 2 + track            # (T_stored,2)
    out = []
    for i in range(len(frames) // tubelet):
        f, g = int(frames[i * tubelet]), int(frames[i * tubelet + tubelet - 1])
        rel = p - centre[f]
        theta = motion["angle"] + motion["angular_velocity"] * f
        inside = (np.abs(rel @ rotation(theta)) <= motion["size"] / 2).all(-1)              # object frame
        turned = rel @ rotation(motion["angular_velocity"] * (g - f)).T
        moved = centre[g] + turned - p - pan * (g - f)                                      # minus the camera
        d = np.where(inside[..., None], moved, 0.0) * scale
        out.append(d.reshape(n, points, n, points, 2).mean((1, 3)))
    return np.stack(out).astype(np.float32)


def centre_view(num_stored: int, height: int, width: int, spec: ClipSpec) -> tuple[np.ndarray, int, tuple]:
    """The centre clip: frame indices (T,) centred in the video, stride, and the centre square box."""
    (idx, rate, box), = eval_views(num_stored, height, width, spec, 1)
    shift = (num_stored - 1 - int(idx[-1])) // 2
    return idx + shift, rate, box


# ---- the centre clips, read once --------------------------------------------------------------

def centre_clips(cache: Path, shards: ShardRef, split: str, ids: list[str], spec: ClipSpec, patch: int) -> dict:
    """{"levels" (V, T, S, S, 3) uint8 memmap, "disp" (V, t, h, w, 2), "frames" (V, T), "scale" (V,)}:
    the centre clip of every video of `ids`, from `cache` (built once per shard set, split, ids and
    geometry; one builder at a time, renamed into place when complete)."""
    path = Path(shards.path)  # the clips do not depend on where a --frames none set's videos are
    key = {"version": CACHE_VERSION, "shards": str(path.resolve()), "signature": shard_signature(path),
           "split": split, "ids": list(ids), "num_frames": spec.num_frames, "sampling_rate": spec.sampling_rate,
           "input_size": spec.input_size, "tubelet": spec.tubelet, "patch": patch}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache) / f"{split}_{digest}"
    if not (folder / "key.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(folder.parent, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / "key.json").exists():
                _build(folder, key, shards, ids, spec, patch)
        finally:
            os.close(lock)
    small = np.load(folder / "targets.npz")
    return {"levels": np.load(folder / "levels.npy", mmap_mode="r"), "disp": small["disp"],
            "frames": small["frames"], "scale": small["scale"], "box": small["box"]}


def _build(folder: Path, key: dict, shards: ShardRef, ids: list[str], spec: ClipSpec, patch: int) -> None:
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        S, T = spec.input_size, spec.num_frames
        levels = np.lib.format.open_memmap(tmp / "levels.npy", mode="w+", dtype=np.uint8, shape=(len(ids), T, S, S, 3))
        disp, frames, scale, boxes = [], [], [], []
        with open_shards(shards) as ds:
            for i, vid in enumerate(ids):
                video = ds[vid]
                a = video.attrs
                idx, rate, box = centre_view(int(a["num_frames"]), int(a["height"]), int(a["width"]), spec)
                clip = read_clip_at(video, spec, idx, rate, box)
                levels[i] = clip[VIDEO_U8]
                disp.append(token_displacement(clip["flow"], clip["homography"], spec.tubelet, patch))
                frames.append(idx)
                scale.append(S / box[2])
                boxes.append(box)
        levels.flush()
        del levels
        np.savez(tmp / "targets.npz", disp=np.stack(disp), frames=np.stack(frames), scale=np.array(scale),
                 box=np.array(boxes))
        (tmp / "key.json").write_text(json.dumps(key))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ---- the probe ---------------------------------------------------------------------------------

@torch.no_grad()
def motion_probe(checkpoint: str, shards: str | Path | ShardRef, cache: str | Path, motion: dict | None = None,
                 batch_size: int = 32, device: str = "cpu", folds: int = 3, moving_px: float = MOVING_PX,
                 clip_pool: str = "quadrants", grid: tuple[float, ...] = RIDGE_GRID, resamples: int = 2000,
                 **geometry) -> dict:
    """The dense and the clip-level motion probe of `checkpoint` ("random" with `geometry`: EvalConfig's
    geometry fields). `motion`: video id -> the generator's parameters (`clip_targets`); None or a
    video missing from it: no clip-level probe."""
    start = time.perf_counter()
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    shards = ShardRef.of(shards)
    mae, cfg, info = load_encoder(EvalConfig(checkpoint=str(checkpoint), shards=shards.path, **geometry))
    model = VideoClassifier(mae, 1).to(device).eval()
    spec = ClipSpec(cfg.num_frames, cfg.sampling_rate, cfg.input_size, cfg.tubelet, 1.0, False,
                    frozenset({"flow", "homography"}), assemble="uint8")
    tokens_grid = (cfg.num_frames // cfg.tubelet, cfg.input_size // cfg.patch_size, cfg.input_size // cfg.patch_size)
    splits = {}
    for split in ("train", "val"):
        ids = labelled(shards, split)[0]
        splits[split] = (ids, centre_clips(Path(cache), shards, split, ids, spec, cfg.patch_size))
    with_clip = motion is not None and all(v in motion for ids, _ in splits.values() for v in ids)
    if with_clip:  # the generator's displacements in place of the stored flow's
        for ids, clips in splits.values():
            clips["disp"] = np.stack([object_displacement(motion[v], clips["frames"][i], tuple(clips["box"][i]),
                                                          cfg.input_size, cfg.tubelet, cfg.patch_size)
                                      for i, v in enumerate(ids)])

    def encode(clips: dict):
        """(tokens (B, N, D), pooled (B, K), displacement (B, N, 2)) per batch of videos."""
        for lo in range(0, len(clips["disp"]), batch_size):
            video = normalize_levels(torch.from_numpy(np.array(clips["levels"][lo:lo + batch_size])).to(device))
            tokens = model.forward_tokens(video).float()                                    # (B,N,D)
            pooled = pool(tokens, tokens_grid, clip_pool)
            yield lo, tokens.cpu().numpy(), pooled.cpu().numpy(), clips["disp"][lo:lo + batch_size].reshape(
                len(tokens), -1, 2)

    def targets(ids: list[str], clips: dict) -> np.ndarray:
        return np.stack([clip_targets(motion[v], clips["frames"][i], float(clips["scale"][i]))
                         for i, v in enumerate(ids)])

    with cpu_threads(1, device):
        ids, clips = splits["train"]
        dense, speed = [None] * folds, [None] * folds
        pooled_train = []
        for lo, tokens, pooled, disp in encode(clips):
            for j in range(len(tokens)):
                f = (lo + j) % folds           # folds by video, round-robin: deterministic
                if dense[f] is None:
                    dense[f], speed[f] = Moments.zeros(tokens.shape[-1], 2), Moments.zeros(tokens.shape[-1], 1)
                dense[f].add(tokens[j], disp[j])
                speed[f].add(tokens[j], np.linalg.norm(disp[j], axis=1, keepdims=True))
            pooled_train.append(pooled)
        dense, speed = [m for m in dense if m is not None], [m for m in speed if m is not None]
        penalty, cv = choose_penalty(dense, grid)
        w, b = ridge_fit(sum(dense[1:], dense[0]), penalty)
        speed_penalty, _ = choose_penalty(speed, grid)
        sw, sb = ridge_fit(sum(speed[1:], speed[0]), speed_penalty)
        clip_fit = None
        if with_clip:
            x = np.concatenate(pooled_train)
            y = targets(ids, clips)
            clip_folds = []
            for f in range(folds):
                m = Moments.zeros(x.shape[1], y.shape[1])
                m.add(x[f::folds], y[f::folds])
                clip_folds.append(m)
            clip_penalty, clip_cv = choose_penalty(clip_folds, grid, pooled=False)
            clip_fit = (clip_penalty, clip_cv, *ridge_fit(sum(clip_folds[1:], clip_folds[0]), clip_penalty))

        ids, clips = splits["val"]
        all_stats, moving_stats, speed_stats, pooled_val, moving, total = [], [], [], [], 0, 0
        for lo, tokens, pooled, disp in encode(clips):
            for j in range(len(tokens)):
                pred = tokens[j] @ w + b
                all_stats.append(video_stats(disp[j], pred))
                speed_stats.append(video_stats(np.linalg.norm(disp[j], axis=1, keepdims=True), tokens[j] @ sw + sb))
                keep = np.linalg.norm(disp[j], axis=1) > moving_px
                moving_stats.append(video_stats(disp[j][keep], pred[keep]))
                moving, total = moving + int(keep.sum()), total + len(keep)
            pooled_val.append(pooled)
    all_stats, moving_stats, speed_stats = np.stack(all_stats), np.stack(moving_stats), np.stack(speed_stats)
    out = {"checkpoint": info["checkpoint"], "step": info["checkpoint_step"],
           "videos": {"train": len(splits["train"][0]), "val": len(ids)},
           "dense": {"source": "generator" if with_clip else "flow", "r2": r2_videos(all_stats),
                     "ci95": bootstrap_r2(all_stats, resamples=resamples),
                     "penalty": penalty, "cv_r2": {f"{k:g}": round(v, 5) for k, v in cv.items()},
                     "moving_px": moving_px, "moving_share": moving / max(total, 1), "tokens_val": total,
                     "moving_r2": r2_videos(moving_stats) if moving else None,
                     "moving_ci95": bootstrap_r2(moving_stats, resamples=resamples) if moving else None,
                     "speed_r2": r2_videos(speed_stats), "speed_ci95": bootstrap_r2(speed_stats, resamples=resamples),
                     "speed_penalty": speed_penalty},
           "clip": None}
    if clip_fit is not None:
        clip_penalty, clip_cv, cw, cb = clip_fit
        y = targets(ids, clips)
        pred = np.concatenate(pooled_val) @ cw + cb
        stats = np.stack([video_stats(y[i:i + 1], pred[i:i + 1]) for i in range(len(y))])
        e, n, s, q = stats.sum(0)
        per = [r2_score(e[k:k + 1], (q - s * s / n)[k:k + 1]) for k in range(len(e))]
        out["clip"] = {"r2": r2_videos(stats, pooled=False),
                       "ci95": bootstrap_r2(stats, pooled=False, resamples=resamples),
                       "per_param": {name: float(v) for name, v in zip(CLIP_PARAMS, per)},
                       "pool": clip_pool, "penalty": clip_penalty,
                       "cv_r2": {f"{k:g}": round(v, 5) for k, v in clip_cv.items()}}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out
