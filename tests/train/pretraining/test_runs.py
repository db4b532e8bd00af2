"""Run identity: default run folders, resume and overwrite refusals, evaluate reading the
checkpoint's shards, and shard sets without splits (the rules of train/pretraining/runs.py and the CLIs)."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from shards.cli import CliError, run_main
from tests.train.conftest import write_tiny_set
from train import evaluate, pretrain
from train.pretraining import engine, runs
from train.pretraining.config import TrainConfig


def test_without_config_a_run_is_the_defaults_plus_flags_in_a_folder_named_for_it():
    cfg, _ = pretrain.resolve_config(["--shards", "data/shards/k400", "--mask", "mgmae", "--target", "mme"])
    assert (cfg.model, cfg.num_frames, cfg.input_size, cfg.split) == ("vit_small", 16, 224, "")
    assert cfg.out == "runs/k400-mgmae-mme-vit_small"
    cfg, _ = pretrain.resolve_config(["--model", "vit_small", "--resume", "auto"])  # the README's third line
    assert (cfg.model, cfg.input_size, cfg.out) == ("vit_small", 224, "runs/demo-tube-pixel-vit_small")
    names = {pretrain.resolve_config(["--mask", m])[0].out for m in ("tube", "mgm", "mgmae")}
    assert len(names) == 3


def test_the_bare_command_is_the_demo_and_a_config_file_keeps_its_out():
    for argv in ([], ["--debug"], ["--overwrite"], ["--resume", "auto"]):  # how to run, not what
        cfg, _ = pretrain.resolve_config(argv)
        assert (cfg.model, cfg.num_frames, cfg.input_size, cfg.out, cfg.split) == ("vit_pico", 8, 64, "runs/demo", "train")
    cfg, _ = pretrain.resolve_config(["--config", "mgm_k400.yaml", "--shards", "data/shards/k400"])
    assert (cfg.mask, cfg.out) == ("mgm", "runs/mgm_k400")


def test_identity_diff_names_the_fields():
    cfg = TrainConfig(model="vit_pico", mask="tube")
    saved = {**cfg.to_dict(), "model": "vit_small", "input_size": 112, "max_steps": 7, "shards": "/elsewhere"}
    assert runs.identity_diff(saved, cfg) == ["model: vit_small there, vit_pico now",
                                              "input_size: 112 there, 224 now"]
    # the ratio is compared resolved: None is the method's 0.9
    assert runs.identity_diff({**cfg.to_dict(), "mask_ratio": 0.9}, cfg) == []
    assert runs.identity_diff({**cfg.to_dict(), "mask_ratio": 0.75}, cfg) == ["mask_ratio: 0.75 there, 0.9 now"]
    assert runs.CHECKPOINT == engine.CHECKPOINT


@pytest.fixture(scope="module")
def unsplit_shards(tmp_path_factory):
    """The tiny set as a folder/list dataset extracted without --split writes it: split None."""
    return write_tiny_set(tmp_path_factory.mktemp("unsplit") / "clips", split=None, label=None)


def cli(argv, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pretrain.py", *argv])
    monkeypatch.delenv("MOTION_MAE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: pretrain.main(argv), "pretrain.py")
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def metric_steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_folder_is_refused_resumed_or_replaced(unsplit_shards, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["--shards", str(unsplit_shards), "--split", "train", "--out", str(out), "--model", "vit_pico",
            "--num-frames", "4", "--sampling-rate", "2", "--input-size", "32", "--batch-size", "2",
            "--max-steps", "2", "--warmup-steps", "1", "--warmup-epochs", "0", "--num-workers", "0",
            "--device", "cpu", "--log-every", "1"]
    code, stdout, _ = cli(argv, capsys, monkeypatch)
    # a set without splits trains on all of it, and says so before the config
    assert code == 0 and f"data: {unsplit_shards} has no splits: --split 'train' ignored, training on all 4 videos" \
        in stdout
    assert json.loads((out / "config.json").read_text())["split"] == ""
    assert metric_steps(out) == [1, 2]

    code, _, err = cli(argv, capsys, monkeypatch)  # the same command again would start over: refused
    assert code == 1 and "holds another run (checkpoint.pt, metrics.jsonl: vit_pico tube+pixel" in err
    assert "--resume auto" in err and "--overwrite" in err and metric_steps(out) == [1, 2]

    code, _, err = cli([*argv, "--model", "vit_tiny", "--resume", "auto"], capsys, monkeypatch)
    assert code == 1 and "model: vit_pico there, vit_tiny now" in err and len(err.splitlines()) == 1
    code, _, err = cli([*argv, "--target", "hog", "--mask-ratio", "0.5", "--resume", "auto"], capsys, monkeypatch)
    assert code == 1 and "target: pixel there, hog now; mask_ratio: 0.9 there, 0.5 now" in err

    code, stdout, _ = cli([*argv, "--resume", "auto", "--max-steps", "3"], capsys, monkeypatch)
    assert code == 0 and "at step 2" in stdout and metric_steps(out) == [1, 2, 3]

    (out / "eval_linear.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    code, stdout, _ = cli([*argv, "--overwrite"], capsys, monkeypatch)
    assert code == 0 and "--overwrite: removed checkpoint.pt, config.json, metrics.jsonl, eval_linear.json" in stdout
    assert metric_steps(out) == [1, 2] and (out / "notes.txt").read_text() == "mine"
    assert int(torch.load(out / "checkpoint.pt", weights_only=True)["step"]) == 2


def test_a_split_is_kept_and_an_unsplit_run_says_it_trains_on_all(tiny_shards, unsplit_shards):
    cfg, note = pretrain.resolve_split(TrainConfig(shards=str(tiny_shards), split="train"))
    assert cfg.split == "train" and note == f"data: split train, 4 of the 4 videos of {tiny_shards}"
    cfg, note = pretrain.resolve_split(TrainConfig(shards=str(unsplit_shards)))
    assert cfg.split == "" and note == f"data: {unsplit_shards} has no splits: training on all 4 videos"


def fake_checkpoint(path, **config) -> str:
    torch.save({"config": TrainConfig(**config).to_dict(), "step": 1}, path)
    return str(path)


def test_evaluate_reads_the_shards_of_the_checkpoint(tiny_shards, unsplit_shards, tmp_path):
    ckpt = fake_checkpoint(tmp_path / "checkpoint.pt", shards=str(tiny_shards))
    assert evaluate.parse_args(["--checkpoint", ckpt]).shards == str(tiny_shards)
    assert evaluate.parse_args(["--checkpoint", ckpt, "--shards", str(unsplit_shards)]).shards == str(unsplit_shards)
    gone = fake_checkpoint(tmp_path / "gone.pt", shards=str(tmp_path / "deleted"))
    with pytest.raises(CliError, match=r"the checkpoint's shards \(give --shards to use another set\) .*deleted: "
                                       "no such shard set"):
        evaluate.parse_args(["--checkpoint", gone])


def test_a_run_killed_before_its_first_checkpoint_is_not_appended_to(tiny_shards, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 10, "loss": 1.0}\n')
    code, _, err = cli(["--shards", str(tiny_shards), "--out", str(out), "--resume", "auto"], capsys, monkeypatch)
    assert code == 1 and "holds another run (metrics.jsonl: no checkpoint yet)" in err
    assert "replace it with --overwrite (instead of --resume)" in err and "continue it" not in err


def test_a_run_killed_before_its_first_checkpoint_starts_over_when_resumed_with_its_own_config(
        tiny_shards, tmp_path, capsys, monkeypatch):
    """What a torchrun --max-restarts restart meets when a rank died before the first checkpoint:
    the run's own config.json and a partial log. It starts over, the log's old rows dropped."""
    out = tmp_path / "run"
    flags = ["--shards", str(tiny_shards), "--out", str(out), "--max-steps", "2", "--warmup-steps", "1",
             "--model", "vit_pico", "--num-frames", "4", "--input-size", "32", "--batch-size", "2",
             "--num-workers", "0", "--log-every", "1"]
    code, _, err = cli(flags + ["--stop-at", "1"], capsys, monkeypatch)
    assert code == 0, err
    (out / "checkpoint.pt").unlink()                      # as if killed before it was written
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')
    code, printed, err = cli(flags + ["--resume", "auto"], capsys, monkeypatch)
    assert code == 0, err
    assert "holds this run killed before its first checkpoint; starting it over" in printed + err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and '"loss": 9.0' not in (out / "metrics.jsonl").read_text()
    (out / "checkpoint.pt").unlink()   # a folder whose config.json is another run's is still refused
    code, _, err = cli(flags + ["--resume", "auto", "--mask", "random"], capsys, monkeypatch)
    assert code == 1 and "holds another run (metrics.jsonl: no checkpoint yet)" in err
