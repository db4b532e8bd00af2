"""The motion probes' pure parts on numbers known by construction: ridge from sufficient statistics,
R² and its bootstrap over videos, a token's camera-compensated displacement, a clip's motion."""
import numpy as np
import pytest

from train.eval.motion_probe import (Moments, bootstrap_r2, centre_view, choose_penalty, clip_targets, r2_videos,
                                     ridge_fit, sse, sst, token_displacement, video_stats)
from train.clips.dataset import ClipSpec


def linear_data(rows=600, d=5, k=2, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, d)) * np.arange(1, d + 1) + 3.0       # unequal scales, not centred
    w = rng.normal(size=(d, k))
    b = np.array([1.5, -2.0])[:k]
    return x, x @ w + b + noise * rng.normal(size=(rows, k)), w, b


def test_ridge_recovers_a_linear_map_from_sufficient_statistics():
    x, y, w, b = linear_data()
    m = Moments.zeros(5, 2)
    for part in np.array_split(np.arange(len(x)), 7):       # streamed in pieces: the same sums
        m.add(x[part], y[part])
    w_hat, b_hat = ridge_fit(m, 1e-9)
    assert np.allclose(w_hat, w, atol=1e-6) and np.allclose(b_hat, b, atol=1e-5)
    # the closed-form squared error equals the one of the predictions
    w2, b2 = w + 0.1, b - 0.3
    assert np.allclose(sse(m, w2, b2), ((y - (x @ w2 + b2)) ** 2).sum(0))
    assert np.allclose(sst(m), ((y - y.mean(0)) ** 2).sum(0))
    # a strong penalty shrinks the weights towards 0 and the prediction towards the mean
    w_big, b_big = ridge_fit(m, 1e6)
    assert np.abs(w_big).max() < 1e-3 and np.allclose(b_big, y.mean(0), atol=0.05)


def test_cross_validation_picks_a_weak_penalty_on_clean_data_and_the_strongest_on_noise():
    x, y, *_ = linear_data(noise=0.01)
    folds = []
    for f in range(3):
        m = Moments.zeros(5, 2)
        m.add(x[f::3], y[f::3])
        folds.append(m)
    penalty, scores = choose_penalty(folds, (1e-3, 1.0, 100.0))
    assert penalty == 1e-3 and scores[1e-3] > 0.999 and scores[100.0] < scores[1.0] < scores[1e-3]
    rng = np.random.default_rng(1)
    noise = []
    for f in range(3):  # y independent of x: every penalty scores about 0 and below, the strongest best
        m = Moments.zeros(5, 1)
        m.add(rng.normal(size=(200, 5)), rng.normal(size=(200, 1)))
        noise.append(m)
    penalty, scores = choose_penalty(noise, (1e-3, 1.0, 100.0))
    assert penalty == 100.0 and max(scores.values()) <= 0.0


def test_r2_of_a_perfect_and_of_a_feature_free_prediction_is_1_and_0():
    rng = np.random.default_rng(0)
    videos = [rng.normal(size=(16, 2)) + rng.normal(size=2) for _ in range(20)]
    perfect = np.stack([video_stats(y, y) for y in videos])
    assert r2_videos(perfect) == 1.0 and bootstrap_r2(perfect, resamples=200) == [1.0, 1.0]
    mean = np.concatenate(videos).mean(0)                   # the prediction without features: the mean
    free = np.stack([video_stats(y, np.broadcast_to(mean, y.shape)) for y in videos])
    assert r2_videos(free) == pytest.approx(0.0, abs=1e-12)
    # resampled, the total is about the resample's own mean, which fits it better than the full one's
    assert bootstrap_r2(free, resamples=500)[1] <= 1e-12
    # per output (clip-level parameters): the mean of each output's R²
    half = np.stack([video_stats(y, np.stack([y[:, 0], np.full(len(y), mean[1])], 1)) for y in videos])
    assert r2_videos(half, pooled=False) == pytest.approx(0.5)


