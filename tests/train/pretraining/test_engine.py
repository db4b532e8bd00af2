import json

import pytest
import torch

from train.pretraining.config import TrainConfig
from train.pretraining.engine import CHECKPOINT, load_checkpoint, train
from train.pretraining.masks import MASKS
from train.pretraining.targets import TARGETS


def tiny_config(shards, out, **kw) -> TrainConfig:
    base = dict(shards=str(shards), out=str(out), model="vit_pico", num_frames=4, sampling_rate=2,
                input_size=32, batch_size=2, max_steps=1, warmup_steps=1, warmup_epochs=0.0,
                num_workers=0, device="cpu", log_every=1, save_every=1000, base_lr=1e-2)
    base.update(kw)
    return TrainConfig(**base).validate()


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("mask", list(MASKS))
def test_every_mask_target_pair_trains(tiny_shards, tmp_path, mask, target):
    summary = train(tiny_config(tiny_shards, tmp_path, mask=mask, target=target), log=lambda s: None)
    assert summary["step"] == 1 and summary["last_loss"] > 0
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert {"step", "loss", "lr", "clips_per_s", "data_time", "step_time"} <= set(row)


def test_resume_gives_the_same_weights_as_a_straight_run(tiny_shards, tmp_path):
    kw = dict(mask="mgmae", target="mme", max_steps=6, warmup_steps=2, seed=3)
    train(tiny_config(tiny_shards, tmp_path / "straight", **kw), log=lambda s: None)
    # leave after 3 of 6 steps, then resume from that checkpoint
    train(tiny_config(tiny_shards, tmp_path / "half", stop_at=3, **kw), log=lambda s: None)
    resumed = train(tiny_config(tiny_shards, tmp_path / "half", resume="auto", **kw), log=lambda s: None)
    assert resumed["step"] == 6
    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT)
    b = torch.load(tmp_path / "half" / CHECKPOINT, weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["config"]["mask"] == "mgmae" and isinstance(a["config"], dict)


def test_keep_every_keeps_each_steps_checkpoint_and_a_resume_goes_on_keeping(tiny_shards, tmp_path):
    kw = dict(mask="tube", target="pixel", max_steps=6, warmup_steps=1, seed=2, keep_every=2, save_every=1000)
    train(tiny_config(tiny_shards, tmp_path, stop_at=3, **kw), log=lambda s: None)
    assert sorted(p.name for p in tmp_path.glob("ckpt_*.pt")) == ["ckpt_2.pt"]
    train(tiny_config(tiny_shards, tmp_path, resume="auto", **kw), log=lambda s: None)
    kept = {p.name: load_checkpoint(p)["step"] for p in tmp_path.glob("ckpt_*.pt")}
    assert kept == {"ckpt_2.pt": 2, "ckpt_4.pt": 4, "ckpt_6.pt": 6}
    last = load_checkpoint(tmp_path / CHECKPOINT)
    assert last["step"] == 6 and all(torch.equal(last["model"][k], v)
                                     for k, v in load_checkpoint(tmp_path / "ckpt_6.pt")["model"].items())
    early = load_checkpoint(tmp_path / "ckpt_2.pt")["model"]   # its own file: later saves did not touch it
    assert any(not torch.equal(early[k], v) for k, v in last["model"].items())
    with pytest.raises(ValueError, match="keep_every -1 >= 0"):
        tiny_config(tiny_shards, tmp_path, keep_every=-1)


def test_a_checkpoint_from_before_the_loader_made_the_masks_resumes(tiny_shards, tmp_path):
    # checkpoints written before the loader made the masks also hold the main process's mask generator: ignored
    kw = dict(mask="mgm", target="pixel", max_steps=4, warmup_steps=1, seed=1)
    train(tiny_config(tiny_shards, tmp_path, stop_at=2, **kw), log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert "mask" not in ckpt["rng"]
    ckpt["rng"]["mask"] = torch.Generator().manual_seed(0).get_state()
    torch.save(ckpt, tmp_path / CHECKPOINT)
    assert train(tiny_config(tiny_shards, tmp_path, resume="auto", **kw), log=lambda s: None)["step"] == 4


def test_non_finite_loss_stops_loudly(tiny_shards, tmp_path, monkeypatch):
    from dataclasses import replace

    nan = replace(TARGETS["pixel"], loss=lambda *a: torch.tensor(float("nan"), requires_grad=True))
    monkeypatch.setitem(TARGETS, "pixel", nan)
    with pytest.raises(RuntimeError, match="non-finite"):
        train(tiny_config(tiny_shards, tmp_path), log=lambda s: None)


@pytest.mark.parametrize("target", ["pixel", "mme", "mme_single"])
def test_overfits_a_tiny_batch(tiny_shards, target):
    from train.clips.dataset import ClipDataset, ClipSpec, make_loader
    from train.pretraining.masks import get_mask
    from train.pretraining.model import build_model
    from train.pretraining.targets import get_target

    torch.manual_seed(0)
    tgt = get_target(target)
    ds = ClipDataset(tiny_shards, ClipSpec(num_frames=4, sampling_rate=2, input_size=32, needs=tgt.needs), seed=0)
    batch = next(iter(make_loader(ds, 2, num_workers=0)))
    grid = (2, 2, 2)
    mask = get_mask("tube")(batch, grid, 0.5, torch.Generator().manual_seed(0))
    target_values, weight = tgt.build(batch, 2, 16)
    model = build_model("vit_pico", grid, tgt.heads(2, 16, ds.traj_len))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(80):
        loss = tgt.loss(model(batch["video"], mask), target_values, weight, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_an_mme_checkpoint_keeps_its_two_heads_for_evaluation(tiny_shards, tmp_path):
    from train.eval.classifier import load_encoder
    from train.eval.config import EvalConfig

    train(tiny_config(tiny_shards, tmp_path, target="mme"), log=lambda s: None)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert [h["name"] for h in ckpt["heads"]] == ["traj", "hog"] and "head.heads.hog.0.weight" in ckpt["model"]
    mae, _, _ = load_encoder(EvalConfig(checkpoint=str(tmp_path / CHECKPOINT), shards=str(tiny_shards)))
    assert set(mae.head.heads) == {"traj", "hog"}


def test_demo_shards_follow_the_data_dir(monkeypatch, tmp_path):
    """The trainer reads the demo shards where the extractor writes them ($MOTION_MAE_DATA)."""
    from train.pretraining.config import DEMO_SHARDS, REPO_ROOT, resolve_shards

    monkeypatch.delenv("MOTION_MAE_DATA", raising=False)
    assert resolve_shards(DEMO_SHARDS) == REPO_ROOT / "data" / "shards" / "demo"
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path))
    assert resolve_shards(DEMO_SHARDS) == tmp_path / "shards" / "demo"
    assert resolve_shards("runs/x") == REPO_ROOT / "runs" / "x"
