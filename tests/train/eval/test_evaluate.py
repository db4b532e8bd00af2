"""Linear probe, fine-tuning and encoder export on a tiny labelled shard set.

Videos come from `conftest.synthetic_video` (a textured background, a 16 px square); the label
is a function of the stored motion: 1 when any motion vector is non-zero, 0 for a still scene.
One video per split has no label and must be skipped and counted.
"""
import json
import os
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from shards.writer import open_writer
from tests.train.conftest import synthetic_video
from train import evaluate
from train.pretraining.config import REPO_ROOT, TrainConfig
from train.pretraining.engine import CHECKPOINT, load_checkpoint, train
from train.eval.classifier import VideoClassifier
from train.eval.probe import WD_GRID
from train.eval.evaluation import finetune, linear_probe, topk_accuracy
from train.eval.probe import fit_logistic as fit_linear
from train.eval.probe import standardize
from train.export import export
from train.eval.finetune import layer_groups
from train.pretraining.model import MODELS, build_model

VIDEOS = {  # id -> (split, camera pan, object velocity), px per frame
    "train_still_a": ("train", (0, 0), (0, 0)),
    "train_still_b": ("train", (0, 0), (0, 0)),
    "train_move_a": ("train", (0, 0), (1, 0)),
    "train_move_b": ("train", (1, 0), (0, 1)),
    "train_move_c": ("train", (0, 0), (-1, 1)),
    "train_unlabelled": ("train", (0, 0), (1, 1)),
    "val_still_a": ("val", (0, 0), (0, 0)),
    "val_still_b": ("val", (0, 0), (0, 0)),
    "val_move_a": ("val", (0, 0), (-1, 0)),
    "val_move_b": ("val", (0, 1), (1, 1)),
    "val_unlabelled": ("val", (0, 0), (0, 0)),
}
TINY = dict(num_frames=4, sampling_rate=2, input_size=32, batch_size=2, num_workers=0, device="cpu")


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory):
    path = tmp_path_factory.mktemp("labelled") / "shards"
    writer = open_writer(path, format="zarr")
    for k, (vid, (split, pan, velocity)) in enumerate(VIDEOS.items()):
        arrays, attrs = synthetic_video(pan, velocity, seed=k)
        moving = bool(np.abs(arrays["mv"][arrays["mv_valid"]]).max() > 0)   # the label reads the stored motion
        label = None if vid.endswith("unlabelled") else int(moving)
        name = None if label is None else ("moving" if moving else "still")
        writer.write_video(vid, arrays, {**attrs, "split": split, "label": label, "label_name": name})
    writer.finalize()
    return path


@pytest.fixture(scope="module")
def checkpoint(labelled_shards, tmp_path_factory):
    """One pretraining step of vit_pico (pixel target) on the labelled set."""
    out = tmp_path_factory.mktemp("pretrain")
    cfg = TrainConfig(shards=str(labelled_shards), out=str(out), model="vit_pico", max_steps=1, warmup_steps=1,
                      warmup_epochs=0.0, log_every=1, **TINY).validate()
    train(cfg, log=lambda s: None)
    return out / CHECKPOINT


def check_metrics(result: dict) -> None:
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["num_classes"] == 2 and result["top5_k"] == 2 and result["top5"] == 1.0
    assert result["videos"] == {"train": 5, "val": 4}
    assert result["skipped_unlabelled"] == {"train": 1, "val": 1}
    assert set(result["predictions"]) == {v for v in VIDEOS if v.startswith("val_") and "unlabelled" not in v}
    assert result["class_names"] == {"0": "still", "1": "moving"}
    json.dumps(result)  # the CLI writes it as is


