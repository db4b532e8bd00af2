import pytest

from train.pretraining.engine import CHECKPOINT, load_checkpoint, train
from train.eval.heldout import heldout_loss

from tests.train.pretraining.test_engine import tiny_config


@pytest.mark.parametrize("target", ["pixel", "mme"])
def test_heldout_loss_compares_with_predicting_zero(tiny_shards, tmp_path, target):
    train(tiny_config(tiny_shards, tmp_path, target=target, max_steps=2), log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    a = heldout_loss(ckpt, split="", clips=6, batch_size=4)
    b = heldout_loss(ckpt, split="", clips=6, batch_size=3)
    assert a["step"] == 2 and a["clips"] == 6 and a["predict0"] > 0
    assert a["per_class"] == {"0": 6}   # the tiny set's videos are all of class 0
    assert a["ratio"] == pytest.approx(a["loss"] / a["predict0"])
    # the same clips and masks whatever the batching: the numbers agree
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["predict0"] == pytest.approx(b["predict0"], rel=1e-5)
    assert a["predict_mean"] > 0  # cross-fitted by video: it may be worse than 0 out of sample
    assert a["ratio_mean"] == pytest.approx(a["loss"] / a["predict_mean"])
    if target == "pixel":  # normalized pixels: predicting 0 costs about their unit variance
        assert 0.8 < a["predict0"] < 1.2
        # the hidden tokens by contrast: every token in one bin; the tube hides as many tokens in
        # every clip, so the share-weighted bin losses are the loss
        bins = a["by_contrast"]
        assert sum(b["share"] for b in bins) == pytest.approx(1.0)
        assert sum(b["share"] * b["loss"] for b in bins if b["share"]) == pytest.approx(a["loss"], rel=1e-4)
    else:
        assert "by_contrast" not in a


def test_token_contrast_is_the_cubes_spread_in_grey_levels():
    import torch

    from train.eval.heldout import contrast_bins, token_contrast
    from train.pretraining.targets.pixel import MEAN, STD

    levels = torch.full((1, 3, 2, 8, 16), 100.0)                     # two 8x8 tokens (tubelet 2)
    levels[..., 8:] += 10.0 * (torch.arange(8) % 2)                    # right token: columns 0 / 10 apart
    video = (levels / 255 - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)
    mask = torch.tensor([[True, True]])
    tgt = torch.randn(1, 2, 384)
    rows = token_contrast(video, tgt, torch.zeros(1, 2, 384), mask, tubelet=2, patch=8)
    assert rows[0, 0] == pytest.approx(0.0, abs=1e-3)                 # flat
    assert rows[1, 0] == pytest.approx(5.0 * (128 / 127) ** 0.5, rel=1e-3)   # +-5 levels, unbiased std
    assert torch.allclose(rows[:, 1], rows[:, 2])                       # predicting 0: the loss is predict-0's
    bins = contrast_bins(rows)
    assert [b["share"] for b in bins][:3] == [0.5, 0.0, 0.5] and bins[2]["ratio"] == pytest.approx(1.0)


def test_best_constant_is_the_quadratic_minimum():
    """`predict_mean` comes from two gradients of the loss at constant predictions: it equals
    the loss evaluated at the minimizing constant, found here by brute force on made-up
    tokens, for both losses the targets use (weighted mean, and sum per token)."""
    import torch

    from train.eval.heldout import constant_grad
    from train.pretraining.targets.common import masked_mse, token_sum

    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 10, 3, generator=gen) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([0.5, -2.0, 0.05])
    weight = torch.rand(1, 10, 3, generator=gen)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, [1, 3, 4, 8]] = True
    args = (target, weight, mask)
    for loss_fn in (masked_mse, token_sum):
        l0, g0 = constant_grad(loss_fn, 0.0, torch.Size([4, 3]), args)
        _, g1 = constant_grad(loss_fn, 1.0, torch.Size([4, 3]), args)
        a, b = (g1 - g0) / 2, -g0 / 2
        zero = loss_fn(torch.zeros(1, 4, 3), *args).item()
        assert l0 == zero                                     # the loss at the constant 0 is predict-0's
        best = zero - float((b ** 2 / a).sum())
        c = (b / a).float()
        at_c = loss_fn(c.expand(1, 4, 3), *args).item()
        assert best == pytest.approx(at_c, rel=1e-5)
        # the weighted mean of the hidden tokens per channel is that constant
        w, t = weight[mask], target[mask]
        torch.testing.assert_close(c, (w * t).sum(0) / w.sum(0), rtol=1e-5, atol=1e-6)
        assert at_c < zero and all(loss_fn((c + d).expand(1, 4, 3), *args).item() > at_c
                                   for d in (torch.tensor([0.01, 0, 0]), torch.tensor([0, -0.05, 0])))


