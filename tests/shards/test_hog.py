"""Cell HOG: orientation bins, units, and samples along trajectories."""
from __future__ import annotations


import cv2
import numpy as np
import pytest

from shards.derived import cell_hog
from tests.reference_tracker import track
from shards.schema import HOG_BINS
from shards.tracks import along_trajectories, positions, reached


def ramp(angle_deg: float, slope: float = 2.0, size: int = 32) -> np.ndarray:
    """(size, size) float image rising by `slope` grey levels/px along direction angle (y down)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    a = np.deg2rad(angle_deg)
    return (100 + slope * (np.cos(a) * xs + np.sin(a) * ys)).astype(np.float32)


@pytest.mark.parametrize("angle, expected_bins", [(0, {0, 8}), (180, {0, 8}), (45, {2}), (90, {4}),
                                                  (135, {6}), (-45, {6}), (110, {5})])
def test_orientation_bins(angle, expected_bins):
    hog = cell_hog(ramp(angle))
    assert hog.shape == (1, 4, 4, HOG_BINS) and hog.dtype == np.float32
    interior = hog[0, 1:3, 1:3].reshape(-1, HOG_BINS)
    assert set(np.nonzero(interior.sum(axis=0))[0]) <= expected_bins
    # units: a ramp of s grey levels per pixel has magnitude s in every pixel of the cell
    assert np.allclose(interior.sum(axis=1), 2.0, atol=1e-3)


def test_vertical_edge_is_bin_0():
    """Dark-to-bright along x: gx > 0, gy = 0, atan2 = 0 deg -> bin 0 (a step edge, uint8)."""
    img = np.zeros((16, 24), np.uint8)
    img[:, 12:] = 200
    hog = cell_hog(img)[0]
    assert hog.shape == (2, 3, HOG_BINS)
    assert hog[:, 1, 0].min() > 0 and np.all(hog[..., 1:] == 0)
    # Sobel / 8 on a 200 step: 100 per edge-straddling pixel, 2 such columns -> 2 * 8 * 100 / 64
    assert np.allclose(hog[:, 1, 0], 25.0)


def test_horizontal_edge_is_bin_4():
    img = np.zeros((24, 16), np.uint8)
    img[12:] = 200
    hog = cell_hog(img)[0]
    assert np.all(np.delete(hog, 4, axis=-1) == 0) and hog[1, :, 4].min() > 0


def test_constant_image_is_zero_and_shapes():
    assert not cell_hog(np.full((3, 20, 27), 77, np.uint8)).any()
    assert cell_hog(np.zeros((3, 20, 27), np.uint8)).shape == (3, 2, 3, HOG_BINS)


def test_along_trajectories_static_pattern():
    """With zero motion every step reads the start cell's histogram."""
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.uniform(0, 255, (40, 48)).astype(np.float32), (0, 0), 1.5)
    frames = np.repeat(frame[None], 5, axis=0)
    hog = cell_hog(frames)
    flow = np.zeros((4, 40, 48, 2), np.float32)
    homs = np.broadcast_to(np.eye(3, dtype=np.float32), (4, 3, 3))
    traj, valid = track(flow, homs, 3)
    aligned = along_trajectories(hog, positions(traj, valid, homs), valid)
    assert aligned.shape == (5, 5, 6, 3, HOG_BINS)
    expected = np.broadcast_to(hog[:, :, :, None], aligned.shape)
    seen = reached(valid)
    assert np.allclose(aligned[seen], expected[seen], atol=1e-5)
    assert not aligned[~seen].any()
    assert valid[0].all() and not valid[4].any()
    # the last frame's points have no valid step, but their start position is real
    assert seen[4, ..., 0].all() and not seen[4, ..., 1:].any()


def moving_pattern(num_frames: int):
    """A blurred random pattern moving +8 px (one cell) a frame over 40 x 48 px frames, tracked
    num_frames - 1 steps on its exact flow: (hog, valid, HOG along the tracks)."""
    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (40, 96)).astype(np.float32), (0, 0), 1.5)
    frames = np.stack([big[:, 24 - 8 * t: 72 - 8 * t] for t in range(num_frames)])
    hog = cell_hog(frames)
    flow = np.zeros((num_frames - 1, 40, 48, 2), np.float32)
    flow[..., 0] = 8.0
    homs = np.broadcast_to(np.eye(3, dtype=np.float32), (num_frames - 1, 3, 3))
    traj, valid = track(flow, homs, num_frames - 1, median=1)
    return hog, valid, along_trajectories(hog, positions(traj, valid, homs), valid)


def test_along_trajectories_follows_a_moving_pattern():
    """A pattern moved by whole cells: the sampled histogram stays the start cell's."""
    hog, valid, aligned = moving_pattern(3)
    # cell (i, j) of frame 0 is cell (i, j + 1) of frame 1, and its inner cells are unaffected by the crop
    assert valid[0, 1:-1, 1:4].all()
    assert np.allclose(aligned[0, 1:-1, 1:4, 1], hog[0, 1:-1, 1:4], atol=1e-4)


def test_along_trajectories_keeps_the_last_position_in_the_frame():
    """A point that leaves the frame at step l was still inside at p_l: step l has its HOG
    (gated on valid[l - 1]), step l + 1 has none."""
    hog, valid, aligned = moving_pattern(4)
    # column 4 of frame 0 (x = 35.5): step 0 lands at 43.5 (inside), step 1 at 51.5 (outside, W = 48)
    col = (0, slice(None), 4)
    assert valid[col][:, 0].all() and not valid[col][:, 1:].any()
    assert np.allclose(aligned[col][:, 1], hog[1, :, 5], atol=1e-4)        # p_1 = 43.5: cell 5 of frame 1
    assert (aligned[col][:, 1].sum(-1) > 0).all()
    assert not aligned[col][:, 2].any()
