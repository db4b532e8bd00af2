"""Integrity at rest: a deleted, truncated or bit-flipped chunk never decodes silently.

Each damage is applied to a real written set (zarr and HDF5, JPEG frames and motion arrays);
`python -m shards verify` must list it as `video / array / cause` and exit 1, and reading the
array through `open_shards` must raise an error naming the video and the array.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from shards import open_shards, open_writer
from shards.__main__ import main
from shards.reader import ShardReadError

from .helpers import make_arrays, video_attrs


def write_set(path: Path, fmt: str) -> None:
    w = open_writer(path, format=fmt)
    for i in range(2):
        attrs = video_attrs(num_frames=12)
        w.write_video(f"v{i}", make_arrays(attrs, seed=i), attrs)
    w.finalize()


def zarr_shard(path: Path, array: str) -> Path:
    files = [p for p in (path / "videos" / "v1" / array / "c").rglob("*") if p.is_file()]
    assert len(files) == 1  # one shard file per array
    return files[0]


def hdf5_chunk(path: Path, array: str) -> tuple[int, int]:
    with h5py.File(path / "videos" / "v1.h5", "r") as f:
        info = f[array].id.get_chunk_info(1)
    return info.byte_offset, info.size


def damage(path: Path, fmt: str, array: str, how: str) -> None:
    if fmt == "zarr":
        shard = zarr_shard(path, array)
        data = bytearray(shard.read_bytes())
        if how == "delete":
            shard.unlink()
        elif how == "truncate":
            shard.write_bytes(bytes(data[: len(data) // 2]))
        else:  # flip bytes in the middle of the payload (the chunks, not the index at the end)
            mid = len(data) // 3
            data[mid:mid + 4] = bytes(b ^ 0xFF for b in data[mid:mid + 4])
            shard.write_bytes(bytes(data))
        return
    file = path / "videos" / "v1.h5"
    data = bytearray(file.read_bytes())
    if how == "truncate":
        file.write_bytes(bytes(data[: len(data) * 2 // 3]))
    else:  # flip (hdf5 has no chunk files to delete: "delete" zeroes a chunk)
        offset, size = hdf5_chunk(path, array)
        mid = offset + size // 2
        data[mid:mid + 4] = bytes(4) if how == "delete" else bytes(b ^ 0xFF for b in data[mid:mid + 4])
        file.write_bytes(bytes(data))


CASES = [(fmt, array, how) for fmt in ("zarr", "hdf5") for array in ("frames", "mv", "mv_valid", "flow")
         for how in ("delete", "truncate", "flip")]
# schema 3: what each stored array's damage also breaks (verify computes derived arrays)
DERIVED_FROM = {"frames": ("hog",), "flow": ("traj", "traj_valid")}


@pytest.mark.parametrize("fmt, array, how", CASES)
def test_damage_is_reported_and_never_decodes(tmp_path, fmt, array, how, capsys):
    path = tmp_path / "s"
    write_set(path, fmt)
    assert main(["verify", str(path)]) == 0
    capsys.readouterr()
    damage(path, fmt, array, how)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("v1 / ")]
    assert bad, out
    whole_file = fmt == "hdf5" and how == "truncate"  # the file no longer opens
    if whole_file:
        assert all(line.startswith("v1 / -") for line in bad), out
    else:
        names = {line.split(" / ")[1] for line in bad}
        assert names == {array, *DERIVED_FROM.get(array, ())}, out
        # a derived array's line names the stored array that broke it
        assert all(f"array '{array}'" in line for line in bad if line.split(" / ")[1] != array), out
    assert not any(line.startswith("v0 / ") for line in out.splitlines()), out
    assert "problems in 1 videos" in out
    with pytest.raises(ShardReadError) as err:
        with open_shards(path) as ds:
            np.asarray(ds["v1"][array][:])
    assert "v1" in str(err.value) and (whole_file or array in str(err.value)), err.value


def test_all_zero_chunks_are_written_so_a_missing_one_is_damage(tmp_path):
    """zarr skips all-fill chunks by default: a deleted chunk would then read as zeros."""
    path = tmp_path / "s"
    attrs = video_attrs(num_frames=12)
    arrays = make_arrays(attrs, seed=0)
    arrays["mv"][:] = 0
    arrays["mv_valid"][:] = False
    open_writer(path, format="zarr").write_video("v1", arrays, attrs)
    shard = zarr_shard(path, "mv")
    assert shard.stat().st_size > 0
    shard.unlink()
    with pytest.raises(ShardReadError, match=r"video 'v1' array 'mv'.*MissingChunkError"):
        open_shards(path)["v1"]["mv"][0:4]


def test_verify_in_parallel_lists_the_same_problems(tmp_path, capsys):
    path = tmp_path / "s"
    write_set(path, "zarr")
    damage(path, "zarr", "mv", "flip")
    assert main(["verify", str(path)]) == 1
    serial = capsys.readouterr().out
    assert main(["verify", str(path), "--workers", "2"]) == 1
    assert capsys.readouterr().out == serial


def test_loader_names_video_and_array(tmp_path):
    from train.clips.dataset import ClipSpec, read_clip

    path = tmp_path / "s"
    write_set(path, "zarr")
    damage(path, "zarr", "flow", "delete")
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, needs=frozenset({"flow", "traj"}))
    with open_shards(path) as ds, pytest.raises(ShardReadError, match=r"video 'v1' array 'flow'"):
        read_clip(ds["v1"], spec, np.random.default_rng(0))


@pytest.mark.parametrize("node", ["videos/v1/zarr.json", "videos/v1/mv/zarr.json"])
def test_damaged_video_metadata_is_a_finding_not_a_crash(tmp_path, node, capsys):
    """verify lists videos from a directory listing, so a video whose own zarr.json (or an
    array's) no longer parses is reported, and the other video is still checked."""
    path = tmp_path / "s"
    write_set(path, "zarr")
    (path / node).write_text("{not json")
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("v1 / ")]
    assert bad and all(line.startswith("v1 / - / cannot open: JSONDecodeError") for line in bad), out
    assert not any(line.startswith("v0 / ") for line in out.splitlines()), out
    assert "2 videos (2 committed)" in out and "problems in 1 videos" in out
    if node == "videos/v1/zarr.json":
        with pytest.raises(ShardReadError, match=r"video 'v1': cannot open: JSONDecodeError"):
            open_shards(path)["v1"]
