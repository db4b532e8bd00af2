"""Every usage mistake of the training-side commands is one line, no traceback, a non-zero exit
(2 for a wrong command line, 1 for a command that cannot run as given).

In-process: `main(argv)` under `shards.cli.run_main`, as `__main__` runs it; one subprocess
proves the whole path (interpreter start, sys.path, run_main)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from shards.cli import run_main
from train import evaluate, export, pretrain, visualize
from train.pretraining.config import HELP, TrainConfig
from train.pretraining.masks import MASKS
from train.pretraining.targets import TARGETS

MASK_CHOICES = ", ".join(repr(m) for m in MASKS)  # 'tube', 'random', 'mgm', ...

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {"pretrain": pretrain, "evaluate": evaluate, "visualize": visualize, "export": export}


def run_cli(name: str, argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """Exit status and stderr of `python train/<name>.py ARGV`, in this process."""
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    monkeypatch.delenv("MOTION_MAE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: COMMANDS[name].main(argv), f"{name}.py")
    return exit_.value.code, capsys.readouterr().err


def assert_one_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture
def a_file(tmp_path) -> Path:
    p = tmp_path / "a_file"
    p.write_text("not a folder")
    return p


# (command, argv with {shards} / {file} / {tmp} placeholders, exit status, text the line must hold)
CASES = {
    "pretrain missing shards": ("pretrain", ["--shards", "{tmp}/nowhere"], 1, "no such shard set"),
    "pretrain not a shard set": ("pretrain", ["--shards", "{tmp}"], 1, "not a shard set"),
    "pretrain mistyped mask": ("pretrain", ["--mask", "tubee"], 2, MASK_CHOICES),
    "pretrain mistyped target": ("pretrain", ["--target", "hogg"], 2, "'pixel', 'hog', 'mme'"),
    "pretrain mistyped model": ("pretrain", ["--model", "vit_smal"], 2, "'vit_small'"),
    "pretrain out is a file": ("pretrain", ["--shards", "{shards}", "--out", "{file}"], 2, "is a file"),
    "pretrain missing config": ("pretrain", ["--config", "{tmp}/nope.yaml"], 1, "no such file"),
    "pretrain mask ratio 1.5": ("pretrain", ["--mask-ratio", "1.5"], 2, "must be in [0, 1)"),
    "pretrain bad number": ("pretrain", ["--max-steps", "ten"], 2, "invalid int value"),
    "pretrain unknown split": ("pretrain", ["--shards", "{shards}", "--split", "trian", "--out", "{tmp}/run"], 1,
                               "its splits: train 4"),
    "pretrain resume missing": ("pretrain", ["--shards", "{shards}", "--resume", "{tmp}/none.pt",
                                             "--out", "{tmp}/run"], 1, "no such checkpoint"),
    "pretrain overwrite and resume": ("pretrain", ["--overwrite", "--resume", "auto"], 2, "give one of them"),
    "evaluate missing checkpoint": ("evaluate", ["--checkpoint", "{tmp}/none.pt"], 1, "no such file"),
    "evaluate no checkpoint": ("evaluate", [], 2, "--checkpoint"),
    "evaluate missing shards": ("evaluate", ["--checkpoint", "random", "--shards", "{tmp}/nowhere"], 1,
                                "no such shard set"),
    "evaluate mistyped model": ("evaluate", ["--checkpoint", "random", "--model", "vit_pic"], 2, "'vit_pico'"),
    "export missing checkpoint": ("evaluate", ["export", "--checkpoint", "{tmp}/none.pt", "--out", "{tmp}/e.pth"],
                                  1, "no such file"),
    "export no out": ("export", ["--checkpoint", "{file}"], 2, "--out"),
    "visualize mistyped video": ("visualize", ["--shards", "{shards}", "--video", "pann", "--out", "{tmp}/vis"], 2,
                                 "did you mean pan? e.g. fast, pan, slow, still"),
    "visualize missing shards": ("visualize", ["--shards", "{tmp}/nowhere", "--out", "{tmp}/vis"], 1,
                                 "no such shard set"),
    "visualize missing checkpoint": ("visualize", ["--shards", "{shards}", "--checkpoint", "{tmp}/none.pt",
                                                   "--out", "{tmp}/vis"], 1, "no such file"),
    "visualize out is a file": ("visualize", ["--shards", "{shards}", "--out", "{file}"], 2, "is a file"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_usage_mistake_is_one_line(case, tiny_shards, a_file, tmp_path, capsys, monkeypatch):
    name, argv, status, text = CASES[case]
    argv = [a.format(shards=tiny_shards, file=a_file, tmp=tmp_path) for a in argv]
    code, err = run_cli(name, argv, capsys, monkeypatch)
    assert_one_line(err)
    assert code == status and text in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "vis").exists()  # refused before writing


def test_cuda_without_a_gpu_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, argv in (("pretrain", ["--device", "cuda"]), ("evaluate", ["--checkpoint", "random", "--device", "cuda"])):
        code, err = run_cli(name, argv, capsys, monkeypatch)
        assert_one_line(err)
        assert code == 1 and "no CUDA GPU" in err and "--device cpu" in err


def test_a_bug_is_one_line_and_debug_brings_the_traceback_back(tiny_shards, tmp_path, capsys, monkeypatch):
    def broken(*args, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(visualize, "motion_figures", broken)
    argv = ["--shards", str(tiny_shards), "--out", str(tmp_path / "vis")]
    code, err = run_cli("visualize", argv, capsys, monkeypatch)
    assert code == 1 and "RuntimeError: boom (run with --debug" in err
    assert_one_line(err)
    monkeypatch.setattr(sys, "argv", ["visualize.py", *argv, "--debug"])
    with pytest.raises(RuntimeError, match="boom"):
        run_main(lambda: visualize.main([*argv, "--debug"]), "visualize.py")


def test_the_whole_path_in_a_subprocess():
    """`python train/pretrain.py --mask tubee`: interpreter, sys.path, run_main, exit 2, one line."""
    r = subprocess.run([sys.executable, "train/pretrain.py", "--mask", "tubee"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("pretrain.py: error: argument --mask: invalid choice: 'tubee' (choose from "
                                f"{MASK_CHOICES}) (see pretrain.py --help)")


# ---- --help shows what runs ---------------------------------------------------------------------

def help_text(name: str, capsys, argv=("--help",)) -> str:
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[name].main(list(argv))
    assert exit_.value.code == 0
    return capsys.readouterr().out


def options(name: str) -> dict[str, str]:
    """--flag -> its help text as --help prints it (argparse's % escapes undone)."""
    return {a.option_strings[-1]: (a.help or "").replace("%%", "%")
            for a in COMMANDS[name].build_parser()._actions}


@pytest.mark.parametrize("name", ["pretrain", "evaluate", "visualize", "export"])
def test_every_flag_has_help_and_its_default(name):
    flags = options(name)
    assert len(flags) > 3
    for flag, text in flags.items():
        assert len(text) > 10, f"{name} {flag}: no help"
        if flag not in ("--help", "--debug", "--overwrite", "--finetune"):
            assert "(default:" in text or "(required)" in text, f"{name} {flag}: {text}"


def test_every_train_config_field_has_its_help_text():
    assert set(HELP) == {f.name for f in fields(TrainConfig)}


def test_pretrain_help_shows_the_library_defaults_and_choices_not_the_demo(capsys, monkeypatch):
    monkeypatch.setattr(pretrain, "DEMO_CONFIG", Path("/nonexistent/demo.yaml"))  # --help must not read it
    usage = help_text("pretrain", capsys)
    flags = options("pretrain")
    assert "{" + ",".join(MASKS) + "}" in usage and "{" + ",".join(TARGETS) + "}" in usage and "{vit_pico,vit_tiny," in usage
    assert "(default: tube)" in flags["--mask"] and "(default: pixel)" in flags["--target"]
    assert "(default: vit_small)" in flags["--model"]
    assert "(default: 16)" in flags["--num-frames"] and "(default: 224)" in flags["--input-size"]
    assert "runs/<shards name>-<mask>-<target>-<model>" in flags["--out"]
    assert "mme: points, none; mme_single: points, token, motion" in flags["--target-norm"]


def test_evaluate_usage_shows_export(capsys):
    text = help_text("evaluate", capsys)
    assert "evaluate.py export --checkpoint CKPT --out FILE" in text.split("options:")[0]
    assert "the shards the checkpoint was pretrained on" in options("evaluate")["--shards"]
