"""Dense trajectories on real H.264 videos with known object and camera motion."""
from __future__ import annotations


import numpy as np

from preprocess.flow import warped_flow
from preprocess.synthetic import MovingObject, Scene
from tests.reference_tracker import track
from shards.tracks import cell_centres, positions
from tests.preprocess.test_flow import scene_gray

H, W, L = 128, 160, 6


def object_points(scene: Scene, t: int, inset: int) -> np.ndarray:
    """(Hc, Wc) True for cells whose centre lies inside object 0 at frame t, `inset` px from its border."""
    x, y = scene.object_positions(0)[t]
    size = scene.objects[0].size
    c = cell_centres(scene.height // 8, scene.width // 8)
    return ((c[..., 0] > x + inset) & (c[..., 0] < x + size - inset)
            & (c[..., 1] > y + inset) & (c[..., 1] < y + size - inset))


def endpoint_errors(scene: Scene, pos: np.ndarray, starts, inset: int = 12) -> np.ndarray:
    """Distances between tracked and true positions of object points after L steps."""
    truth = scene.object_positions(0)
    errors = []
    for t in starts:
        inside = object_points(scene, t, inset)
        expected = pos[t, :, :, 0][inside] + (truth[t + L] - truth[t])
        errors.append(np.linalg.norm(pos[t, :, :, L][inside] - expected, axis=-1))
    return np.concatenate(errors)


def test_object_tracked_while_camera_pans(tmp_path):
    pan, velocity = (2.0, 1.0), (-1.5, 0.5)
    scene = Scene(height=H, width=W, num_frames=12, bg_velocity=pan,
                  objects=(MovingObject(64, (40, 24), velocity),), seed=5)
    flow, homs, ok, _ = warped_flow(scene_gray(scene, tmp_path / "panobj"))
    traj, valid = track(flow, homs, L)
    assert traj.shape == (12, H // 8, W // 8, L, 2) and traj.dtype == np.float32
    assert valid.shape == (12, H // 8, W // 8, L) and valid.dtype == bool
    pos = positions(traj, valid, homs)
    assert pos.shape == (12, H // 8, W // 8, L + 1, 2)
    assert np.array_equal(pos[:, :, :, 0], np.broadcast_to(cell_centres(H // 8, W // 8), pos[:, :, :, 0].shape))
    starts = range(0, 12 - L)
    assert all(valid[t][object_points(scene, t, 12)].all() for t in starts)
    assert endpoint_errors(scene, pos, starts).max() < 1.0
    # The stored steps are the compensated motion: object velocity minus the pan.
    steps = np.concatenate([traj[t][object_points(scene, t, 12)] for t in starts])
    assert np.allclose(np.median(steps.reshape(-1, 2), axis=0), np.subtract(velocity, pan), atol=0.1)


def test_compensated_steps_alone_slide_off_the_object(tmp_path):
    """Advancing by the compensated flow only (identity homographies) misses by ~L x pan."""
    pan = (2.0, 1.0)
    scene = Scene(height=H, width=W, num_frames=8, bg_velocity=pan,
                  objects=(MovingObject(64, (40, 24), (-1.5, 0.5)),), seed=5)
    flow, homs, _, _ = warped_flow(scene_gray(scene, tmp_path / "slide"))
    identity = np.broadcast_to(np.eye(3, dtype=np.float32), homs.shape)
    traj, valid = track(flow, identity, L)
    errors = endpoint_errors(scene, positions(traj, valid, identity), [0])
    assert np.median(errors) > 0.8 * L * np.hypot(*pan)


def test_speed_change(tmp_path):
    speeds = [(1.0, 0.5)] * 4 + [(3.0, -1.0)] * 7
    scene = Scene(height=H, width=W, num_frames=12,
                  objects=(MovingObject(64, (40, 24), velocities=tuple(speeds)),), seed=6)
    flow, homs, _, _ = warped_flow(scene_gray(scene, tmp_path / "speed"))
    traj, valid = track(flow, homs, L)
    pos = positions(traj, valid, homs)
    assert endpoint_errors(scene, pos, [1, 2]).max() < 1.0
    inside = object_points(scene, 1, 12)
    steps = np.median(traj[1][inside], axis=0)  # (L, 2): start frame 1 crosses the change after 3 steps
    assert np.allclose(steps[:3], [1.0, 0.5], atol=0.15) and np.allclose(steps[3:], [3.0, -1.0], atol=0.15)


def test_leaving_the_frame_and_the_video():
    """Uniform flow of +5 px in x, identity camera: points leave at the right edge."""
    pairs, height, width = 9, 32, 48
    flow = np.zeros((pairs, height, width, 2), np.float32)
    flow[..., 0] = 5.0
    homs = np.broadcast_to(np.eye(3, dtype=np.float32), (pairs, 3, 3))
    traj, valid = track(flow, homs, L)
    x0 = cell_centres(height // 8, width // 8)[..., 0]  # 3.5, 11.5, ..., 43.5
    for l in range(L):
        inside = (x0 + 5 * (l + 1) <= width - 1)[None]
        in_video = (np.arange(pairs + 1) + l <= pairs - 1)[:, None, None]
        assert np.array_equal(valid[..., l], inside & in_video)
    # once invalid, invalid for good; invalid steps store zeros
    assert not np.any(valid[..., 1:] & ~valid[..., :-1])
    assert np.all(traj[~valid] == 0) and np.allclose(traj[valid], [5.0, 0.0])
    assert not valid[-1].any()


def test_bilinear_lookup_beats_integer_rounding():
    """A flow field that varies within a pixel: sub-pixel lookup reads the right value."""
    pairs, height, width = 3, 32, 32
    xs = np.arange(width, dtype=np.float32)
    flow = np.zeros((pairs, height, width, 2), np.float32)
    flow[..., 1] = 0.1 * xs  # y-motion proportional to x; cell centres sit at x = 8j + 3.5
    homs = np.broadcast_to(np.eye(3, dtype=np.float32), (pairs, 3, 3))
    traj, valid = track(flow, homs, 1, median=1)
    expected = 0.1 * cell_centres(height // 8, width // 8)[..., 0]
    assert np.allclose(traj[0, :, :, 0, 1], expected, atol=1e-5)
    rounded = 0.1 * np.rint(cell_centres(height // 8, width // 8)[..., 0])
    assert np.abs(rounded - expected).min() >= 0.05 - 1e-6


def test_median_filter_removes_an_outlier():
    pairs, height, width = 2, 32, 32
    flow = np.full((pairs, height, width, 2), 1.0, np.float32)
    flow[0, 11, 11] = 15.0  # a lone spike on the cell centre (11.5, 11.5)'s neighbourhood
    homs = np.broadcast_to(np.eye(3, dtype=np.float32), (pairs, 3, 3))
    with_median, _ = track(flow, homs, 1, median=3)
    without, _ = track(flow, homs, 1, median=1)
    assert np.allclose(with_median[0, 1, 1, 0], 1.0) and not np.allclose(without[0, 1, 1, 0], 1.0)
