"""--overwrite deletes only what the set wrote; --out never shares folders with the corpus.

The case these guard: a corpus kept in `<root>/videos/` (UCF101 and HMDB51 as OpenMMLab ships
them, SSv2) with `--out` equal to `--root`, where an --overwrite once removed every source video.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.synthetic import Scene, encode, render
from shards.cli import UsageError
from shards.writer import ForeignFiles, open_writer, remove_set


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A corpus in the SSv2 / OpenMMLab layout: its videos in <root>/videos/."""
    root = tmp_path_factory.mktemp("ssv2like")
    clip = render(Scene(height=64, width=64, num_frames=6, bg_velocity=(1.0, 0.0), seed=1))
    encode(root / "videos" / "101", clip, codec="h264")
    encode(root / "videos" / "102", clip, codec="h264")
    return root


def _cfg(root: Path, out: Path, **kw) -> ExtractConfig:
    return ExtractConfig(**{"dataset": "folder", "root": str(root), "out": str(out), "short_side": 64,
                            "workers": 0, **kw})


def _tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("where", ["root", "inside", "holds"])
def test_out_sharing_the_corpus_is_refused_before_anything_is_written(corpus, tmp_path, where):
    before = _tree(corpus)
    out = {"root": corpus, "inside": corpus / "shards", "holds": corpus.parent}[where]
    phrase = {"root": "is the corpus root", "inside": "lies inside the corpus root",
              "holds": "holds the corpus root"}[where]
    with pytest.raises(UsageError, match=phrase + r".*Write the set outside the corpus, e\.g\. --out "):
        run(_cfg(corpus, out, overwrite=True), log=_quiet)
    assert _tree(corpus) == before
    assert not (corpus / "shards").exists()


def test_the_same_folder_through_a_symlink_is_the_corpus_too(corpus, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(corpus)
    with pytest.raises(UsageError, match="is the corpus root"):
        run(_cfg(corpus, link), log=_quiet)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_overwrite_keeps_a_users_videos_under_the_sets_videos_folder(corpus, tmp_path, fmt):
    """A set written beside the corpus, then a user's file put into its videos/ folder (at the
    top of it and deeper): --overwrite refuses, naming them, and deletes nothing."""
    out = tmp_path / "set"
    assert run(_cfg(corpus, out, format=fmt), log=_quiet)["done"] == 2
    owned = _tree(out)
    (out / "videos" / "mine.mp4").write_bytes(b"a user's video")
    (out / "videos" / "class_a").mkdir()
    (out / "videos" / "class_a" / "v.avi").write_bytes(b"another")
    with pytest.raises(ForeignFiles, match=r"videos/class_a/v\.avi, videos/mine\.mp4\); deleted nothing"):
        run(_cfg(corpus, out, format=fmt, short_side=48, overwrite=True), log=_quiet)
    assert set(owned) | {"videos/mine.mp4", "videos/class_a/v.avi"} == set(_tree(out))
    # moved away, the same command replaces the set
    (out / "videos" / "mine.mp4").unlink()
    (out / "videos" / "class_a" / "v.avi").unlink()
    (out / "videos" / "class_a").rmdir()
    assert run(_cfg(corpus, out, format=fmt, short_side=48, overwrite=True), log=_quiet)["done"] == 2


def test_a_file_inside_a_video_group_is_foreign(tmp_path):
    """Deeper than a group's own arrays: a file where zarr writes none."""
    out = tmp_path / "set"
    writer = open_writer(out, format="zarr", config={"a": 1})
    writer.write_failure("bad", {"source": "bad.mp4", "reason": "why", "stage": "open"})
    writer.finalize()
    group = out / "videos" / "v1"
    group.mkdir(parents=True)
    (group / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"complete": true}}')
    (group / "notes.txt").write_text("mine")
    (out / "failures" / "readme.md").write_text("mine too")
    with pytest.raises(ForeignFiles, match=r"videos/v1/notes\.txt, failures/readme\.md"):
        remove_set(str(out), "zarr")
    (group / "notes.txt").unlink()
    (out / "failures" / "readme.md").unlink()
    assert "videos" in remove_set(str(out), "zarr")


def test_a_zarr_group_without_the_sets_attrs_is_foreign(tmp_path):
    """Another tool's zarr store under videos/ has the shape but not the set's commit flag."""
    out = tmp_path / "set"
    open_writer(out, format="zarr", config={"a": 1}).finalize()
    other = out / "videos" / "their_store"
    other.mkdir(parents=True)
    (other / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(ForeignFiles, match="videos/their_store/zarr.json"):
        remove_set(str(out), "zarr")
    assert (other / "zarr.json").exists()


def test_an_hdf5_file_the_set_did_not_write_is_foreign(tmp_path):
    import h5py

    out = tmp_path / "set"
    open_writer(out, format="hdf5", config={"a": 1}).finalize()
    with h5py.File(out / "videos" / "theirs.h5", "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(ForeignFiles, match="videos/theirs.h5"):
        remove_set(str(out), "hdf5")