def test_random_init_probe_runs_end_to_end(labelled_shards):
    result = linear_probe("random", labelled_shards, model="vit_pico", **TINY)
    check_metrics(result)
    assert result["mode"] == "linear" and result["checkpoint"] == "random"
    # the default probe: quadrants of each time slice (grid 2 x 4 x 4 -> 2 x 4 x 64), L2 by
    # cross-validation; the token mean fit on the same features as the second probe
    assert result["probe_pool"] == "quadrants" and result["feature_dim"] == 2 * 4 * 64
    assert result["probes"].keys() == {"quadrants", "mean"} and result["probes"]["mean"]["feature_dim"] == 64
    for p in result["probes"].values():
        assert p["weight_decay"] in WD_GRID and set(p["cv_loss"]) == {f"{x:g}" for x in WD_GRID}
        lo, hi = p["top1_ci95"]
        assert lo <= p["top1"] <= hi and p["videos"] == 4
    assert result["top1"] == result["probes"]["quadrants"]["top1"]


def test_probe_pool_and_fixed_penalty_from_the_cli(labelled_shards, tmp_path):
    out = tmp_path / "probe.json"
    flags = ["--checkpoint", "random", "--shards", str(labelled_shards), "--model", "vit_pico", "--num-frames", "4",
             "--sampling-rate", "2", "--input-size", "32", "--num-workers", "0", "--device", "cpu"]
    result = evaluate.main([*flags, "--probe-pool", "time", "--probe-wd", "0.01", "--out", str(out)])
    assert result["probes"].keys() == {"time", "mean"} and result["feature_dim"] == 2 * 64
    assert all(p["weight_decay"] == 0.01 and p["cv_loss"] is None for p in result["probes"].values())
    again = evaluate.main([*flags, "--probe-pool", "time", "--probe-wd", "0.01", "--out", str(out)])
    assert again["probes"] == result["probes"] and again["predictions"] == result["predictions"]   # no seed luck
    with pytest.raises(Exception, match="probe-wd"):
        evaluate.main([*flags, "--probe-wd", "often"])


def test_probe_separates_classes_with_an_informative_feature(labelled_shards, monkeypatch):
    # The encoder replaced by a feature that is trivially informative of motion (mean |frame
    # difference|): the probe's pipeline (views, labels, standardization, fit, clip averaging)
    # must then classify every val video; a misaligned label or view would fall to chance.
    # The same energy on every token, so every pooling carries it.
    def motion_energy(self, video):                                    # (B,3,T,S,S) -> (B,N,1)
        energy = (video[:, :, 1:] - video[:, :, :-1]).abs().mean((1, 2, 3, 4))
        return energy[:, None, None].expand(-1, self.pos_embed.shape[1], 1)

    monkeypatch.setattr(VideoClassifier, "forward_tokens", motion_energy)
    result = linear_probe("random", labelled_shards, model="vit_pico", **TINY)
    assert result["top1"] == 1.0 and result["probe_train_top1"] == 1.0
    assert result["probes"]["mean"]["top1"] == 1.0 and result["probes"]["quadrants"]["feature_dim"] == 2 * 4


def test_fit_linear_and_metrics():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 5, generator=gen)
    x[:, 2] += 4 * y                                                   # one informative dimension
    (xs,) = standardize(x)
    assert torch.allclose(xs.mean(0), torch.zeros(5), atol=1e-5) and torch.allclose(xs.std(0), torch.ones(5))
    head = fit_linear(xs, y, 3, weight_decay=1e-3)
    assert topk_accuracy(head(xs), y, 1) > 0.9
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    assert topk_accuracy(scores, torch.tensor([2, 0]), 1) == 0.5 and topk_accuracy(scores, torch.tensor([2, 0]), 2) == 1.0


def test_probe_of_a_checkpoint_uses_its_geometry(labelled_shards, checkpoint):
    result = linear_probe(checkpoint, labelled_shards, num_workers=0, device="cpu", clips=3)
    check_metrics(result)
    assert result["checkpoint_step"] == 1 and result["pretrain_config"]["model"] == "vit_pico"
    assert result["config"]["num_frames"] == 4 and result["config"]["input_size"] == 32


