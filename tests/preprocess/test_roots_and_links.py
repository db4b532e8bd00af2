"""One root however it is spelled (`../root`, a symlink to it), and one video however many
symlinks reach it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from preprocess.config import ExtractConfig
from preprocess.datasets import list_videos
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards


def _video(path: Path, seed: int) -> None:
    scene = Scene(height=48, width=64, num_frames=5, bg_velocity=(1.0, 0.0), seed=seed,
                  objects=(MovingObject(12, (10, 10), (1.0, 1.0)),))
    encode(path, render(scene), codec="h264")


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "data" / "corpus"
    _video(root / "cls" / "clip", 1)
    _video(tmp_path / "outside", 2)
    (root / "alias.mp4").symlink_to(root / "cls" / "clip.mp4")  # the same file as cls/clip.mp4
    (root / "extra.mp4").symlink_to(tmp_path / "outside.mp4")   # a file only a link reaches
    return root


def test_a_file_reached_by_a_symlink_is_listed_once(corpus):
    items = list_videos("folder", root=corpus)
    assert sorted(Path(it.path).relative_to(corpus).as_posix() for it in items) == ["cls/clip.mp4", "extra.mp4"]
    assert sorted(it.video_id for it in items) == ["clip", "extra"]


def test_the_same_root_through_a_symlink_or_dotdot_resumes_the_set(corpus, tmp_path, monkeypatch):
    out = tmp_path / "s"
    cfg = ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=48, workers=0)
    first = run(cfg, log=lambda line: None)
    assert (first["done"], first["failed"]) == (2, 0)
    (tmp_path / "link").symlink_to(corpus)
    monkeypatch.chdir(tmp_path / "data")
    for spelled in (str(tmp_path / "link"), os.path.join("..", "data", "corpus"), "corpus/"):
        again = run(ExtractConfig(dataset="folder", root=spelled, out=str(out), short_side=48, workers=0),
                    log=lambda line: None)
        assert (again["skipped"], again["done"]) == (2, 0), spelled
    with open_shards(str(out)) as ds:
        assert ds.attrs["config"]["root"] == os.path.realpath(corpus)


def test_a_set_that_stored_an_unresolved_root_resumes_through_the_resolved_one(corpus, tmp_path):
    from preprocess.resume import source_diff

    (tmp_path / "link").symlink_to(corpus)
    cfg = ExtractConfig(dataset="folder", root=os.path.realpath(corpus))
    assert source_diff({"dataset": "folder", "root": str(tmp_path / "link")}, cfg) == ""
    assert source_diff({"dataset": "folder", "root": str(tmp_path)}, cfg).startswith("root: ")
