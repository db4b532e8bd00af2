"""Training on a set extracted with `--frames none`: clips decode their frames from the videos."""
from __future__ import annotations

import shutil

import pytest
import torch

from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards.cli import CliError
from train.cli import check_sources
from train.pretraining.engine import train

from tests.train.pretraining.test_engine import tiny_config


@pytest.fixture(scope="module")
def none_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for k in range(2):
        scene = Scene(height=48, width=64, num_frames=12, bg_velocity=(1.0, 0.0), seed=k,
                      objects=(MovingObject(16, (10, 10), (2.0, 1.0)),))
        encode(root / f"clip{k}", render(scene), codec="h264", bframes=2, gop=6)
    out = tmp_path_factory.mktemp("sets") / "none"
    summary = run(ExtractConfig(dataset="folder", root=str(root), out=str(out), workers=0, frames="none"),
                  log=lambda s: None)
    assert summary["done"] == 2
    return out, root


def test_two_steps_on_a_frames_none_set(none_set, tmp_path):
    shards, _ = none_set
    summary = train(tiny_config(shards, tmp_path, max_steps=2, mask="mgmae", target="mme"), log=lambda s: None)
    assert summary["step"] == 2 and summary["last_loss"] > 0


def test_moved_sources_train_with_source_root_and_fail_clearly_without(none_set, tmp_path):
    shards, root = none_set
    moved = tmp_path / "corpus"
    shutil.copytree(root, moved)
    check_sources(shards)  # where extraction found them
    check_sources(shards, str(moved))
    with pytest.raises(CliError, match=r"video 'clip0': its source .*clip0\.mp4 is missing .*--source-root"):
        check_sources(shards, str(tmp_path / "nowhere"))
    away = root.with_name(root.name + "-away")
    root.rename(away)  # only the moved copy is left
    try:
        with pytest.raises(CliError, match="where extraction found it"):
            check_sources(shards)
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
        view = Views(shards, ids, ClipSpec(num_frames=4, sampling_rate=2, input_size=32, tubelet=2), 1,
                     source_root=str(moved))[0]
        assert view["video"].shape == (3, 4, 32, 32)
        from train.eval.view_cache import cached_views
        cached = cached_views(tmp_path / "cache", shards, "", ids, ClipSpec(num_frames=4, sampling_rate=2, input_size=32,
                                                                           tubelet=2), 1, source_root=str(moved))
        assert torch.equal(cached[0]["video"], view["video"])
        ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
        held = heldout_loss(ckpt, shards, "", 2, 2, source_root=str(moved))
        assert held["clips"] == 2 and held["loss"] > 0
        with pytest.raises(CliError, match="--source-root"):
            visualize(["--shards", str(shards), "--out", str(tmp_path / "pics")])
        paths = visualize(["--shards", str(shards), "--out", str(tmp_path / "pics"), "--source-root", str(moved),
                           "--frames", "4", "--num-frames", "4", "--input-size", "32"])
        assert paths
    finally:
        away.rename(root)
    assert summary["step"] == 1
