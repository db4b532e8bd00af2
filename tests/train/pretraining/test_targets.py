import pytest
import torch

from shards.schema import HOG_BINS
from train.pretraining.config import TrainConfig
from train.pretraining.targets import TARGETS, get_target, masked_mse
from train.pretraining.targets.pixel import MEAN, STD, patchify
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
    for name in ("mme", "mme_single"):
        assert TARGETS[name].out_dim(2, 16, 6) == 4 * 6 * (2 + HOG_BINS)
        with pytest.raises(ValueError):
            TARGETS[name].out_dim(2, 16, 0)


@pytest.mark.parametrize("name", list(TARGETS))
def test_heads_add_up_to_out_dim(name):
    tgt = get_target(name)
    assert sum(h.dim for h in tgt.heads(2, 16, 4)) == tgt.out_dim(2, 16, 4)


def test_pixel_target_is_per_patch_normalized():
    video = torch.rand(1, 3, 2, 16, 16)
    norm = (video - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)
    target, _ = TARGETS["pixel"].build({"video": norm}, 2, 16)
    x = target.reshape(1, 1, 2 * 16 * 16, 3)
    assert torch.allclose(x.mean(2), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(2), torch.ones(3), atol=1e-3)
    assert torch.allclose(patchify(video, 2, 16)[0, 0, 5], video[0, :, 0, 0, 5])


def test_mme_single_weight_follows_validity_and_patch_norm():
    batch = moving_square_batch(B=1, T=2, size=16, traj_len=TRAJ_LEN)
    batch["traj"] = torch.randn(1, 1, 2, 2, TRAJ_LEN, 2)
    batch["traj_valid"] = torch.ones(1, 1, 2, 2, TRAJ_LEN, dtype=torch.bool)
    batch["traj_valid"][0, 0, 1, 1, 2] = False                       # point 3, step 2 left the frame
    target, weight = TARGETS["mme_single"].build(batch, 2, 16)
    t = target.reshape(4, TRAJ_LEN, 11)
    w = weight.reshape(4, TRAJ_LEN, 11)
    # its step 2 delta does not count; its HOG at step 2 does (p_2 was reached by step 1)
    assert w[3, 2, :2].sum() == 0 and w[3, 2, 2:].all() and w.sum() == 4 * TRAJ_LEN * 11 - 2
    assert torch.allclose(t[:, :2].mean(0), torch.zeros(2, 11), atol=1e-4)       # norm over the 4 points
    assert torch.allclose(t[:3, 2, :2].mean(0), torch.zeros(2), atol=1e-4)       # valid points only
    assert torch.allclose(t[:, 2, 2:].mean(0), torch.zeros(9), atol=1e-4)        # HOG: the 4 reached


def _translating_token(velocity=(1.5, -0.5)) -> dict:
    """One token whose 4 points all move by `velocity` px per step (a translating object), plus
    1/6 px of quantization-like jitter on one point, the kind of noise flow leaves."""
    batch = moving_square_batch(B=1, T=2, size=16, traj_len=TRAJ_LEN)
    batch["traj"] = torch.tensor(velocity).expand(1, 1, 2, 2, TRAJ_LEN, 2).clone()
    batch["traj"][0, 0, 0, 0, :, 0] += 1 / 6
    batch["traj_valid"] = torch.ones(1, 1, 2, 2, TRAJ_LEN, dtype=torch.bool)
    return batch


def test_mme_norms_keep_or_drop_a_translation():
    """`points` (MME's PatchStd, here also on HOG) centres each (step, channel) over the 4 points: a token translating as one
    keeps only the jitter, blown up to unit variance; `motion` keeps the deltas, scaled by one
    number per batch; `token` standardizes the token's position part as a whole, so x against y
    survives."""
    batch = _translating_token()
    pos = {}
    for norm in TARGETS["mme_single"].norms:
        target, weight = TARGETS["mme_single"].build(batch, 2, 16, norm=norm)
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
    assert [get_target(n).norm() for n in ("pixel", "hog", "mme", "mme_single")] == \
        ["channel", "token", "points", "points"]
    batch = moving_square_batch(B=2, T=4, size=32, traj_len=TRAJ_LEN)
    for name in ("mme", "mme_single"):
        assert torch.equal(TARGETS[name].build(batch, 2, 16)[0], TARGETS[name].build(batch, 2, 16, norm="points")[0])
    with pytest.raises(ValueError, match="no normalization 'motion'"):
        get_target("pixel").norm("motion")
    with pytest.raises(ValueError, match="known: points, token, motion"):
        TrainConfig(target="mme_single", target_norm="pixels").validate()
    with pytest.raises(ValueError, match="known: points, none"):
        TrainConfig(target="mme", target_norm="motion").validate()
    TrainConfig(target="mme_single", target_norm="motion").validate()
    assert TrainConfig(target="mme_single").ratio == TrainConfig(target="mme").ratio == 0.7


