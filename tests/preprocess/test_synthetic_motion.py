"""The synthetic-motion corpus: real encoded videos whose class is visible only in the motion.

Motion is checked on rendered frames (where the object is, which way it turns) against the
tracks the scenes were built from; the static cues a motion-blind model could use
(brightness, where the object is on average, how fast it moves) are checked not to
separate the classes.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from preprocess import synthetic
from preprocess.datasets import DatasetRootError, default_root, list_videos
from preprocess.datasets import synthetic_motion as sm

TINY = sm.SynthConfig(per_class=2, frames=16, height=64, width=64)
NAME = "synthetic-motion"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in [v for v in os.environ if v.startswith("MOTION_MAE_")]:
        monkeypatch.delenv(var)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / NAME
    sm.generate(root, TINY)
    return root


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def world_centres(scene: synthetic.Scene) -> np.ndarray:
    """(T, 2) object centre relative to the background (camera pan removed), px."""
    pan = np.concatenate([[[0.0, 0.0]], np.cumsum(scene.bg_motion(), axis=0)])
    return scene.object_positions(0) + scene.objects[0].size / 2 - pan


def f_statistic(groups: list[np.ndarray]) -> float:
    """One-way ANOVA F: between-class over within-class variance (about 1 when classes do not differ)."""
    everything = np.concatenate(groups)
    between = sum(len(g) * (g.mean() - everything.mean()) ** 2 for g in groups) / (len(groups) - 1)
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (len(everything) - len(groups))
    return between / within


# ------------------------------------------------------------------------ the corpus

def test_tiny_corpus_lists_decodes_and_labels(tiny_root):
    items = list_videos(NAME, root=tiny_root)
    assert len(items) == len(sm.CLASSES) * TINY.per_class == 16
    assert sorted({it.label for it in items}) == list(range(len(sm.CLASSES)))
    assert all(it.label_name == sm.CLASSES[it.label] for it in items)
    assert all(Path(it.path).parent.name == it.label_name for it in items)
    for split in ("train", "val"):
        assert {it.label_name for it in items if it.split == split} == set(sm.CLASSES)
    has_b = []
    for it in items:
        with av.open(it.path) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            frames = list(container.decode(container.streams.video[0]))
        assert len(frames) == TINY.frames
        assert frames[0].to_ndarray(format="rgb24").shape == (TINY.height, TINY.width, 3)
        has_b.append(any(f.pict_type == av.video.frame.PictureType.B for f in frames))
    assert any(has_b) and not all(has_b)  # both GOP structures
    assert json.loads((tiny_root / sm.PARAMS_FILE).read_text())["per_class"] == TINY.per_class
    assert [p for p in tiny_root.iterdir() if p.name.startswith(".")] == []  # no partial folder left


def test_environment_sets_the_size(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTION_MAE_SYNTH_PER_CLASS", "1")
    monkeypatch.setenv("MOTION_MAE_SYNTH_FRAMES", "4")
    monkeypatch.setenv("MOTION_MAE_SYNTH_SIZE", "32x48")
    items = list_videos(NAME, root=tmp_path)
    assert len(items) == len(sm.CLASSES) and {it.split for it in items} == {"train"}
    with av.open(items[0].path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (32, 48, 3)
    params = json.loads((tmp_path / sm.PARAMS_FILE).read_text())
    assert (params["frames"], params["height"], params["width"], params["per_class"]) == (4, 32, 48, 1)
    monkeypatch.setenv("MOTION_MAE_SYNTH_SIZE", "big")
    with pytest.raises(ValueError, match="MOTION_MAE_SYNTH_SIZE"):
        list_videos(NAME, root=tmp_path)


def test_regenerates_only_missing_files_and_grows_in_place(tmp_path, monkeypatch):
    small = replace(TINY, frames=4, height=32, width=32)
    sm.generate(tmp_path, small)
    before = mtimes(tmp_path)
    assert len(list_videos(NAME, root=tmp_path)) == 16           # no variables: what the folder holds
    gone = "rotate_cw/rotate_cw_0001.mp4"
    (tmp_path / gone).unlink()
    list_videos(NAME, root=tmp_path)
    after = mtimes(tmp_path)
    assert after.keys() == before.keys() and {k for k in after if after[k] != before[k]} == {gone}

    monkeypatch.setenv("MOTION_MAE_SYNTH_PER_CLASS", "3")      # more: only the new videos are written
    assert len(list_videos(NAME, root=tmp_path)) == 24
    grown = mtimes(tmp_path)
    assert all(grown[k] == after[k] for k in after if k != sm.PARAMS_FILE)
    assert len(grown) == len(after) + 8
    monkeypatch.setenv("MOTION_MAE_SYNTH_PER_CLASS", "1")      # fewer: the first N, files kept
    assert {it.video_id for it in list_videos(NAME, root=tmp_path)} == {f"{c}_0000" for c in sm.CLASSES}
    assert mtimes(tmp_path) == grown
    monkeypatch.delenv("MOTION_MAE_SYNTH_PER_CLASS")
    assert len(list_videos(NAME, root=tmp_path)) == 24


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_several_processes_write_the_same_files(tmp_path, monkeypatch):
    # a large missing corpus is written by several processes (one per MIN_PER_WORKER videos at
    # most): each video depends only on its parameters, so the rendered frames are the same. The
    # encoded bytes need not be: libx264 as PyAV 18's wheels ship it can pick other modes for the
    # same frames from one call to the next, even in one process (seen at any frame size), so the
    # files are compared decoded, to within a few levels of a crf 12 encode.
    monkeypatch.setattr(sm, "MIN_PER_WORKER", 4)
    small = replace(TINY, per_class=2, frames=4, height=32, width=32)
    sm.generate(tmp_path / "one", small)
    sm.generate(tmp_path / "two", small, workers=2)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.mp4"))
    assert len(files) == 16 and files == sorted(p.relative_to(tmp_path / "two")
                                                for p in (tmp_path / "two").rglob("*.mp4"))
    for f in files:
        one, two = _decoded(tmp_path / "one" / f), _decoded(tmp_path / "two" / f)
        assert one.shape == two.shape == (4, 32, 32, 3)
        assert np.abs(one.astype(np.int16) - two).mean() < 2.0
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".partial-")]
    monkeypatch.setenv(sm.WORKERS_ENV, "many")
    with pytest.raises(ValueError, match="MOTION_MAE_SYNTH_WORKERS must be an integer"):
        sm.prepare(tmp_path / "two")


def test_other_content_parameters_are_refused(tmp_path, monkeypatch):
    sm.generate(tmp_path, replace(TINY, frames=4, height=32, width=32, per_class=1))
    monkeypatch.setenv("MOTION_MAE_SYNTH_FRAMES", "8")
    with pytest.raises(DatasetRootError, match=r"frames=4 \(asked 8\).*Delete the folder"):
        list_videos(NAME, root=tmp_path)
    monkeypatch.delenv("MOTION_MAE_SYNTH_FRAMES")
    (tmp_path / sm.PARAMS_FILE).unlink()
    with pytest.raises(DatasetRootError, match="no generation.json"):
        list_videos(NAME, root=tmp_path)


def test_default_root_and_size(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path))
    assert default_root(NAME) == tmp_path / NAME
    assert sm.requested(tmp_path / NAME) == sm.SynthConfig() and sm.SynthConfig().per_class == 64


def test_a_video_depends_only_on_its_index():
    assert sm.video(TINY, 3, 1) == sm.video(replace(TINY, per_class=100), 3, 1)
    assert sm.video(TINY, 3, 1) != sm.video(replace(TINY, seed=1), 3, 1)
    assert [sm.split_of(i) for i in range(8)] == ["train", "val", "train", "train"] * 2


# ------------------------------------------------------------------------ the motion

@pytest.mark.parametrize("style", synthetic.STYLES)
@pytest.mark.parametrize("label", range(len(sm.CLASSES)), ids=sm.CLASSES)
def test_rendered_object_follows_its_track(label, style):
    """The object found in the frames (against the same scene without it) is where its track says."""
    for index in range(2):
        scene = sm.video(replace(TINY, style=style), label, index).clip.scene
        frames = synthetic.render(scene).astype(np.float32)
        background = synthetic.render(replace(scene, objects=())).astype(np.float32)
        mask = np.abs(frames - background).sum(axis=-1) > 15          # (T, H, W)
        ys, xs = np.mgrid[:scene.height, :scene.width]
        found = np.stack([(xs * mask).sum((1, 2)), (ys * mask).sum((1, 2))], axis=1) / mask.sum((1, 2))[:, None]
        track = scene.object_positions(0) + scene.objects[0].size / 2
        assert np.abs(found - track).max() < 2.0


@pytest.mark.parametrize("label", range(len(sm.CLASSES)), ids=sm.CLASSES)
def test_track_matches_its_class(label):
    """The object's motion relative to the background is the class's pattern, with or without a pan."""
    name, cfg = sm.CLASSES[label], sm.SynthConfig()
    short, steps = min(cfg.height, cfg.width), cfg.frames - 1
    pans = set()
    for index in range(12):
        scene = sm.video(cfg, label, index).clip.scene
        obj = scene.objects[0]
        pans.add(scene.bg_velocity != (0.0, 0.0))
        centres = world_centres(scene)
        steps_xy = np.diff(centres, axis=0)
        path = np.linalg.norm(steps_xy, axis=1).sum()
        if name.startswith("translate_"):
            axis = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}[name.split("_")[1]]
            net = centres[-1] - centres[0]
            assert net @ axis > math.cos(math.radians(sm.TRANSLATE_JITTER + 1e-6)) * np.linalg.norm(net)
            assert np.allclose(steps_xy, steps_xy[0]) and obj.angular_velocity == 0
        elif name.startswith("rotate_"):
            assert np.allclose(steps_xy, 0)
            assert (obj.angular_velocity < 0) == (name == "rotate_cw")  # counter-clockwise is positive
            assert sm.TURN_RANGE[0] <= abs(obj.angular_velocity) * steps <= sm.TURN_RANGE[1]
        elif name == "circle":
            # Kasa fit: x^2 + y^2 = 2ax + 2by + c, exact for points on a circle
            a, b, c = np.linalg.lstsq(np.c_[2 * centres, np.ones(len(centres))], (centres ** 2).sum(1), rcond=None)[0]
            radii = np.linalg.norm(centres - (a, b), axis=1)
            assert np.ptp(radii) < 1e-6 * radii.mean()
            turned = np.abs(np.diff(np.unwrap(np.arctan2(*(centres - (a, b)).T[::-1])))).sum() / (2 * math.pi)
            assert sm.CIRCLE_TURNS[0] - 1e-6 <= turned <= sm.CIRCLE_TURNS[1] + 1e-6
        else:  # zigzag: two headings, alternating in runs of 3-5 frames (first and last runs cut)
            headings = np.round(np.degrees(np.arctan2(steps_xy[:, 1], steps_xy[:, 0])), 6)
            values, runs = np.unique(headings), np.diff(np.flatnonzero(np.diff(headings) != 0))
            assert len(values) == 2
            swerve = abs((values[1] - values[0] + 180) % 360 - 180) / 2
            assert sm.ZIGZAG_SWERVE[0] - 1e-6 <= swerve <= sm.ZIGZAG_SWERVE[1] + 1e-6
            assert len(set(runs)) == 1 and sm.ZIGZAG_HALF_PERIOD[0] <= runs[0] <= sm.ZIGZAG_HALF_PERIOD[1]
        if not name.startswith("rotate_"):
            assert sm.PATH_RANGE[0] * short * 0.95 <= path <= sm.PATH_RANGE[1] * short + 1e-6
            assert obj.angular_velocity == 0
    assert pans == {True, False}  # a pan does not depend on the class


def rotate_about(frame: np.ndarray, src: np.ndarray, dst: np.ndarray, degrees: float) -> np.ndarray:
    """`frame` turned by `degrees` counter-clockwise on screen (y down) about `src`, moved to `dst`.

    The map is written out here rather than taken from cv2.getRotationMatrix2D, so the test
    pins the sign convention independently of the renderer.
    """
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    dx, dy = xs - dst[0], ys - dst[1]
    t = math.radians(degrees)  # inverse map: a point at angle phi came from phi - t
    map_x = src[0] + math.cos(t) * dx - math.sin(t) * dy
    map_y = src[1] + math.sin(t) * dx + math.cos(t) * dy
    return cv2.remap(frame, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR)


@pytest.mark.parametrize("style", synthetic.STYLES)
@pytest.mark.parametrize("name", ["rotate_cw", "rotate_ccw"])
def test_rendered_object_turns_the_way_its_class_says(name, style):
    for index in range(2):
        scene = sm.video(replace(TINY, style=style), sm.CLASSES.index(name), index).clip.scene
        frames = synthetic.render(scene).astype(np.float32)
        centres = scene.object_positions(0) + scene.objects[0].size / 2
        spin = abs(scene.objects[0].angular_velocity)
        ys, xs = np.mgrid[:scene.height, :scene.width]
        ccw_wins = 0
        for t in range(scene.num_frames - 1):
            inside = np.hypot(xs - centres[t + 1, 0], ys - centres[t + 1, 1]) < 0.4 * scene.objects[0].size
            error = {sign: np.abs(rotate_about(frames[t], centres[t], centres[t + 1], sign * spin)
                                  - frames[t + 1])[inside].mean() for sign in (1, -1)}
            ccw_wins += error[1] < 0.5 * error[-1]
        # counter-clockwise on screen: a point right of the centre moves up
        assert ccw_wins == (scene.num_frames - 1 if name == "rotate_ccw" else 0)


def test_appearance_varies_within_a_class():
    label = sm.CLASSES.index("translate_right")
    scenes = [sm.video(TINY, label, i).clip.scene for i in range(4)]
    assert len({s.seed for s in scenes}) == 4
    assert len({s.objects[0].size for s in scenes}) > 1 and len({s.objects[0].angle for s in scenes}) == 4
    first = [synthetic.render(s)[0].astype(np.float32) for s in scenes]
    colours = np.array([f.mean((0, 1)) / f.mean() for f in first])  # tint, brightness removed
    assert np.ptp(colours, axis=0).max() > 0.1
    assert min(np.abs(first[i] - first[j]).mean() for i in range(4) for j in range(i)) > 10


def test_styles_share_the_motion_and_differ_in_how_much_the_object_stands_out():
    """Video i moves the same in both looks; "structured" sets the object 0.3-0.45 of the grey range
    off the background's level, "noise" leaves it at the same level (only the texture differs)."""
    contrast = {}
    for style in synthetic.STYLES:
        gaps = []
        for label in range(len(sm.CLASSES)):
            scene = sm.video(replace(TINY, style=style, frames=2), label, 0).clip.scene
            assert scene == replace(sm.video(replace(TINY, frames=2), label, 0).clip.scene, style=style)
            frame = synthetic.render(scene)[0].astype(np.float32).mean(-1)
            alone = synthetic.render(replace(scene, objects=()))[0].astype(np.float32).mean(-1)
            inside = np.abs(frame - alone) > 15
            gaps.append(abs(frame[inside].mean() - alone.mean()) / 255)
        contrast[style] = np.array(gaps)
    assert contrast["structured"].min() > 0.15          # tinted 0.6-1.0: 0.3 of the range is >= 0.18
    assert np.median(contrast["noise"]) < 0.1


