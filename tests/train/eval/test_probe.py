import numpy as np
import pytest
import torch

from train.eval.probe import (POOLS, bootstrap_interval, choose_weight_decay, fit_logistic, fit_probe, parse_weight_decay,
                         pick_penalty, pool, video_metrics, video_top1)


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
    best, losses, top1 = choose_weight_decay(x, y, groups, 2, (1e-4, 1e-1, 1e1, 1e3))
    assert best != 1e-4 and losses[best] < losses[1e-4] and top1[best] >= max(top1.values()) - 0.07
    again = choose_weight_decay(x, y, groups, 2, (1e-4, 1e-1, 1e1, 1e3))
    assert again == (best, losses, top1)                   # deterministic


def test_penalty_by_top1_then_log_loss():
    # the log-losses of a random-init encoder's 3-fold CV on the study corpus (6144 clips, measured):
    # lowest at the strongest penalty (2.088, about ln 8: the prior), where the probe scored 0.135 on
    # val, against 0.214 at 0.01. The top-1 values are illustrative. Top-1 first (within one standard
    # error of the best), then the log-loss
    losses = {1e-4: 3.131, 1e-3: 2.387, 1e-2: 2.107, 1e-1: 2.092, 1.0: 2.088}
    top1 = {1e-4: 0.171, 1e-3: 0.193, 1e-2: 0.205, 1e-1: 0.163, 1.0: 0.136}
    assert min(losses, key=losses.get) == 1.0
    se = (0.205 * 0.795 / 3072) ** 0.5                     # 3072 train videos (2 clips each): 0.0073
    assert pick_penalty(losses, top1, se) == 1e-2
    # top-1 within one standard error: the log-loss decides
    assert pick_penalty(losses, {**top1, 1e-1: 0.202}, se) == 1e-1
    # exact ties on both: the stronger penalty
    assert pick_penalty({0.1: 1.0, 1.0: 1.0}, {0.1: 0.5, 1.0: 0.5}, 0.05) == 1.0


def test_the_one_se_rule_counts_videos_not_clips():
    # 4 videos, 3 right: top-1 0.75, SE sqrt(0.75 x 0.25 / 4) = 0.2165; the same outcome on 2 clips of
    # each video is no more evidence, so the SE stays (over 8 clips as if independent it would be 0.153)
    correct, videos = np.array([1, 0, 1, 1]), np.array([3, 5, 7, 9])
    assert video_top1(correct, videos) == pytest.approx((0.75, 0.21651), abs=1e-5)
    assert video_top1(np.repeat(correct, 2), np.repeat(videos, 2)) == pytest.approx((0.75, 0.21651), abs=1e-5)
    # a video half right counts 0.5: top-1 (1 + 0.5 + 0) / 3, SE sqrt(var(1, 0.5, 0) / 3)
    assert video_top1(np.array([1, 1, 1, 0, 0, 0]), np.array([0, 0, 1, 1, 2, 2])) == \
        pytest.approx((0.5, (1 / 6 / 3) ** 0.5), abs=1e-9)


def test_fit_probe_chooses_a_sane_penalty_and_is_deterministic():
    # 3 classes, 90 train videos x 2 clips that share their video's noise, 20 dimensions of which 2
    # carry the class: the unpenalized end of the grid fits each video's noise (which cross-validation
    # by video exposes), the strong end shrinks the signal away; the choice is interior
    rng = np.random.default_rng(2)
    videos, k = 90, 20
    y_video = np.arange(videos) % 3
    centre = rng.standard_normal((videos, k))
    def clips(y, base):
        x = base[:, None] + 0.3 * rng.standard_normal((len(y), 2, k))
        x[..., 0] += 3.0 * (y == 1)[:, None]
        x[..., 1] += 3.0 * (y == 2)[:, None]
        return torch.from_numpy(x).float()
    x_train = clips(y_video, centre)                                    # (V,2,K)
    y_val = np.arange(300) % 3
    x_val = clips(y_val, rng.standard_normal((300, k)))
    y_clips = torch.from_numpy(np.repeat(y_video, 2))
    groups = np.repeat(np.arange(videos), 2)
    fit = fit_probe(x_train.reshape(-1, k), y_clips, groups, x_val, 3)
    assert fit["weight_decay"] == 1e-2 and fit["val_probs"].shape == (300, 2, 3)
    assert fit["cv_loss"][1e-2] == pytest.approx(0.433, abs=0.01)            # ln 3 = 1.099 at chance
    assert fit["cv_loss"][1e-4] > 0.8 and fit["cv_loss"][1.0] > 0.8
    m = video_metrics(fit["val_probs"].mean(1), torch.from_numpy(y_val), k=2)
    assert m["top1"] == pytest.approx(0.85, abs=0.01) and m["top1_ci95"][0] <= m["top1"] <= m["top1_ci95"][1] and m["top5"] >= m["top1"]
    again = fit_probe(x_train.reshape(-1, k), y_clips, groups, x_val, 3)
    assert torch.equal(again["val_probs"], fit["val_probs"]) and again["cv_loss"] == fit["cv_loss"]
    assert again["cv_top1"] == fit["cv_top1"] and fit["cv_top1"][1e-2] >= max(fit["cv_top1"].values()) - 0.02
    fixed = fit_probe(x_train.reshape(-1, k), y_clips, groups, x_val, 3, weight_decay=0.5)
    assert fixed["weight_decay"] == 0.5 and fixed["cv_loss"] is None and fixed["cv_top1"] is None


def test_video_metrics_interval_over_videos():
    scores = torch.eye(4).repeat(25, 1)                                # 100 videos, 4 classes
    labels = torch.arange(4).repeat(25)
    labels[:30] = (labels[:30] + 1) % 4                                # 30 wrong
    m = video_metrics(scores, labels, k=5)
    assert m["top1"] == pytest.approx(0.7) and m["top5"] == 1.0 and m["videos"] == 100
    lo, hi = m["top1_ci95"]
    assert 0.60 < lo < 0.7 < hi < 0.80                                 # ~ 0.7 +- 1.96 * sqrt(0.21 / 100)
    with pytest.raises(ValueError, match="'cv' or a number"):
        parse_weight_decay("-1")
    assert parse_weight_decay("CV") == "cv" and parse_weight_decay("0.1") == 0.1