def test_masked_mse_ignores_visible_and_zero_weight():
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, False, True]])
    weight = torch.ones(1, 3, 2)
    weight[0, 2, 1] = 0
    pred = torch.tensor([[[1.0, 1.0], [5.0, 100.0]]])
    assert masked_mse(pred, target, weight, mask).item() == pytest.approx((1 + 1 + 25) / 3)


# ---- mme: MME's two heads, weights and norms (XinyuSun/MME pretrain/engine.py, run.py, model.py) ----

def _reference_mme_loss(pred_hog, pred_traj, hog_label, traj_label, traj_mask, num_masked, L, alpha=0.1):
    """MME's engine.py loss for traj_varient 'VolumeHOG', written out as there (one sample):
    loss_1 = MSE(traj).sum(-1) * traj_mask * 32 * traj_loss_scale / C;  loss_2 = MSE(hog) x alpha per
    step, mean over steps; each summed and / num_masked; (loss_1 + loss_2) / 2."""
    a = torch.full((L,), alpha)
    a[0] = 1
    loss_1 = ((pred_traj - traj_label) ** 2).sum(-1) * traj_mask * 32 * 1 / traj_label.shape[-1]
    loss_2 = ((pred_hog - hog_label) ** 2 * a).mean(-1)        # (..., values, L): steps last
    return (loss_1.sum() / num_masked + loss_2.sum() / num_masked) / 2


def test_mme_loss_terms_and_weights_as_cited():
    from train.pretraining.targets import mme

    L = TRAJ_LEN
    assert (mme.TRAJ_DIV, mme.TRAJ_GAIN, mme.TRAJ_LOSS_SCALE, mme.HOG_ALPHA, mme.HEAD_HIDDEN) == (20, 32, 1, 0.1, 512)
    assert [(h.name, h.dim, h.hidden, h.act) for h in mme.heads(2, 16, L)] == \
        [("traj", 4 * L * 2, 512, "tanh"), ("hog", 4 * L * 9, 512, "sigmoid")]
    # one clip of 2 tokens (16 x 32 px): token 0 all valid, token 1 with its point 0 leaving at step 1
    batch = moving_square_batch(B=1, T=2, size=16, traj_len=L)
    gen = torch.Generator().manual_seed(0)
    batch["traj"] = torch.randn(1, 1, 2, 4, L, 2, generator=gen) * 5
    batch["traj_hog"] = torch.rand(1, 1, 2, 4, L, 9, generator=gen) * 4
    valid = torch.ones(1, 1, 2, 4, L, dtype=torch.bool)
    valid[0, 0, 0, 2, 1:] = False                                   # token 1, point 0: steps 1, 2 invalid
    batch["traj_valid"] = valid
    target, weight = mme.build(batch, 2, 16)
    assert target.shape == (1, 2, 4 * L * 11)
    ct = 4 * L * 2
    # trajectory: / 20, then per (step, coordinate) over the 4 points with the unbiased std
    d = batch["traj"][0, 0, :, :2].reshape(4, L, 2) / 20   # token 0: cells (0..1, 0..1)
    expected = (d - d.mean(0)) / (d.std(0, unbiased=True) + 1e-6)
    assert torch.allclose(target[0, 0, :ct].reshape(4, L, 2), expected, atol=1e-5)
    # HOG: no per-token normalization, only their units
    h0 = batch["traj_hog"][0, 0, :, :2].reshape(4, L, 9)
    assert torch.allclose(target[0, 0, ct:].reshape(4, L, 9), h0 * mme.HOG_SCALE, atol=1e-6)
    assert mme.HOG_SCALE == pytest.approx(8 / (255 * 0.226))
    # weights: 32 x 1 / dims / 2 on valid trajectory values, alpha_l / L / 2 on reached HOG values
    w1 = weight[0, 1, :ct].reshape(4, L, 2)
    assert torch.allclose(w1[1:], torch.full((3, L, 2), 32 / ct / 2))
    assert w1[0, 0].eq(32 / ct / 2).all() and not w1[0, 1:].any()
    wh = weight[0, 1, ct:].reshape(4, L, 9)
    steps = torch.tensor([1.0] + [0.1] * (L - 1)) / L / 2
    assert torch.allclose(wh[1:], steps[None, :, None].expand(3, L, 9))
    assert torch.allclose(wh[0, :2], steps[:2, None].expand(2, 9)) and not wh[0, 2:].any()  # p_2 never reached

    # the loss on token 0 (all valid, as the reference's loss mask has it) equals the reference's
    mask = torch.tensor([[True, False]])
    pred = torch.randn(1, 1, 4 * L * 11, generator=gen)
    ours = TARGETS["mme"].loss(pred, target, weight, mask)
    p_traj = pred[0, 0, :ct].reshape(4, L, 2)
    p_hog = pred[0, 0, ct:].reshape(4, L, 9)
    ref = _reference_mme_loss(p_hog.permute(0, 2, 1), p_traj.reshape(-1), (h0 * mme.HOG_SCALE).permute(0, 2, 1),
                              target[0, 0, :ct], 1.0, 1, L)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    # a known number: all-zero targets, prediction 1 everywhere -> (32 + 9 x 4 x (1 + 0.1 (L-1)) / L) / 2
    zero = torch.zeros_like(target[:, :1])
    ones = torch.ones(1, 1, 4 * L * 11)
    known = (32 + 9 * 4 * (1 + 0.1 * (L - 1)) / L) / 2
    assert TARGETS["mme"].loss(ones, zero, weight[:, :1], mask[:, :1]).item() == pytest.approx(known, rel=1e-6)


