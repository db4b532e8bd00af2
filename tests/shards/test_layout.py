"""Shard-set semantics: versions, commit markers, failures, URLs, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import uuid

import h5py
import numpy as np
import pytest
import zarr

from shards import SchemaVersionError, hdf5_store, index, open_shards, open_writer, zarr_store

from .helpers import as_stored, make_arrays, video_attrs, write_videos

FORMATS = ["zarr", "hdf5"]
BACKENDS = {"zarr": zarr_store, "hdf5": hdf5_store}


def write_one(path, fmt, video_id="v", seed=0, **size):
    attrs = video_attrs(**size)
    w = open_writer(path, format=fmt)
    w.write_video(video_id, make_arrays(attrs, seed=seed), attrs)
    return w


def set_root_version(path, fmt, version):
    if fmt == "zarr":
        root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        info = dict(root.attrs["motion_mae"], schema_version=version)
        root.update_attributes({"motion_mae": info})
    else:
        attrs = json.loads((path / "motion_mae.json").read_text())
        attrs["motion_mae"]["schema_version"] = version
        (path / "motion_mae.json").write_text(json.dumps(attrs))


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_schema_version_refused(tmp_path, fmt):
    write_one(tmp_path / "s", fmt).finalize()
    set_root_version(tmp_path / "s", fmt, 999)
    with pytest.raises(SchemaVersionError, match=r"999.*supported: 2.*Re-extract"):
        open_shards(tmp_path / "s")
    with pytest.raises(SchemaVersionError):
        open_writer(tmp_path / "s", format=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_version_1_set_refused_with_the_reason_and_the_fix(tmp_path, fmt):
    """Schema 1 wrote no chunk checksums (and zarr skipped all-zero chunks): refused, not
    read without the integrity checks."""
    write_one(tmp_path / "s", fmt).finalize()
    set_root_version(tmp_path / "s", fmt, 1)
    with pytest.raises(SchemaVersionError, match=r"version 1 \(chunks without checksums.*Re-extract"):
        open_shards(tmp_path / "s")


def test_not_a_shard_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a shard set"):
        open_shards(tmp_path)
    zarr.open_group(str(tmp_path / "z"), mode="w")  # a zarr root without motion_mae attrs
    with pytest.raises(SchemaVersionError, match="not a motion-mae shard set"):
        open_shards(tmp_path / "z")


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_write_is_not_listed_and_is_redone(tmp_path, fmt, monkeypatch):
    path = tmp_path / "s"
    write_one(path, fmt, "done")
    crash = RuntimeError("worker killed")
    target = (zarr.Group, "create_array") if fmt == "zarr" else (h5py.Group, "create_dataset")
    original = getattr(*target)

    def dies_on_flow(self, name, *args, **kwargs):
        if name == "flow":
            raise crash
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(*target, dies_on_flow)
    with pytest.raises(RuntimeError):
        write_one(path, fmt, "half")
    monkeypatch.setattr(*target, original)

    w = open_writer(path, format=fmt)
    assert w.done_ids() == {"done"}
    with open_shards(path) as ds:
        assert ds.ids() == ["done"] and "half" not in ds
        with pytest.raises(KeyError, match="done"):  # the message lists existing ids
            ds["half"]
    write_one(path, fmt, "half", seed=5)  # the resumed run redoes it
    w.finalize()
    with open_shards(path) as ds:
        assert ds.ids() == ["done", "half"]
        np.testing.assert_array_equal(ds["half"]["frames"][:], as_stored("frames", make_arrays(video_attrs(), seed=5)["frames"]))
    assert not list((path / "videos").glob(".*.tmp"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_failures_round_trip_and_clear_on_success(tmp_path, fmt):
    path = tmp_path / "s"
    w = open_writer(path, format=fmt)
    w.write_failure("broken", {"source": "a/broken.mp4", "reason": "moov atom not found", "stage": "open"})
    w.write_failure("retry", {"source": "a/retry.mp4", "reason": "timeout", "stage": "flow"})
    with pytest.raises(ValueError, match="lacks"):
        w.write_failure("x", {"source": "x"})
    assert w.failed_ids() == {"broken", "retry"}
    attrs = video_attrs()
    w.write_video("retry", make_arrays(attrs), attrs)  # succeeded on the second run
    w.finalize()
    assert w.failed_ids() == {"broken"} and w.done_ids() == {"retry"}
    with open_shards(path) as ds:
        assert ds.failures() == [{"source": "a/broken.mp4", "reason": "moov atom not found",
                                  "stage": "open", "id": "broken"}]
        assert ds.ids() == ["retry"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_reopen_keeps_first_config(tmp_path, fmt):
    path = tmp_path / "s"
    first = {"flow": "dis", "traj_len": 6, "workers": np.int64(2)}
    assert open_writer(path, format=fmt, config=first).config() == {"flow": "dis", "traj_len": 6, "workers": 2}
    assert open_writer(path, format=fmt).config()["traj_len"] == 6  # workers reopen without one
    w = open_writer(path, format=fmt, config={"flow": "dis", "traj_len": 4})
    assert w.config()["traj_len"] == 6  # the caller compares and decides
    assert open_shards(path).attrs["config"]["traj_len"] == 6
    other = "hdf5" if fmt == "zarr" else "zarr"
    with pytest.raises(ValueError, match=f"format='{fmt}'"):
        open_writer(path, format=other)


@pytest.mark.parametrize("fmt", FORMATS)
def test_fsspec_urls(tmp_path, fmt):
    urls = [f"file://{tmp_path}/s"]
    if fmt == "zarr":
        urls.append(f"memory://shards-{uuid.uuid4().hex}")
    for url in urls:
        w = write_one(url, fmt, "v", seed=1)
        w.finalize()
        with open_shards(url) as ds:
            assert ds.ids() == ["v"]
            want = make_arrays(video_attrs(), seed=1)
            np.testing.assert_array_equal(ds["v"]["frames"][2:4], as_stored("frames", want["frames"][2:4]))
            assert ds.nbytes("v")["frames"] > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_pickles_for_dataloader_workers(tmp_path, fmt):
    write_one(tmp_path / "s", fmt).finalize()
    ds = open_shards(tmp_path / "s")
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.ids() == ds.ids() and ds2.format == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_concurrent_writers_both_land(tmp_path, fmt):
    path = str(tmp_path / "s")
    open_writer(path, format=fmt, config={"run": 1})  # the driver creates the root first
    ctx = mp.get_context("spawn")
    jobs = [ctx.Process(target=write_videos, args=(path, fmt, [f"p{k}_{i}" for i in range(3)], 10 * k))
            for k in range(2)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join(120)
        assert j.exitcode == 0
    w = open_writer(path, format=fmt)
    w.finalize()
    with open_shards(path) as ds:
        assert ds.ids() == sorted(f"p{k}_{i}" for k in range(2) for i in range(3))
        for k in range(2):
            for i in range(3):
                want = make_arrays(video_attrs(num_frames=5 + i), seed=10 * k + i)
                np.testing.assert_array_equal(ds[f"p{k}_{i}"]["frames"][:], as_stored("frames", want["frames"]))
        assert ds.attrs["config"] == {"run": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_finalize_index_splits_labels_and_stale_index(tmp_path, fmt):
    path = tmp_path / "s"
    w = open_writer(path, format=fmt, config={"run": 1})
    for vid, label, split in (("b", 1, "train"), ("a", 0, "val"), ("c", None, "train")):
        attrs = video_attrs(label=label, label_name=None if label is None else f"class{label}", split=split)
        assert w.write_video(vid, make_arrays(attrs), attrs) > 0  # bytes in the store
    w.finalize()
    with open_shards(path) as ds:
        assert ds.ids() == ["a", "b", "c"] and ds.ids(split="train") == ["b", "c"]
        assert ds.labels() == {"a": 0, "b": 1, "c": None} and ds.labels(split="val") == {"a": 0}
        assert ds.meta()["a"] == {"label": 0, "split": "val", "num_frames": 9}
        assert ds._backend.index["label_names"] == {"0": "class0", "1": "class1"}
        assert "index" not in ds.attrs
        assert ds.video_bytes("a") >= sum(ds.nbytes("a").values())
    root_file = path / ("zarr.json" if fmt == "zarr" else "motion_mae.json")
    w = open_writer(path, format=fmt, config={"run": 2})  # a resumed driver: the index is stale now
    assert json.loads(root_file.read_text()).get("attributes", {}).get("index") is None
    assert json.loads(root_file.read_text()).get("index") is None
    before = root_file.stat().st_mtime_ns
    open_writer(path, format=fmt)  # workers reopening the root leave it untouched
    assert root_file.stat().st_mtime_ns == before
    attrs = video_attrs(label=3, split="val")
    w.write_video("d", make_arrays(attrs), attrs)
    with open_shards(path) as ds:  # no index: answered from each video's attrs
        assert ds.ids(split="val") == ["a", "d"] and ds.labels()["d"] == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_finalize_after_resume_reads_only_new_videos(tmp_path, fmt, monkeypatch):
    """A resumed run's finalize takes the rows of videos the last index lists from it and reads
    only the new videos' attrs; the index equals one built from every video."""
    path = tmp_path / "s"
    w = open_writer(path, format=fmt, config={"run": 1})
    for vid, label in (("a", 0), ("b", 1), ("c", 0)):
        attrs = video_attrs(label=label, label_name=f"class{label}", split="train")
        w.write_video(vid, make_arrays(attrs), attrs)
    w.finalize()
    reads = []
    real = index.incremental_index

    def counting(base, committed, read_attrs):
        return real(base, committed, lambda vid: reads.append(vid) or read_attrs(vid))

    monkeypatch.setattr(BACKENDS[fmt], "incremental_index", counting)
    w = open_writer(path, format=fmt)  # the resumed driver
    assert w.done_ids() == {"a", "b", "c"}
    attrs = video_attrs(label=2, label_name="class2", split="val")
    w.write_video("d", make_arrays(attrs), attrs)
    assert w.done_ids() == {"a", "b", "c", "d"}
    w.finalize()
    assert reads == ["d"]
    with open_shards(path) as ds:
        assert ds.ids() == ["a", "b", "c", "d"] and ds.ids(split="val") == ["d"]
        assert ds.labels() == {"a": 0, "b": 1, "c": 0, "d": 2}
        assert ds._backend.index["label_names"] == {"0": "class0", "1": "class1", "2": "class2"}
        assert "index_base" not in ds.attrs
        full = index.build_index((vid, ds[vid].attrs) for vid in ds.ids())
        assert ds._backend.index == full


def test_index_rows_round_trip():
    rows = {"x": {"label": 1, "label_name": "one", "split": "train", "num_frames": 5},
            "y": {"label": None, "split": None, "num_frames": 7}}
    back = index.index_rows(index.build_index(rows.items()))
    assert back == {"x": rows["x"], "y": {"label": None, "split": None, "num_frames": 7}}
    assert index.index_rows(None) == {}
