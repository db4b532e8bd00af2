"""`train/pretrain.py --init`: a run that starts from pretrained weights in VideoMAE's layout starts
lower than one from random weights, on the same clips and masks."""
import torch

from tests.train.checkpoints import layouts
from tests.train.pretraining.test_engine import tiny_config
from train.pretrain import resolve_config
from train.pretraining.engine import CHECKPOINT, load_checkpoint, train


def test_init_from_a_videomae_checkpoint_starts_lower_than_random(tiny_shards, tmp_path):
    # raw pixel targets: 20 steps learn them well past a random start (loss ~0.08 -> ~0.03 on 2 cores, ~3 s)
    same = dict(norm_target=False, base_lr=0.5)
    train(tiny_config(tiny_shards, tmp_path / "pre", max_steps=20, **same), log=lambda s: None)
    state = load_checkpoint(tmp_path / "pre" / CHECKPOINT)["model"]
    state["decoder_embed.bias"] = torch.zeros_like(state["decoder_embed.bias"])   # VideoMAE's has none
    torch.save({"model": layouts.videomae_pretrain(state)}, tmp_path / "videomae.pth")

    lines = []
    started = train(tiny_config(tiny_shards, tmp_path / "init", init=str(tmp_path / "videomae.pth"),
                                mask="random", seed=1, **same), log=lines.append)
    random = train(tiny_config(tiny_shards, tmp_path / "random", mask="random", seed=1, **same), log=lambda s: None)
    # 0.052 against 0.184 (2026-12-07): half is a wide margin
    assert started["first_loss"] < 0.5 * random["first_loss"], (started["first_loss"], random["first_loss"])
    log = "\n".join(lines)
    assert f"init: from {tmp_path / 'videomae.pth'} (videomae-pretrain)" in log
    assert "init: decoder: kept from the file" in log and "init: decoder head: kept from the file" in log
    assert load_checkpoint(tmp_path / "init" / CHECKPOINT)["step"] == 1          # a fresh step count


def test_init_is_a_flag_and_a_config_field(tmp_path):
    cfg, _ = resolve_config(["--init", str(tmp_path / "w.pth"), "--out", str(tmp_path / "run")])
    assert cfg.init == str(tmp_path / "w.pth")