def test_finetune_one_step(labelled_shards, checkpoint):
    before = load_checkpoint(checkpoint)["model"]["blocks.0.mlp.fc1.weight"]
    seen = {}
    original = VideoClassifier.forward_head

    def spy(self, features):
        seen["model"] = self
        return original(self, features)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(VideoClassifier, "forward_head", spy)
        result = finetune(checkpoint, labelled_shards, max_steps=1, base_lr=10.0, num_workers=0, device="cpu",
                          batch_size=2)
    check_metrics(result)
    assert result["mode"] == "finetune" and result["finetune"]["steps"] == 1
    assert not torch.equal(seen["model"].blocks[0].mlp.fc1.weight.detach(), before)  # the encoder was trained


def test_training_flips_can_be_turned_off():
    """Labels with a direction (left / right, clockwise) must not see mirrored clips; tests never flip."""
    on, off = evaluate.EvalConfig(), evaluate.EvalConfig(flip=False)
    assert on.spec(train=True).flip and not off.spec(train=True).flip
    assert not on.spec().flip and not off.spec().flip


def test_layer_wise_lr_decay():
    model = VideoClassifier(build_model("vit_pico", (1, 2, 2), 1), 3)
    scales = {id(p): g["lr_scale"] for g in layer_groups(model, 0.05, 0.5) for p in g["params"]}
    depth = len(model.blocks)
    assert scales[id(model.head.weight)] == 1.0
    assert scales[id(model.blocks[depth - 1].attn.qkv.weight)] == 0.5
    assert scales[id(model.patch_embed.proj.weight)] == 0.5 ** (depth + 1)
    no_decay = [g for g in layer_groups(model, 0.05, 0.5) if g["weight_decay"] == 0]
    assert all(p.ndim == 1 for g in no_decay for p in g["params"])


def test_cli_writes_the_result(labelled_shards, tmp_path):
    out = tmp_path / "probe.json"
    evaluate.main(["--checkpoint", "random", "--shards", str(labelled_shards), "--model", "vit_pico",
                   "--num-frames", "4", "--sampling-rate", "2", "--input-size", "32", "--num-workers", "0",
                   "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert {"top1", "top5", "config", "checkpoint", "seconds", "time"} <= set(result)
    assert result["config"]["checkpoint"] == "random" and result["seconds"]["total"] > 0



def test_torchrun_two_ranks_probe_like_one_and_fine_tune(labelled_shards, tmp_path):
    """DDP on CPU (gloo): the probe's features are gathered from both ranks, so its predictions are the
    single-process ones; fine-tuning runs its steps on two ranks and rank 0 writes the result."""
    flags = ["--checkpoint", "random", "--shards", str(labelled_shards), "--model", "vit_pico", "--num-frames", "4",
             "--sampling-rate", "2", "--input-size", "32", "--num-workers", "0", "--device", "cpu",
             "--batch-size", "2"]
    script = str(REPO_ROOT / "train" / "evaluate.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", script]
    subprocess.run([*torchrun, *flags, "--out", str(tmp_path / "probe.json")], check=True, env=env,
                   capture_output=True, timeout=300)
    subprocess.run([*torchrun, *flags, "--finetune", "--max-steps", "2", "--out", str(tmp_path / "tune.json")],
                   check=True, env=env, capture_output=True, timeout=300)
    one = linear_probe("random", labelled_shards, model="vit_pico", **{**TINY, "batch_size": 2})
    two = json.loads((tmp_path / "probe.json").read_text())
    assert two["world"] == 2 and one["world"] == 1
    assert two["predictions"] == one["predictions"] and two["top1"] == one["top1"]
    tuned = json.loads((tmp_path / "tune.json").read_text())
    assert tuned["world"] == 2 and tuned["finetune"]["steps"] == 2
    check_metrics(tuned)

def test_a_split_without_labels_is_refused(tiny_shards):
    # conftest's tiny set has a train split only
    with pytest.raises(ValueError, match="no labelled videos in split 'val'"):
        linear_probe("random", tiny_shards, model="vit_pico", **TINY)


# ---- export ----------------------------------------------------------------------------------

def videomae_sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """VideoMAE's get_sinusoid_encoding_table, as published."""
    table = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)]
                      for pos in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.FloatTensor(table).unsqueeze(0)


