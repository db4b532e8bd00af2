import numpy as np
import pytest
import torch

from train.probe import POOLS, bootstrap_interval, choose_weight_decay, fit_logistic, pool


def test_poolings_keep_what_they_say():
    grid = (2, 2, 2)                                                   # t, h, w: N = 8 tokens
    tokens = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1)     # token n has feature n
    assert pool(tokens, grid, "mean").tolist() == [[3.5]]
    assert pool(tokens, grid, "time").tolist() == [[1.5, 5.5]]         # slices {0..3}, {4..7}
    assert pool(tokens, grid, "quadrants").tolist() == [[0, 1, 2, 3, 4, 5, 6, 7]]  # 1x1 quadrants
    assert pool(tokens, grid, "tokens").shape == (1, 8)
    big = torch.randn(3, 4 * 4 * 6, 5)
    assert {k: pool(big, (4, 4, 6), k).shape[1] for k in POOLS} == {"mean": 5, "time": 20, "quadrants": 80,
                                                                   "tokens": 480}
    with pytest.raises(KeyError, match="known: mean, time, quadrants, tokens"):
        pool(big, (4, 4, 6), "max")


def test_motion_that_averages_out_is_seen_by_time_pooling_only():
    # class 0: a feature rises over time, class 1: it falls; the mean over time is the same
    rng = np.random.default_rng(0)
    n, grid = 40, (4, 1, 1)
    ramp = torch.linspace(-1, 1, 4)
    y = torch.tensor([k % 2 for k in range(n)])
    tokens = torch.where(y[:, None] == 0, ramp, -ramp)[..., None] + 0.1 * torch.from_numpy(
        rng.standard_normal((n, 4, 1))).float()
    for how, expect in (("mean", 0.75), ("time", 0.99)):
        x = pool(tokens, grid, how)
        head = fit_logistic(x, y, 2, 1e-3)
        acc = (head(x).argmax(1) == y).float().mean().item()
        assert (acc < expect) if how == "mean" else (acc > expect), (how, acc)


def test_weight_decay_by_cross_validation_prefers_a_penalty_on_noise_dimensions():
    rng = np.random.default_rng(1)
    n, k = 60, 200                                         # more dimensions than samples
    y = torch.tensor(rng.integers(0, 2, n))
    x = torch.from_numpy(rng.standard_normal((n, k))).float()
    x[:, 0] += 1.5 * (2 * y - 1).float()                   # one informative dimension
    groups = np.arange(n) // 2                             # two clips per video
    best, scores = choose_weight_decay(x, y, groups, 2, (1e-4, 1e-1, 1e1, 1e3))
    assert best in (1e1, 1e3) and scores[best] < scores[1e-4]
    again, _ = choose_weight_decay(x, y, groups, 2, (1e-4, 1e-1, 1e1, 1e3))
    assert again == best                                   # deterministic


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_videos():
    small = np.array([1, 0] * 25)
    large = np.array([1, 0] * 500)
    lo, hi = bootstrap_interval(small)
    lo2, hi2 = bootstrap_interval(large)
    assert lo < 0.5 < hi and lo2 < 0.5 < hi2
    assert (hi2 - lo2) < 0.35 * (hi - lo)                  # sqrt(20) ~ 4.5x narrower
    assert abs((hi2 - lo2) - 2 * 1.96 * 0.5 / np.sqrt(1000)) < 0.01
