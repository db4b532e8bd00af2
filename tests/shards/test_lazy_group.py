"""A committed video opened from its zarr.json alone (shards/lazy_group.py) is the video zarr
opens: the same arrays with the same metadata and values, on zarr and packed sets; a video
without consolidated metadata, and verify's fresh reads, still go through zarr.open_group."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from shards import open_shards, open_writer
from shards.__main__ import main
from shards.lazy_group import LazyArrays, consolidated_children, open_video

from .helpers import make_arrays, video_attrs


def write_set(path, n=2):
    w = open_writer(path, format="zarr")
    for i in range(n):
        attrs = video_attrs(num_frames=10)
        w.write_video(f"v{i}", make_arrays(attrs, seed=i), attrs)
    w.finalize()


def test_lazy_arrays_match_zarr_open_group(tmp_path):
    path = tmp_path / "s"
    write_set(path)
    with open_shards(path) as ds:
        video = ds["v1"]
        assert isinstance(video._raws, LazyArrays)
        assert not video._raws._built  # nothing built until read
        group = zarr.open_group(str(path / "videos" / "v1"), mode="r")
        assert dict(group.attrs) == video.attrs
        assert sorted(video._raws) == sorted(name for name, _ in group.arrays())
        for name, ref in group.arrays():
            lazy = video._raws[name]
            assert lazy.metadata == ref.metadata, name
            np.testing.assert_array_equal(lazy[:], ref[:], err_msg=name)
        # reading one array builds only that one
        other = ds["v0"]
        other["mv"][:]
        assert set(other._raws._built) == {"mv"}


def test_videos_of_one_shape_share_parsed_metadata_and_keep_their_values(tmp_path):
    path = tmp_path / "s"
    write_set(path)
    arrays = [make_arrays(video_attrs(num_frames=10), seed=i) for i in range(2)]
    with open_shards(path) as ds:
        a, b = ds["v0"]._raws["mv"], ds["v1"]._raws["mv"]
        assert a.metadata is b.metadata  # parsed once (shards.lazy_group.parsed_metadata)
        for i, arr in enumerate((a, b)):
            np.testing.assert_array_equal(arr[:], zarr.open_group(str(path / "videos" / f"v{i}"), mode="r")["mv"][:])
        assert not np.array_equal(a[:], b[:]) and not np.array_equal(arrays[0]["mv"], arrays[1]["mv"])


def test_packed_set_opens_lazily_with_the_same_values(tmp_path):
    src, dst = tmp_path / "s", tmp_path / "p"
    write_set(src)
    assert main(["pack", str(src), str(dst)]) == 0
    with open_shards(src) as a, open_shards(dst) as b:
        for vid in a.ids():
            va, vb = a[vid], b[vid]
            assert isinstance(vb._raws, LazyArrays)
            assert va.attrs == vb.attrs
            for name in ("frames", "mv", "flow", "traj", "hog"):
                np.testing.assert_array_equal(va[name][:], vb[name][:], err_msg=f"{vid} {name}")


def test_document_without_consolidated_metadata_falls_back(tmp_path):
    path = tmp_path / "s"
    write_set(path)
    doc_path = path / "videos" / "v1" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    assert consolidated_children(doc)  # the writer consolidates every committed video
    doc.pop("consolidated_metadata")
    assert consolidated_children(doc) is None and open_video(json.dumps(doc).encode(), None, "x") is None
    doc_path.write_text(json.dumps(doc))
    with open_shards(path) as ds:  # read through zarr.open_group, the same values
        video = ds["v1"]
        assert not isinstance(video._raws, LazyArrays)
        assert video["mv"].shape[0] == 10
    assert main(["verify", str(path)]) == 0


def test_absent_video_is_a_key_error(tmp_path):
    path = tmp_path / "s"
    write_set(path)
    with open_shards(path) as ds:
        with pytest.raises(KeyError):
            ds._backend.video("nope")
