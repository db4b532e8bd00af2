"""remove_set: what --overwrite deletes is exactly what the shard set owns."""
from __future__ import annotations

import pytest

from shards.lock import LOCK_NAME
from shards.writer import ForeignFiles, open_writer, remove_set


@pytest.mark.parametrize("fmt,root_file", [("zarr", "zarr.json"), ("hdf5", "motion_mae.json")])
def test_owned_names_only(tmp_path, fmt, root_file):
    out = tmp_path / "set"
    open_writer(out, format=fmt, config={"a": 1}).finalize()
    (out / "manifest.json").write_text("{}")
    (out / ".manifest.json.0123abcd.tmp").write_text("half")  # a crashed manifest write
    (out / LOCK_NAME).write_text("{}")  # this run's lock: kept
    (out / "clip.mp4").write_bytes(b"a source video")
    with pytest.raises(ForeignFiles, match=r"\(clip.mp4\); deleted nothing"):
        remove_set(str(out), fmt)
    assert (out / root_file).exists() and (out / "clip.mp4").exists()
    (out / "clip.mp4").unlink()
    removed = remove_set(str(out), fmt)
    assert removed == sorted([".manifest.json.0123abcd.tmp", "failures", "manifest.json", root_file, "videos"])
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_a_set_of_the_other_format_is_foreign(tmp_path):
    out = tmp_path / "set"
    open_writer(out, format="hdf5").finalize()
    with pytest.raises(ForeignFiles, match="motion_mae.json"):
        remove_set(str(out), "zarr")
    assert remove_set(str(tmp_path / "absent"), "zarr") == []
