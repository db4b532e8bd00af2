import pytest
import torch

from shards.schema import HOG_BINS
from train.config import TrainConfig
from train.targets import TARGETS, get_target, masked_mse
from train.targets.pixel import MEAN, STD, patchify
from tests.train.helpers import moving_square_batch

TRAJ_LEN = 3


@pytest.mark.parametrize("name", list(TARGETS))
def test_shapes_match_out_dim(name):
    batch = moving_square_batch(B=2, T=4, size=32, traj_len=TRAJ_LEN)
    tgt = get_target(name)
    target, weight = tgt.build(batch, 2, 16)
    assert target.shape == (2, 2 * 2 * 2, tgt.out_dim(2, 16, TRAJ_LEN)) == weight.shape
    assert torch.isfinite(target).all()


def test_out_dims_derived_from_schema():
    assert TARGETS["pixel"].out_dim(2, 16) == 1536  # VideoMAE's cube
    assert TARGETS["hog"].out_dim(2, 16) == 2 * 4 * HOG_BINS
    assert TARGETS["mme"].out_dim(2, 16, 6) == 4 * 6 * (2 + HOG_BINS)
    with pytest.raises(ValueError):
        TARGETS["mme"].out_dim(2, 16, 0)


def test_pixel_target_is_per_patch_normalized():
    video = torch.rand(1, 3, 2, 16, 16)
    norm = (video - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)
    target, _ = TARGETS["pixel"].build({"video": norm}, 2, 16)
    x = target.reshape(1, 1, 2 * 16 * 16, 3)
    assert torch.allclose(x.mean(2), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(2), torch.ones(3), atol=1e-3)
    assert torch.allclose(patchify(video, 2, 16)[0, 0, 5], video[0, :, 0, 0, 5])


def test_mme_weight_follows_validity_and_patch_norm():
    batch = moving_square_batch(B=1, T=2, size=16, traj_len=TRAJ_LEN)
    batch["traj"] = torch.randn(1, 1, 2, 2, TRAJ_LEN, 2)
    batch["traj_valid"] = torch.ones(1, 1, 2, 2, TRAJ_LEN, dtype=torch.bool)
    batch["traj_valid"][0, 0, 1, 1, 2] = False                       # point 3, step 2 left the frame
    target, weight = TARGETS["mme"].build(batch, 2, 16)
    t = target.reshape(4, TRAJ_LEN, 11)
    w = weight.reshape(4, TRAJ_LEN, 11)
    assert w[3, 2].sum() == 0 and w.sum() == (4 * TRAJ_LEN - 1) * 11
    assert torch.allclose(t[:, :2].mean(0), torch.zeros(2, 11), atol=1e-4)       # norm over the 4 points
    assert torch.allclose(t[:3, 2].mean(0), torch.zeros(11), atol=1e-4)          # valid points only


def _translating_token(velocity=(1.5, -0.5)) -> dict:
    """One token whose 4 points all move by `velocity` px per step (a translating object), plus
    1/6 px of quantization-like jitter on one point, the kind of noise flow leaves."""
    batch = moving_square_batch(B=1, T=2, size=16, traj_len=TRAJ_LEN)
    batch["traj"] = torch.tensor(velocity).expand(1, 1, 2, 2, TRAJ_LEN, 2).clone()
    batch["traj"][0, 0, 0, 0, :, 0] += 1 / 6
    batch["traj_valid"] = torch.ones(1, 1, 2, 2, TRAJ_LEN, dtype=torch.bool)
    return batch


def test_mme_norms_keep_or_drop_a_translation():
    """`points` (MME's code) centres each (step, channel) over the 4 points: a token translating as one
    keeps only the jitter, blown up to unit variance; `motion` keeps the deltas, scaled by one
    number per batch; `token` standardizes the token's position part as a whole, so x against y
    survives."""
    batch = _translating_token()
    pos = {}
    for norm in TARGETS["mme"].norms:
        target, weight = TARGETS["mme"].build(batch, 2, 16, norm=norm)
        t = target.reshape(4, TRAJ_LEN, 2 + HOG_BINS)
        assert weight.all() and torch.isfinite(t).all()
        assert torch.allclose(t[..., 2:].mean(), torch.zeros(()), atol=1e-4)  # HOG centred in every norm
        pos[norm] = t[..., :2]
    # points: y is the same for the 4 points -> 0; x is the jitter alone, +-sqrt(3) / 1 pattern
    assert torch.allclose(pos["points"][..., 1], torch.zeros(4, TRAJ_LEN), atol=1e-3)
    assert torch.allclose(pos["points"][0, :, 0], torch.full((TRAJ_LEN,), 3 ** 0.5), atol=1e-3)
    # motion: the deltas over their RMS; the 3 points without jitter stay (1.5, -0.5) / rms
    d = batch["traj"][0, 0].reshape(4, TRAJ_LEN, 2)
    rms = d.pow(2).mean().sqrt()
    assert torch.allclose(pos["motion"], d / rms, atol=1e-5)
    assert torch.allclose(pos["motion"][1:], (torch.tensor([1.5, -0.5]) / rms).expand(3, TRAJ_LEN, 2), atol=1e-5)
    # token: one mean and std for the token's 4 x L x 2 values; x above y at every point
    assert torch.allclose(pos["token"].mean(), torch.zeros(()), atol=1e-4)
    assert torch.allclose(pos["token"].std(unbiased=False), torch.ones(()), atol=1e-3)
    assert (pos["token"][..., 0] > 0.9).all() and (pos["token"][..., 1] < -0.9).all()


def test_default_norm_is_mme_patch_norm_and_unknown_names_fail():
    assert [get_target(n).norm() for n in ("pixel", "hog", "mme")] == ["channel", "token", "points"]
    batch = moving_square_batch(B=2, T=4, size=32, traj_len=TRAJ_LEN)
    assert torch.equal(TARGETS["mme"].build(batch, 2, 16)[0], TARGETS["mme"].build(batch, 2, 16, norm="points")[0])
    with pytest.raises(ValueError, match="no normalization 'motion'"):
        get_target("pixel").norm("motion")
    with pytest.raises(ValueError, match="known: points, token, motion"):
        TrainConfig(target="mme", target_norm="pixels").validate()
    TrainConfig(target="mme", target_norm="motion").validate()


def test_masked_mse_ignores_visible_and_zero_weight():
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, False, True]])
    weight = torch.ones(1, 3, 2)
    weight[0, 2, 1] = 0
    pred = torch.tensor([[[1.0, 1.0], [5.0, 100.0]]])
    assert masked_mse(pred, target, weight, mask).item() == pytest.approx((1 + 1 + 25) / 3)
