import pytest

from train.engine import CHECKPOINT, load_checkpoint, train
from train.heldout import heldout_loss

from .test_engine import tiny_config


@pytest.mark.parametrize("target", ["pixel", "mme"])
def test_heldout_loss_compares_with_predicting_zero(tiny_shards, tmp_path, target):
    train(tiny_config(tiny_shards, tmp_path, target=target, max_steps=2), log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    a = heldout_loss(ckpt, split="", clips=6, batch_size=4)
    b = heldout_loss(ckpt, split="", clips=6, batch_size=3)
    assert a["step"] == 2 and a["clips"] == 6 and a["predict0"] > 0
    assert a["ratio"] == pytest.approx(a["loss"] / a["predict0"])
    # the same clips and masks whatever the batching: the numbers agree
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["predict0"] == pytest.approx(b["predict0"], rel=1e-5)
    if target == "pixel":  # normalized pixels: predicting 0 costs about their unit variance
        assert 0.8 < a["predict0"] < 1.2