def test_a_tokens_displacement_is_the_flow_without_the_camera():
    T, cells = 4, 4
    pan = np.array([3.0, -1.0])
    homography = np.tile(np.eye(3), (T - 1, 1, 1))
    homography[:, :2, 2] = pan                              # the camera translates the scene by `pan`
    flow = np.broadcast_to(pan, (T - 1, cells, cells, 2)).copy()
    flow[0, 1, 2] += [2.0, 0.5]                             # the object moves in one cell, pair 0
    flow[2, 3, 0] += [-1.0, 4.0]                            # and in another, pair 2
    d = token_displacement(flow, homography, tubelet=2, patch=8)     # one cell per token
    assert d.shape == (2, 4, 4, 2)
    expected = np.zeros((2, 4, 4, 2))
    expected[0, 1, 2] = [2.0, 0.5]
    expected[1, 3, 0] = [-1.0, 4.0]
    assert np.allclose(d, expected, atol=1e-5)
    # 16 px tokens: the mean of their 2 x 2 cells
    assert np.allclose(token_displacement(flow, homography, 2, 16)[0, 0, 1], [0.5, 0.125], atol=1e-5)


def test_a_clips_motion_is_the_generators_over_its_frames():
    relative = np.zeros((31, 2))
    relative[:10] = [1.0, 0.0]
    relative[10:] = [0.0, -2.0]
    motion = {"relative": relative.tolist(), "angular_velocity": -4.5}
    frames = np.array([8, 12])                              # steps 8..11: two at (1, 0), two at (0, -2)
    assert np.allclose(clip_targets(motion, frames, 0.5), [0.25, -0.5, 0.75, -4.5])


def test_the_centre_clip_is_centred():
    spec = ClipSpec(8, 4, 64, 2, 1.0, False)
    idx, rate, box = centre_view(32, 64, 64, spec)
    assert rate == 4 and list(idx) == [1, 5, 9, 13, 17, 21, 25, 29] and box == (0, 0, 64)


def test_the_generators_displacement_moves_the_objects_tokens_and_not_the_background():
    from train.eval.motion_probe import object_displacement

    relative = np.tile([1.0, 0.0], (15, 1))                 # 1 px/frame to the right of the background
    motion = {"relative": relative.tolist(), "pan": [0.5, -0.25], "angular_velocity": 0.0, "angle": 0.0,
              "size": 16, "start": [8.0, 8.0]}              # the object on pixels 8..23 at frame 0
    d = object_displacement(motion, np.array([0, 2, 4, 6]), (0, 0, 64), 64, tubelet=2, patch=8, points=2)
    assert d.shape == (2, 8, 8, 2)
    on = np.zeros((8, 8), bool)
    on[1:3, 1:3] = True                                     # slice 0: the tokens under the object
    assert np.allclose(d[0][on], [2.0, 0.0]) and np.allclose(d[0][~on], 0.0)   # the pan taken off
    # a crop at half resolution halves the displacements
    half = object_displacement(motion, np.array([0, 2]), (0, 0, 64), 32, tubelet=2, patch=8, points=2)
    # token (0, 0) covers 16 source px, a quarter of it on the object: 2 px x 0.5 x 1/4
    assert np.allclose(half[0, 0, 0], [0.25, 0.0])
    # a quarter turn counter-clockwise on screen: the point 3.5 px right of and 4.5 px above the centre
    # goes to 4.5 px left of and 3.5 px above it
    turn = {**motion, "relative": np.zeros((15, 2)).tolist(), "pan": [0.0, 0.0], "angular_velocity": 45.0}
    d = object_displacement(turn, np.array([0, 2]), (0, 0, 64), 64, tubelet=2, patch=8, points=1)
    assert np.allclose(d[0, 1, 2], [-8.0, 1.0]) and np.allclose(d[0, 0, 0], 0.0)
