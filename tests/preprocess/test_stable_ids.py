"""A video in a shard set keeps its id whatever is added to the corpus, and no id is ever a
name the store keeps for itself."""
from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.config import ExtractConfig
from preprocess.datasets.base import KnownIds, VideoItem, safe_id, unique_ids
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards
from shards.schema import RESERVED_IDS
from shards.writer import check_video_id


def _items(root: Path, *relpaths: str) -> list[VideoItem]:
    return [VideoItem(safe_id(Path(r).stem), str(root / r), None, None, None) for r in relpaths]


def test_existing_ids_win_over_added_files(tmp_path):
    first = unique_ids(_items(tmp_path, "b/x.mp4"), tmp_path)
    assert [it.video_id for it in first] == ["x"]
    known = KnownIds(str(tmp_path), {"b/x.mp4": "x"})
    # a new file that sorts before the existing one, and one after: neither takes "x"
    grown = {Path(it.path).relative_to(tmp_path).as_posix(): it.video_id
             for it in unique_ids(_items(tmp_path, "a/x.mp4", "b/x.mp4", "c/x.mp4"), tmp_path, known)}
    assert grown["b/x.mp4"] == "x"
    assert grown["a/x.mp4"].startswith("x__") and grown["c/x.mp4"].startswith("x__")
    # the new ids depend only on their own paths: the same without the set, and in any company
    fresh = {Path(it.path).relative_to(tmp_path).as_posix(): it.video_id
             for it in unique_ids(_items(tmp_path, "a/x.mp4", "b/x.mp4", "c/x.mp4"), tmp_path)}
    assert fresh["a/x.mp4"] == grown["a/x.mp4"] and fresh["c/x.mp4"] == grown["c/x.mp4"]
    # a set's video whose file is gone still holds its id
    alone = unique_ids(_items(tmp_path, "a/x.mp4"), tmp_path, known)
    assert alone[0].video_id == grown["a/x.mp4"]


def test_known_ids_hold_for_the_same_root_however_spelled(tmp_path):
    real = tmp_path / "corpus"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    known = KnownIds(str(tmp_path / "link"), {"b/x.mp4": "x"})
    ids = {it.path: it.video_id for it in unique_ids(_items(real, "a/x.mp4", "b/x.mp4"), real, known)}
    assert ids[str(real / "b/x.mp4")] == "x"
    other = KnownIds(str(tmp_path / "elsewhere"), {"b/x.mp4": "x"})  # another root: not its videos
    assert all(i.startswith("x__") for i in (it.video_id for it in unique_ids(_items(real, "a/x.mp4", "b/x.mp4"),
                                                                                real, other)))


@pytest.mark.parametrize("stem", ["zarr.json", "ZARR.JSON", "Zarr.Json", ".hidden", "__x"])
def test_ids_never_take_a_name_the_store_keeps(stem):
    vid = safe_id(stem)
    check_video_id(vid)  # would raise ValueError
    assert vid.casefold() not in RESERVED_IDS
    for reserved in RESERVED_IDS:
        with pytest.raises(ValueError, match="name of a file of the store"):
            check_video_id(reserved)


def _video(path: Path, seed: int) -> None:
    scene = Scene(height=48, width=64, num_frames=5, bg_velocity=(1.0, 0.0), seed=seed,
                  objects=(MovingObject(12, (10, 10), (1.0, 1.0)),))
    encode(path, render(scene), codec="h264")


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_a_file_added_with_an_existing_name_is_extracted_once_beside_it(tmp_path, fmt):
    root, out = tmp_path / "corpus", tmp_path / "s"
    _video(root / "b" / "x", 1)
    _video(root / "zarr.json.mp4", 2)  # a stem that is a store file name
    _video(root / "c.mp4", 3)
    cfg = ExtractConfig(dataset="folder", root=str(root), out=str(out), format=fmt, short_side=48, workers=0)
    first = run(cfg, log=lambda line: None)
    assert (first["done"], first["failed"]) == (3, 0)
    with open_shards(str(out)) as ds:
        assert sorted(ds.ids()) == ["c", "vzarr.json", "x"]
        stamp = ds.video("x").attrs["source_relpath"]
    _video(root / "a" / "x", 4)  # sorts before b/x.mp4, in another class folder
    again = run(cfg, log=lambda line: None)
    assert (again["done"], again["skipped"], again["failed"]) == (1, 3, 0)
    with open_shards(str(out)) as ds:
        ids = sorted(ds.ids())
        assert len(ids) == 4 and "x" in ids
        (new,) = [i for i in ids if i.startswith("x__")]
        assert ds.video("x").attrs["source_relpath"] == stamp == os_path("b/x.mp4")
        assert ds.video(new).attrs["source_relpath"] == os_path("a/x.mp4")
    assert run(cfg, log=lambda line: None)["done"] == 0  # nothing moves on the next run either


def os_path(posix: str) -> str:
    return str(Path(posix))
