"""Integrity at rest of a packed set, as tests/shards/test_integrity.py for the unpacked ones.

The damage lands on the bytes of one video (v1) inside a pack file that also holds v0:
`python -m shards verify` must list it as `v1 / array / cause` (or `v1 / -` when the video
no longer opens) and exit 1, leave v0 clean, and reading through `open_shards` must raise an
error naming the video (and the array)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shards import open_shards
from shards.cli import CliError
from shards.__main__ import main
from shards.pack import pack
from shards.packed_store import PACK_DIR, ROOT_FILE
from shards.reader import ShardReadError

from .test_pack import write_set


def packed(tmp_path: Path, per_file: int = 2) -> Path:
    write_set(tmp_path / "src", n=2)
    pack(str(tmp_path / "src"), str(tmp_path / "p"), videos_per_file=per_file, log=lambda s: None)
    return tmp_path / "p"


def entry(path: Path, video_id: str, key_prefix: str) -> tuple[Path, int, int]:
    """(pack file, offset, length) of the first key of `video_id` under `key_prefix`."""
    with open_shards(path) as ds:
        store = ds._backend.store(video_id)
        key = next(k for k in sorted(store._dir) if k.startswith(key_prefix))
        offset, length = store._dir[key]
        return Path(store._pack.path), offset, length


def damage(path: Path, array: str, how: str) -> None:
    file, offset, length = entry(path, "v1", f"{array}/c/")
    data = bytearray(file.read_bytes())
    if how == "truncate":  # in the middle of v1's chunks: its metadata after them is gone too
        file.write_bytes(bytes(data[: offset + length // 2]))
        return
    mid = offset + length // 3  # the chunks, not the shard index at the end
    while how == "zero" and data[mid:mid + 4] == bytes(4):  # zeroing zeros would damage nothing
        mid += 1
    data[mid:mid + 4] = bytes(4) if how == "zero" else bytes(b ^ 0xFF for b in data[mid:mid + 4])
    file.write_bytes(bytes(data))


def verify_lines(path: Path, capsys) -> tuple[list[str], str]:
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert not any(line.startswith("v0 / ") for line in out.splitlines()), out
    return [line for line in out.splitlines() if line.startswith("v1 / ")], out


@pytest.mark.parametrize("array", ["frames", "mv", "mv_valid"])
@pytest.mark.parametrize("how", ["flip", "zero", "truncate"])
def test_damaged_chunks_are_reported_and_never_decode(tmp_path, array, how, capsys):
    path = packed(tmp_path)
    assert main(["verify", str(path)]) == 0
    capsys.readouterr()
    damage(path, array, how)
    bad, out = verify_lines(path, capsys)
    whole_video = how == "truncate"  # the metadata range is cut: the video no longer opens
    # an array derived from the damaged one (schema 3: hog from frames) names it as its cause
    assert bad and all(line.startswith("v1 / - / cannot open: PackDamaged") if whole_video
                       else line.startswith(f"v1 / {array} / unreadable")
                       or ("cannot be derived" in line and f"array {array!r}" in line) for line in bad), out
    assert whole_video or any(line.startswith(f"v1 / {array} / unreadable") for line in bad), out
    assert "problems in 1 videos" in out
    with pytest.raises(ShardReadError) as err:
        with open_shards(path) as ds:
            np.asarray(ds["v1"][array][:])
    assert "v1" in str(err.value) and (whole_video or f"array {array!r}" in str(err.value)), err.value
    with open_shards(path) as ds:  # the other video of the same file still reads
        assert ds["v0"][array][:].shape[0] == 6


def test_flipped_metadata_fails_its_checksum(tmp_path, capsys):
    path = packed(tmp_path)
    file, offset, length = entry(path, "v1", "mv/zarr.json")
    data = bytearray(file.read_bytes())
    # a digit in the JSON: still valid JSON, other numbers; only the checksum sees it
    pos = offset + data[offset:offset + length].index(b"shape")
    while not chr(data[pos]).isdigit():
        pos += 1
    data[pos] = ord("9") if data[pos] != ord("9") else ord("8")
    file.write_bytes(bytes(data))
    bad, out = verify_lines(path, capsys)
    assert bad == [line for line in bad if "crc32 mismatch" in line] and bad, out
    with pytest.raises(ShardReadError, match=r"video 'v1': cannot open: PackDamaged.*crc32"):
        open_shards(path)["v1"]


def test_missing_pack_file_names_its_videos(tmp_path, capsys):
    path = packed(tmp_path, per_file=1)
    (path / PACK_DIR / "00001.mmpack").unlink()
    bad, out = verify_lines(path, capsys)
    assert bad == [line for line in bad if line.startswith("v1 / - / cannot open: FileNotFoundError")] and bad, out
    assert "2 videos (2 committed)" in out and "problems in 1 videos" in out
    with open_shards(path) as ds:
        assert ds.ids() == ["v0", "v1"]  # the root lists it: the loss is reported, not hidden
        with pytest.raises(ShardReadError, match="video 'v1': cannot open"):
            ds["v1"]


def test_missing_chunk_key_is_damage_not_zeros(tmp_path):
    """A directory without a chunk key (a pack written by a buggy tool) reads as an error,
    never as zarr's fill values."""
    path = packed(tmp_path)
    with open_shards(path) as ds:
        store = ds._backend.store("v1")
    key = next(k for k in store._dir if k.startswith("mv/c/"))
    del store._dir[key]
    import zarr

    arr = zarr.open_group(store, mode="r")["mv"]
    with pytest.raises(FileNotFoundError, match=r"video 'v1' array 'mv': chunk mv/c/"):
        arr[0:2]


def test_damaged_root_is_one_line(tmp_path, capsys):
    path = packed(tmp_path)
    (path / ROOT_FILE).write_text("{not json")
    with pytest.raises(CliError) as err:
        main(["verify", str(path)])
    assert ROOT_FILE in str(err.value) and "not valid JSON" in str(err.value)
    doc = {"motion_mae": {"schema_version": 2}, "packed": {"version": 99}}
    (path / ROOT_FILE).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="pack layout version 99"):
        open_shards(path)
