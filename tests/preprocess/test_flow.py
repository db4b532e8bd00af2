"""Flow, camera homography and compensated flow on real H.264 videos with known motion."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from preprocess.flow import (FlowConfig, displacement_field, downsample_flow, estimate_homography,
                             forward_flow, warped_flow)
from preprocess.synthetic import MovingObject, Scene, encode, render

H, W = 128, 160


def decoded_gray(frames_rgb: np.ndarray, path: Path) -> np.ndarray:
    """Encode RGB frames to H.264 (crf 12) and decode them back to (T, H, W) uint8 grey."""
    written = encode(path, frames_rgb, crf=12)
    with av.open(str(written)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def scene_gray(scene: Scene, path: Path) -> np.ndarray:
    return decoded_gray(render(scene), path)


def object_mask(scene: Scene, k: int, t: int, inset: int) -> np.ndarray:
    """(H, W) True inside object k at frame t, `inset` px away from its border (negative: grown)."""
    x, y = scene.object_positions(k)[t]
    size = scene.objects[k].size
    ys, xs = np.mgrid[0:scene.height, 0:scene.width]
    return (xs >= x + inset) & (xs < x + size - inset) & (ys >= y + inset) & (ys < y + size - inset)


def camera_error(h: np.ndarray, pan) -> float:
    """Largest error of the homography's displacement against a pan, over the frame."""
    return float(np.abs(displacement_field(h, H, W) - np.asarray(pan, np.float32)).max())


@pytest.mark.parametrize("pan", [(2.0, 1.0), (1.5, -0.75)])
def test_pan_is_removed(tmp_path, pan):
    scene = Scene(height=H, width=W, num_frames=8, bg_velocity=pan, seed=3)
    gray = scene_gray(scene, tmp_path / "pan")
    flow, homs, ok, timings = warped_flow(gray)
    assert flow.shape == (7, H, W, 2) and flow.dtype == np.float32
    assert homs.shape == (7, 3, 3) and homs.dtype == np.float32
    assert ok.all() and set(timings) == {"flow", "homography"}
    for h in homs:
        assert camera_error(h, pan) < 0.5
    assert np.median(np.abs(flow[:, 8:-8, 8:-8])) < 0.2
    # camera-inclusive flow = compensated + (H p - p) recovers the pan
    inclusive = flow[3] + displacement_field(homs[3].astype(np.float64), H, W)
    assert np.allclose(np.median(inclusive[8:-8, 8:-8].reshape(-1, 2), axis=0), pan, atol=0.1)


def test_static_camera_moving_object(tmp_path):
    velocity = (2.0, -1.0)
    scene = Scene(height=H, width=W, num_frames=6, objects=(MovingObject(56, (40, 40), velocity),), seed=4)
    gray = scene_gray(scene, tmp_path / "static")
    raw = forward_flow(gray[2], gray[3])
    inside, near = object_mask(scene, 0, 2, 12), object_mask(scene, 0, 2, -12)
    assert np.allclose(np.median(raw[inside], axis=0), velocity, atol=0.15)
    assert np.median(np.abs(raw[~near])) < 0.1
    h, ok, n = estimate_homography(gray[2], gray[3], raw)
    assert ok and n >= FlowConfig().min_inliers and camera_error(h, (0, 0)) < 0.3


@pytest.mark.parametrize("compensation", ["subtract", "reflow"])
def test_pan_and_object(tmp_path, compensation):
    pan, velocity = (2.0, 1.0), (-1.5, 0.5)
    scene = Scene(height=H, width=W, num_frames=6, bg_velocity=pan,
                  objects=(MovingObject(64, (48, 32), velocity),), seed=5)
    gray = scene_gray(scene, tmp_path / "panobj")
    flow, homs, ok, _ = warped_flow(gray, FlowConfig(compensation=compensation))
    assert ok.all()
    for t in range(len(flow)):
        assert camera_error(homs[t], pan) < 0.5
        inside, near = object_mask(scene, 0, t, 12), object_mask(scene, 0, t, -12)
        rel = np.subtract(velocity, pan)
        assert np.allclose(np.median(flow[t][inside], axis=0), rel, atol=0.15)
        background = ~near
        background[:8], background[-8:], background[:, :8], background[:, -8:] = False, False, False, False
        assert np.median(np.abs(flow[t][background])) < 0.2


def test_flow_matches_rescue_low_texture(tmp_path):
    """ORB finds no corners on a low-contrast background; matches from the flow field do."""
    pan = (1.5, -0.75)
    frames = render(Scene(height=H, width=W, num_frames=4, bg_velocity=pan, seed=3)).astype(np.float32)
    low = np.clip(np.rint(128 + (frames - 128) * 0.15), 0, 255).astype(np.uint8)
    gray = decoded_gray(low, tmp_path / "low")
    raw = forward_flow(gray[1], gray[2])
    _, ok_features, _ = estimate_homography(gray[1], gray[2], raw, FlowConfig(use_flow_matches=False))
    h, ok, _ = estimate_homography(gray[1], gray[2], raw, FlowConfig())
    assert not ok_features
    assert ok and camera_error(h, pan) < 0.5