def test_style_from_the_environment_and_older_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTION_MAE_SYNTH_STYLE", "structured")
    assert sm.requested(tmp_path).style == "structured"
    monkeypatch.setenv("MOTION_MAE_SYNTH_STYLE", "plaid")
    with pytest.raises(ValueError, match="unknown style 'plaid'"):
        sm.requested(tmp_path)
    monkeypatch.delenv("MOTION_MAE_SYNTH_STYLE")
    old = {k: v for k, v in {**TINY.content(), "per_class": 2}.items() if k != "style"}  # written before styles
    (tmp_path / sm.PARAMS_FILE).write_text(json.dumps(old))
    assert sm.recorded(tmp_path) == TINY and TINY.style == "noise"


# ------------------------------------------------------------ no static shortcut to the class

@pytest.mark.parametrize("style", synthetic.STYLES)
def test_brightness_does_not_predict_the_class(style):
    """Class means of the mean intensity stay within chance of each other (a class ~15% brighter fails)."""
    cfg = replace(TINY, frames=4, style=style)
    brightness = [np.array([synthetic.render(sm.video(cfg, label, i).clip.scene).mean() for i in range(20)])
                  for label in range(len(sm.CLASSES))]
    assert f_statistic(brightness) < 2.5  # F(7, 152) > 2.5 by chance about 2% of the time; the draws are fixed


