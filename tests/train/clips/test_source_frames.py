"""Training on a set extracted with `--frames none`: clips decode their frames from the videos."""
from __future__ import annotations

import shutil

import pytest
import torch

from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import ShardRef
from shards.cli import CliError
from train.cli import check_sources
from train.pretraining.engine import train

from tests.train.pretraining.test_engine import tiny_config


def frames_none(tmp_path_factory, name: str, dataset: str, root, videos: int):
    """`root` extracted as `dataset` with `--frames none` into a set named `name`: (set, root)."""
    out = tmp_path_factory.mktemp("sets") / name
    summary = run(ExtractConfig(dataset=dataset, root=str(root), out=str(out), workers=0, frames="none"),
                  log=lambda s: None)
    assert summary["done"] == videos
    return out, root


@pytest.fixture(scope="module")
def none_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for k in range(2):
        scene = Scene(height=48, width=64, num_frames=12, bg_velocity=(1.0, 0.0), seed=k,
                      objects=(MovingObject(16, (10, 10), (2.0, 1.0)),))
        encode(root / f"clip{k}", render(scene), codec="h264", bframes=2, gop=6)
    return frames_none(tmp_path_factory, "none", "folder", root, videos=2)


def test_two_steps_on_a_frames_none_set(none_set, tmp_path):
    shards, _ = none_set
    summary = train(tiny_config(shards, tmp_path, max_steps=2, mask="mgmae", target="mme"), log=lambda s: None)
    assert summary["step"] == 2 and summary["last_loss"] > 0


def test_moved_sources_train_with_source_root_and_fail_clearly_without(none_set, tmp_path):
    shards, root = none_set
    moved = tmp_path / "corpus"
    shutil.copytree(root, moved)
    check_sources(ShardRef(shards))  # where extraction found them
    check_sources(ShardRef(shards, str(moved)))
    with pytest.raises(CliError, match=r"video 'clip0': its source .*clip0\.mp4 is missing .*--source-root"):
        check_sources(ShardRef(shards, str(tmp_path / "nowhere")))
    away = root.with_name(root.name + "-away")
    root.rename(away)  # only the moved copy is left
    try:
        with pytest.raises(CliError, match="where extraction found it"):
            check_sources(ShardRef(shards))
        summary = train(tiny_config(shards, tmp_path / "run", source_root=str(moved)), log=lambda s: None)
        # the evaluation's views, the held-out loss and the pictures read the moved videos the same way
        from shards import open_shards
        from train.clips.dataset import ClipSpec
        from train.pretraining.engine import load_checkpoint
        from train.eval.heldout import heldout_loss
        from train.eval.view_cache import Views
        from train.visualize import main as visualize

        with open_shards(shards) as ds:
            ids = ds.ids()
        view = Views(ShardRef(shards, str(moved)), ids, ClipSpec(num_frames=4, sampling_rate=2, input_size=32,
                                                                  tubelet=2), 1)[0]
        assert view["video"].shape == (3, 4, 32, 32)
        from train.eval.view_cache import cached_views
        cached = cached_views(tmp_path / "cache", ShardRef(shards, str(moved)), "", ids,
                              ClipSpec(num_frames=4, sampling_rate=2, input_size=32, tubelet=2), 1)
        assert torch.equal(cached[0]["video"], view["video"])
        ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
        held = heldout_loss(ckpt, ShardRef(shards, str(moved)), "", 2, 2)
        assert held["clips"] == 2 and held["loss"] > 0
        with pytest.raises(CliError, match="--source-root"):
            visualize(["--shards", str(shards), "--out", str(tmp_path / "pics")])
        paths = visualize(["--shards", str(shards), "--out", str(tmp_path / "pics"), "--source-root", str(moved),
                           "--frames", "4", "--num-frames", "4", "--input-size", "32"])
        assert paths
    finally:
        away.rename(root)
    assert summary["step"] == 1


@pytest.fixture(scope="module")
def labelled_none_set(tmp_path_factory):
    """A --frames none set of a UCF101-style corpus: two classes told apart by their motion, three
    train and one test video each; returns the set and its source root."""
    root = tmp_path_factory.mktemp("ucf")
    classes = {"Right": (2.0, 0.0), "Down": (0.0, 2.0)}
    train, test = [], []
    for c, (name, velocity) in enumerate(classes.items()):
        for g in (1, 2, 3, 4):
            rel = f"{name}/v_{name}_g{g:02d}_c01"
            scene = Scene(height=48, width=64, num_frames=12, seed=4 * c + g,
                          objects=(MovingObject(16, (10, 10), velocity),))
            encode(root / rel, render(scene), codec="h264", gop=6)
            (test if g == 1 else train).append(f"{rel}.mp4")
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{k + 1} {name}\n" for k, name in enumerate(classes)))
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {rel.split('/')[0]}\n" for rel in train))
    (lists / "testlist01.txt").write_text("".join(f"{rel}\n" for rel in test))
    return frames_none(tmp_path_factory, "ucf-none", "ucf101", root, videos=8)


def test_a_moved_corpus_trains_and_evaluates_with_its_source_root_given_once(labelled_none_set, tmp_path):
    """The flag goes into the config; everything the programs read below it (the training clips,
    the probe's and the fine-tuning's views, the held-out clips) finds the moved videos."""
    from train import evaluate, heldout, pretrain

    shards, root = labelled_none_set
    moved = tmp_path / "moved"
    root.rename(moved)  # the corpus is only under its new root
    try:
        tiny = ["--num-frames", "4", "--sampling-rate", "2", "--input-size", "32", "--batch-size", "2",
                "--num-workers", "0", "--device", "cpu"]
        run_folder = tmp_path / "run"
        summary = pretrain.main(["--shards", str(shards), "--split", "train1", "--out", str(run_folder),
                                 "--model", "vit_pico", "--max-steps", "1", "--warmup-steps", "1",
                                 "--source-root", str(moved), *tiny])
        assert summary["step"] == 1 and summary["last_loss"] > 0
        checkpoint = str(run_folder / "checkpoint.pt")
        flags = ["--checkpoint", checkpoint, "--shards", str(shards), "--train-split", "train1",
                 "--val-split", "test1", *tiny]
        with pytest.raises(CliError, match="--source-root"):
            evaluate.main([*flags, "--out", str(tmp_path / "refused.json")])
        probe = evaluate.main([*flags, "--source-root", str(moved), "--probe-wd", "0.01",
                               "--out", str(tmp_path / "probe.json")])
        tuned = evaluate.main([*flags, "--source-root", str(moved), "--finetune", "--max-steps", "1",
                               "--out", str(tmp_path / "finetune.json")])
        for result in (probe, tuned):
            assert result["videos"] == {"train": 6, "val": 2} and 0.0 <= result["top1"] <= 1.0
            assert result["config"]["source_root"] == str(moved)
        held = heldout.main(["--checkpoint", checkpoint, "--split", "test1", "--clips", "2", "--batch-size", "2",
                             "--source-root", str(moved)])
        assert held["clips"] == 2 and held["loss"] > 0
    finally:
        moved.rename(root)