class ReferenceViT(nn.Module):
    """A VideoMAE-style ViT encoder built from timm Blocks, as a user of encoder.pth would write it."""

    def __init__(self, dim: int, depth: int, heads: int, num_tokens: int, tubelet: int = 2, patch: int = 16):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, dim, (tubelet, patch, patch), (tubelet, patch, patch))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(dim)
        self.register_buffer("pos_embed", videomae_sinusoid_table(num_tokens, dim), persistent=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(video).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def expected_keys(depth: int, layout: str) -> set[str]:
    attn_bias = ["attn.qkv.bias"] if layout == "timm" else ["attn.q_bias", "attn.v_bias"]
    per_block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", *attn_bias, "attn.proj.weight", "attn.proj.bias",
                 "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    return {"patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            *(f"blocks.{i}.{k}" for i in range(depth) for k in per_block)}


@pytest.mark.parametrize("layout", ["timm", "videomae"])
def test_export_loads_into_a_reference_vit(checkpoint, tmp_path, layout):
    ckpt = load_checkpoint(checkpoint)
    gen = torch.Generator().manual_seed(1)
    for key, value in ckpt["model"].items():  # a key bias far from zero, so dropping it is put to the test
        if key.endswith("attn.qkv.bias"):
            value[value.numel() // 3:2 * value.numel() // 3] = torch.randn(value.numel() // 3, generator=gen)
    source = tmp_path / "checkpoint.pt"
    torch.save(ckpt, source)
    path = tmp_path / "encoder.pth"
    meta = export(source, path, layout)
    weights = torch.load(path, weights_only=True)
    size = MODELS["vit_pico"]
    assert set(weights) == expected_keys(size.depth, layout)
    assert weights["patch_embed.proj.weight"].shape == (size.dim, 3, 2, 16, 16)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert json.loads(path.with_suffix(".json").read_text())["dim"] == meta["dim"] == size.dim

    if layout == "videomae":  # back to timm's single qkv bias with a zero key bias
        for i in range(size.depth):
            q, v = weights.pop(f"blocks.{i}.attn.q_bias"), weights.pop(f"blocks.{i}.attn.v_bias")
            weights[f"blocks.{i}.attn.qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    grid = (2, 2, 2)
    reference = ReferenceViT(size.dim, size.depth, size.heads, num_tokens=8)
    reference.load_state_dict(weights)  # strict: every key used, none missing
    model = build_model("vit_pico", grid, ckpt["out_dim"])
    model.load_state_dict(ckpt["model"])
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the dropped key bias shifts every logit of a query by the same amount: the softmax removes it
        assert torch.allclose(reference.eval()(video), model.eval().forward_features(video), atol=1e-5)


def test_export_subcommand_of_evaluate(checkpoint, tmp_path):
    evaluate.main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "enc.pth")])
    assert (tmp_path / "enc.pth").stat().st_size > 0 and (tmp_path / "enc.json").exists()


def test_a_random_encoder_takes_the_position_table_asked_for():
    """The random-init baseline of a study whose runs use the separable table must use it too:
    `positions` is part of the geometry (the checkpoint's, or the flag's for 'random')."""
    from train.eval.classifier import load_encoder
    from train.eval.config import EvalConfig

    for table in ("videomae", "separable"):
        mae, cfg, _ = load_encoder(EvalConfig(checkpoint="random", model="vit_pico", num_frames=4,
                                              input_size=32, patch_size=8, positions=table))
        from train.pretraining.model import POSITIONS

        assert cfg.positions == table
        torch.testing.assert_close(mae.pos_embed, POSITIONS[table](mae.grid, mae.pos_embed.shape[-1]))