def test_the_best_constant_is_cross_fitted_by_video():
    """One value per channel per clip: clip loss (t - c)^2 = a c^2 - 2 b c + L(0) with a = 1,
    b = t, L(0) = t^2. Two videos at 0 and 2: in-sample the best constant (1) costs 1; fit on
    the other video (2 for video 0's clips, 0 for video 1's) it costs 4, as a constant learnt
    elsewhere would. One video alone is fit in-sample."""
    import torch

    from train.eval.heldout import best_constant

    def clip(video, t):
        return (video, t * t, torch.ones(1, dtype=torch.float64), torch.full((1,), t, dtype=torch.float64))

    assert best_constant([clip(0, 0.0), clip(1, 2.0), clip(0, 0.0), clip(1, 2.0)]) == pytest.approx(4.0)
    assert best_constant([clip(0, 1.0), clip(0, 3.0)]) == pytest.approx(1.0)   # in-sample: c = 2


def test_heldout_clips_are_drawn_class_balanced():
    """A val split of 8 classes, ids sorted by name so each class's videos are contiguous (5 to 9
    videos each): 20 clips visit every class, 2 or 3 clips each, from videos spread within it."""
    from train.eval.heldout import balanced_videos, class_counts

    sizes = [5, 9, 6, 7, 5, 8, 6, 7]
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    videos = balanced_videos(labels, 20, seed=0)
    counts = class_counts([labels[v] for v in videos])
    assert list(counts) == [str(c) for c in range(8)]                      # every class appears
    assert sorted(counts.values()) == [2, 2, 2, 2, 3, 3, 3, 3]             # differ by at most 1
    assert counts == {"0": 3, "1": 3, "2": 3, "3": 3, "4": 2, "5": 2, "6": 2, "7": 2}   # round-robin in label order
    assert len(set(videos)) == 20                                         # no video twice while a class has more
    assert balanced_videos(labels, 20, seed=0) == videos                   # seeded
    assert balanced_videos(labels, 20, seed=1) != videos
    # random within a class: its 8 clips of 64 read 8 distinct of the class's 9 videos, not in id order
    class1 = [v - 5 for v in balanced_videos(labels, 64, seed=0) if labels[v] == 1]
    assert len(set(class1)) == 8 and set(class1) <= set(range(9)) and class1 != sorted(class1)
    # a class smaller than its share cycles through its videos; unlabelled videos are a class of their own
    few = balanced_videos([0, 0, 1, None], 9, seed=0)
    assert class_counts([[0, 0, 1, None][v] for v in few]) == {"0": 3, "1": 3, "none": 3}
    assert few.count(2) == 3 and few.count(3) == 3


def test_the_report_says_how_many_heldout_clips_each_class_gave():
    from train.studies.report import heldout_classes

    per_seed = [{"per_class": {"0": 2, "1": 1}}, {"per_class": {"0": 2, "1": 1}}]
    results = {"corpus": {"class_names": {"0": "translate", "1": "rotate"}},
               "methods": {"tube+pixel": {"heldout": {"per_seed": per_seed}},
                           "tube+mme": {"heldout": {"per_seed": per_seed}}}}
    assert heldout_classes(results) == ["", "Held-out clips per class (drawn class-balanced, seeded; the same for "
                                            "every run): translate 2, rotate 1."]
    results["methods"]["tube+mme"]["heldout"]["per_seed"] = [{"per_class": {"0": 1, "1": 2}}] * 2
    assert heldout_classes(results)[-1] == "- `tube+mme`: translate 1, rotate 2"
    assert heldout_classes({"corpus": {}, "methods": {"a": {"heldout": {"per_seed": [{}]}}}}) == []
