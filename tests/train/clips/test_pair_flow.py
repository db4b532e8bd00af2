"""The clip's flow between frames (train/clips/pair_flow.py) against the code it replaced, which is
kept here as the reference: the homography displacement at every flow point in float64,
averaged over the cell, and one compose per clip pair."""
import numpy as np
import pytest
import torch

from shards.schema import CELL
from train.pretraining.masks.mgmae import compose
from train.clips.pair_flow import camera_inclusive_cells, chain_pairs, grid_points

STRIDE = 4


def reference_cells(flow, homography, stride):
    K, h, w, _ = flow.shape
    p = grid_points(h, w, stride)
    ph = np.einsum("kab,hwb->khwa", homography.astype(np.float64), np.concatenate([p, np.ones((h, w, 1))], -1))
    full = flow + (ph[..., :2] / ph[..., 2:] - p)
    k = CELL // stride
    hc, wc = h // k, w // k
    return full[:, :hc * k, :wc * k].reshape(K, hc, k, wc, k, 2).mean((2, 4)).astype(np.float32)


def reference_pairs(flow, homography, frames):
    T = len(frames)
    hc, wc = flow.shape[1:3]
    pair_flow = np.zeros((T - 1, hc, wc, 2), np.float32)
    pair_hom = np.tile(np.eye(3), (T - 1, 1, 1))
    for k in range(T - 1):
        a, b = int(frames[k]), int(frames[k + 1])
        if b > a:
            pair_flow[k] = compose(torch.from_numpy(flow[None, a:b])).numpy()[0]
            for u in range(a, b):
                pair_hom[k] = homography[u].astype(np.float64) @ pair_hom[k]
    return pair_flow, pair_hom


def camera_like(K, h, w, seed=0):
    """K smooth compensated flows (K,h,w,2) on a stride-4 grid of a 340x256-like frame (an odd
    width, as 85 flow columns), quantized to the stored 1/6 px, and K projective homographies
    of a hand-held camera: ~1 % zoom, ~0.5 deg roll, perspective terms ~2e-5 / px."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    flow = np.zeros((K, h, w, 2), np.float32)
    for k in range(K):
        for c in range(2):
            a = rng.normal(0, 3, 4)
            flow[k, ..., c] = a[0] * np.sin(6 * xs + a[1]) * np.cos(4 * ys + a[2]) + a[3]
    flow = np.round(np.clip(flow, -20, 20) * 6) / 6
    homs = np.tile(np.eye(3), (K, 1, 1))
    homs[:, :2, :2] += rng.normal(0, 0.01, (K, 2, 2))
    homs[:, :2, 2] = rng.normal(0, 3, (K, 2))
    homs[:, 2, :2] = rng.normal(0, 2e-5, (K, 2))
    return flow, homs.astype(np.float32)


def test_cells_equal_the_per_point_average_within_a_thousandth_of_a_pixel():
    flow, homs = camera_like(20, 64, 85)
    new, old = camera_inclusive_cells(flow, homs, STRIDE), reference_cells(flow, homs, STRIDE)
    assert new.shape == old.shape == (20, 32, 42, 2) and new.dtype == np.float32
    assert np.abs(new - old).max() < 1e-3
    affine = homs.copy()
    affine[:, 2, :2] = 0  # no curvature: the cell-centre displacement is the average, to float32
    assert np.abs(camera_inclusive_cells(flow, affine, STRIDE) - reference_cells(flow, affine, STRIDE)).max() < 1e-4


@pytest.mark.parametrize("frames", [np.arange(0, 61, 4),                        # the default stride
                                    np.minimum(3 + 3 * np.arange(16), 40) - 3,   # a short video: repeats
                                    np.array([0, 1, 3, 6, 6, 10])])               # mixed steps
def test_chained_pairs_equal_one_compose_per_pair(frames):
    flow, homs = camera_like(int(frames[-1]), 32, 42, seed=1)
    cells = flow + np.float32(0.5)  # any cell field: the chaining is what is compared
    new_flow, new_hom = chain_pairs(cells, homs, frames)
    old_flow, old_hom = reference_pairs(cells, homs, frames)
    assert new_flow.shape == (len(frames) - 1, 32, 42, 2)
    assert np.abs(new_flow - old_flow).max() < 1e-5
    assert np.abs(new_hom - old_hom).max() < 1e-9
    still = np.flatnonzero(np.diff(frames) == 0)
    assert (new_flow[still] == 0).all() and (new_hom[still] == np.eye(3)).all()


def test_a_one_frame_video_has_no_flow_to_chain():
    cells = camera_inclusive_cells(np.zeros((0, 64, 85, 2), np.float32), np.zeros((0, 3, 3), np.float32), STRIDE)
    assert cells.shape == (0, 32, 42, 2)
    flow, hom = chain_pairs(cells, np.zeros((0, 3, 3)), np.zeros(16, int))
    assert flow.shape == (15, 32, 42, 2) and (flow == 0).all() and (hom == np.eye(3)).all()