# ---- every target is a real signal at every geometry a shipped config trains ----

def _shipped_patch_sizes() -> list[int]:
    from train.pretraining.config import REPO_ROOT, load_file

    files = sorted((REPO_ROOT / "train" / "configs").glob("*.yaml"))
    study = {p for f in files for p in [load_file(f).get("train", {}).get("patch_size")] if p}  # the study's runs
    return sorted({int(load_file(f).get("patch_size", TrainConfig.patch_size)) for f in files} | study)


def _channel_groups(name: str, target: torch.Tensor, weight: torch.Tensor, patch: int, traj_len: int) -> dict:
    """The target's values that count (weight > 0) per channel group: MME's trajectory and HOG parts apart."""
    points = (patch // 8) ** 2
    if name == "mme":
        cut = points * traj_len * 2
        parts = {"trajectory": (target[..., :cut], weight[..., :cut]), "hog": (target[..., cut:], weight[..., cut:])}
    elif name == "mme_single":
        t, w = target.unflatten(-1, (points, traj_len, 2 + HOG_BINS)), weight.unflatten(-1, (points, traj_len, -1))
        parts = {"trajectory": (t[..., :2], w[..., :2]), "hog": (t[..., 2:], w[..., 2:])}
    else:
        parts = {"all": (target, weight)}
    return {k: t[w > 0] for k, (t, w) in parts.items()}


@pytest.mark.parametrize("patch", _shipped_patch_sizes())
@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_varies_at_every_shipped_patch_size(tiny_shards, name, patch):
    """Real clips (tiny_shards: a moving square, some videos panned); every normalization the
    config accepts at this patch size gives values that vary within each channel group."""
    from torch.utils.data import default_collate

    from train.clips.dataset import ClipDataset, ClipSpec

    assert 8 in _shipped_patch_sizes() and 16 in _shipped_patch_sizes()   # the study's and the recipes'
    tgt = get_target(name)
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=max(32, 2 * patch), flip=False, needs=tgt.needs)
    ds = ClipDataset(tiny_shards, spec, seed=0)
    batch = default_collate([ds[(g, g % len(ds))] for g in range(len(ds))])
    accepted = 0
    for norm in tgt.norms:
        try:
            TrainConfig(target=name, target_norm=norm, patch_size=patch, input_size=spec.input_size).validate()
        except ValueError:
            continue  # refused: test_a_constant_normalization_is_refused_in_one_line
        accepted += 1
        target, weight = tgt.build(batch, 2, patch, norm=norm)
        for group, values in _channel_groups(name, target, weight, patch, ds.traj_len).items():
            assert values.numel() > 1 and values.std() > 1e-2, (norm, group, values.unique()[:5])
    assert accepted  # every target has a normalization that works at every shipped patch size


def test_a_constant_normalization_is_refused_in_one_line(tmp_path):
    from shards.cli import UsageError

    from shards.cli import ArgumentParser as Parser
    from train.pretraining.config import add_arguments, from_args

    line = ("target 'mme': target_norm 'points' needs at least 2 tracked points per token; patch_size 8 gives 1 "
            "(one value standardized is always 0): use patch_size >= 16, or target_norm 'none', or norm_target false")
    with pytest.raises(ValueError) as e:
        TrainConfig(target="mme", patch_size=8, input_size=64).validate()
    assert str(e.value) == line
    with pytest.raises(ValueError, match="target_norm 'token' or 'motion'"):
        TrainConfig(target="mme_single", patch_size=8, input_size=64).validate()
    # on the command line: the one line, exit 2
    p = Parser(prog="pretrain.py")
    add_arguments(p)
    with pytest.raises(UsageError) as e:
        from_args(p.parse_args(["--target", "mme", "--patch-size", "8", "--input-size", "64"]))
    assert str(e.value) == line and "\n" not in str(e.value)
    # what the refusal offers is accepted, and MME's default geometry is unchanged
    for ok in (dict(target_norm="none"), dict(norm_target=False), dict(patch_size=16)):
        TrainConfig(**{**dict(target="mme", patch_size=8, input_size=64), **ok}).validate()
    # a study whose runs would train on it is refused before anything runs
    from train.study import StudyConfig

    with pytest.raises(ValueError, match="target 'mme': target_norm 'points'"):
        StudyConfig(shards="/nowhere", methods=("tube+mme",), train={"patch_size": 8, "input_size": 64}).validate()
    StudyConfig(shards="/nowhere", methods=("tube+mme",), train={"patch_size": 8, "input_size": 64},
                target_norms={"mme": "none"}).validate()