def test_motion_vectors_as_matches(tmp_path):
    """Codec-style vectors alone (schema convention: on frame t+1's grid) recover the camera."""
    pan = (2.0, 1.0)
    gray = scene_gray(Scene(height=H, width=W, num_frames=3, bg_velocity=pan, seed=3), tmp_path / "mv")
    mv = np.zeros((3, H // 8, W // 8, 2), np.float32)
    mv[1:] = pan
    mv_valid = np.ones(mv.shape[:3], bool)
    mv_valid[0] = False
    cfg = FlowConfig(features="none", use_flow_matches=False)
    _, homs, ok, _ = warped_flow(gray, cfg, mv=mv, mv_valid=mv_valid)
    assert ok.all() and all(camera_error(h, pan) < 1e-3 for h in homs)
    _, ok_without, _ = estimate_homography(gray[0], gray[1], np.zeros((H, W, 2), np.float32), cfg)
    assert not ok_without


def test_too_few_matches_gives_identity():
    flat = np.full((H, W), 100, np.uint8)
    flow, homs, ok, _ = warped_flow(np.stack([flat, flat, flat]))
    assert not ok.any()
    assert np.array_equal(homs, np.broadcast_to(np.eye(3, dtype=np.float32), (2, 3, 3)))
    assert np.abs(flow).max() <= FlowConfig().clip


def test_clip():
    g0 = np.zeros((32, 48), np.uint8)
    cfg = FlowConfig(clip=0.5, features="none", use_flow_matches=False)
    flow, _, _, _ = warped_flow(np.stack([g0, np.roll(g0, 10, axis=1)]), cfg)
    assert np.abs(flow).max() <= 0.5


def test_downsample_flow_block_means():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(2, 17, 21, 2)).astype(np.float32)
    small = downsample_flow(flow, 4)
    assert small.shape == (2, 4, 5, 2) and small.dtype == np.float32
    assert np.isclose(small[1, 2, 3, 0], flow[1, 8:12, 12:16, 0].mean(), atol=1e-6)
    assert np.array_equal(downsample_flow(flow, 1), flow)


def test_config_validation():
    with pytest.raises(ValueError):
        FlowConfig(method="farneback")
    with pytest.raises(ValueError):
        FlowConfig(compensation="none")


def test_tvl1_runs():
    """The opt-in quality mode (too slow for a corpus: only a tiny frame here)."""
    frames = render(Scene(height=32, width=40, num_frames=2, bg_velocity=(1.0, 0.0), seed=1, margin=16))
    gray = frames.mean(axis=-1).astype(np.uint8)
    flow = forward_flow(gray[0], gray[1], FlowConfig(method="tvl1"))
    assert flow.shape == (32, 40, 2) and np.allclose(np.median(flow[8:-8, 8:-8, 0]), 1.0, atol=0.2)


def test_keypoints_of_isolated_fallbacks_are_not_kept():
    """Only frames t and t+1 keep their keypoints: a long video with fallbacks here and there
    must not accumulate them (12 kB per frame with ORB's 300 points)."""
    from preprocess.flow import WarpedFlow

    gray = (np.random.default_rng(0).random((64, 80)) * 255).astype(np.uint8)
    wf = WarpedFlow(FlowConfig())
    for i in (0, 1, 5, 6, 9, 10):  # pairs 0, 5 and 9 fell back to keypoints
        wf._cached_keypoints(i, gray)
    assert sorted(wf._keypoints) == [9, 10]


@pytest.mark.parametrize("size,seed,pan", [(64, 0, (0.164, -0.276)), (64, 5, (0.379, -0.597)),
                                           (128, 6, (0.223, 0.181))])
def test_a_smooth_background_keeps_its_share_of_the_camera_fit(size, seed, pan):
    """A natural-style background passes few flow samples through the texture filter while the
    textured object passes all of its own: the fit followed the object (median error at the
    frame centre 0.32 / 0.71 / 1.90 px on these three). The most textured samples are kept up to
    a floor, and the camera's pan is found."""
    scene = Scene(height=size, width=size, num_frames=9, bg_velocity=pan, seed=seed, style="natural",
                  objects=(MovingObject(size // 4, (size // 3, size // 3), (2.0, 1.0)),))
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in render(scene)])
    homs = warped_flow(gray)[1]
    centre = np.array([size / 2, size / 2, 1.0])
    moved = [(h @ centre)[:2] / (h @ centre)[2] - centre[:2] for h in homs]
    errors = np.linalg.norm(np.array(moved) - np.array(pan), axis=1)
    assert np.median(errors) < 0.25, errors