def test_position_and_speed_do_not_predict_the_class():
    cfg = sm.SynthConfig()
    scenes = [[sm.video(cfg, label, i).clip.scene for i in range(24)] for label in range(len(sm.CLASSES))]
    for axis in (0, 1):  # where the object is on average over the clip
        mean_position = [np.array([(s.object_positions(0)[:, axis] + s.objects[0].size / 2).mean() for s in group])
                         for group in scenes]
        assert f_statistic(mean_position) < 2.5
    moving = [group for label, group in enumerate(scenes) if not sm.CLASSES[label].startswith("rotate_")]
    speed = [np.array([np.linalg.norm(np.diff(world_centres(s), axis=0), axis=1).mean() for s in group])
             for group in moving]
    assert f_statistic(speed) < 2.5


def test_natural_look_is_smoother_than_the_others():
    """What makes masked pixels predictable: pixels 8 px apart (one patch side) correlate far more in
    the natural look than in noise or stripes (measured medians at 112 px: 0.62 vs 0.22 and 0.30)."""
    cfg = replace(sm.SynthConfig(), frames=2)
    corr = {}
    for style in synthetic.STYLES:
        values = []
        for label in range(len(sm.CLASSES)):
            grey = synthetic.render(sm.video(replace(cfg, style=style), label, 0).clip.scene)[0].astype(np.float32).mean(-1)
            values.append(np.corrcoef(grey[:, :-8].ravel(), grey[:, 8:].ravel())[0, 1])
        corr[style] = np.median(values)
    assert corr["natural"] > 0.45 and corr["natural"] > corr["noise"] + 0.2 and corr["natural"] > corr["structured"] + 0.1


def test_motion_parameters_are_the_videos_own(tmp_path):
    # what the study's motion probes read: per video id, the object's motion relative to the
    # background (its on-screen velocity minus the pan), its spin and where it starts
    cfg = sm.SynthConfig(per_class=2, frames=8, height=64, width=64)
    params = sm.motion_parameters(cfg)
    assert len(params) == 16 and set(params) == {sm.safe_id(v.clip.name) for v in sm.videos(cfg)}
    for v in sm.videos(cfg):
        p, scene = params[sm.safe_id(v.clip.name)], v.clip.scene
        obj = scene.objects[0]
        assert np.allclose(np.asarray(p["relative"]) + p["pan"], obj.velocities, atol=1e-5)
        assert (p["label"], p["size"], p["start"], p["angle"]) == (v.label, obj.size, list(obj.start), obj.angle)
        turning = v.label_name.startswith("rotate")
        assert (p["angular_velocity"] != 0) == turning and (np.abs(p["relative"]).max() == 0) == turning
