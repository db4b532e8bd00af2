"""`python -m shards pack`: a finished set into a few large files that read back identically.

Every stored byte of a zarr source comes back byte for byte (the chunks keep their crc32c),
ids / meta / labels / splits / failures / sizes are the source's, a killed pack leaves no
set a reader opens and a re-run keeps the pack files already finished."""
from __future__ import annotations

import multiprocessing as mp
import pickle
from pathlib import Path

import numpy as np
import pytest

from shards import open_shards, open_writer
from shards.__main__ import main
from shards.cli import UsageError
from shards.pack import pack, video_keys
from shards.packed_store import PACK_DIR, ROOT_FILE

from .helpers import make_arrays, video_attrs


def write_set(path: Path, fmt: str = "zarr", n: int = 5) -> None:
    """`n` committed videos (of 3 splits, labelled), a failure record and a half-written video."""
    w = open_writer(path, format=fmt, config={"flow": "dis"})
    for i in range(n):
        attrs = video_attrs(num_frames=6 + i, label=i % 2, label_name=f"class{i % 2}",
                            split=("train", "val", "test")[i % 3])
        w.write_video(f"v{i}", make_arrays(attrs, seed=i), attrs)
    w.write_failure("broken", {"source": "broken.mp4", "reason": "no video stream", "stage": "decode"})
    w.finalize()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def assert_same_set(a, b) -> None:
    assert a.ids() == b.ids()
    assert a.meta() == b.meta() and a.labels() == b.labels()
    assert a.ids("val") == b.ids("val") and a.labels("train") == b.labels("train")
    assert a.failures() == b.failures()
    assert a.attrs == b.attrs
    for vid in a.ids():
        va, vb = a[vid], b[vid]
        assert va.attrs == vb.attrs and va.keys() == vb.keys()
        assert a.nbytes(vid) == b.nbytes(vid)
        for name in va.keys():
            np.testing.assert_array_equal(va[name][:], vb[name][:], err_msg=f"{vid}/{name}")
            idx = np.array([0, 2, 4])
            np.testing.assert_array_equal(va[name][idx], vb[name][idx], err_msg=f"{vid}/{name}")


def test_pack_zarr_copies_every_stored_byte(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "packed"
    write_set(src)
    summary = pack(str(src), str(dst), videos_per_file=2, log=lambda s: None)
    assert summary == {"videos": 5, "files": 3, "written": 3, "kept": 0, "incomplete_skipped": [],
                       "source_format": "zarr"}
    with open_shards(src) as a:  # unpacked: a zarr.json per group and array, one shard per array
        per_video = 1 + 2 * len(a["v0"].stored_names())
    assert all(len(files_under(src / "videos" / f"v{i}")) == per_video for i in range(5))
    assert [p.relative_to(dst).as_posix() for p in files_under(dst)] == [
        ROOT_FILE, f"{PACK_DIR}/00000.mmpack", f"{PACK_DIR}/00001.mmpack", f"{PACK_DIR}/00002.mmpack"]
    with open_shards(src) as a, open_shards(dst) as b:
        assert b.format == "packed" and len(b) == 5
        assert_same_set(a, b)
        for vid in a.ids():
            unpacked = {p.relative_to(src / "videos" / vid).as_posix(): p.read_bytes()
                        for p in files_under(src / "videos" / vid)}
            assert video_keys(b, vid) == unpacked  # byte for byte, whatever names are stored
            assert b.video_bytes(vid) > a.video_bytes(vid)  # plus the video's directory
            assert b.video_bytes(vid) - a.video_bytes(vid) < 2000
        assert b.failures() == [{"source": "broken.mp4", "reason": "no video stream", "stage": "decode",
                                 "id": "broken"}]


def test_pack_hdf5_and_repack(tmp_path):
    """An HDF5 source is re-encoded into zarr chunks (same values); a packed set re-packs."""
    write_set(tmp_path / "h5", fmt="hdf5", n=3)
    assert len(files_under(tmp_path / "h5" / "videos")) == 3  # one file per video
    pack(str(tmp_path / "h5"), str(tmp_path / "p1"), videos_per_file=3, log=lambda s: None)
    pack(str(tmp_path / "p1"), str(tmp_path / "p2"), videos_per_file=1, log=lambda s: None)
    assert len(list((tmp_path / "p2" / PACK_DIR).iterdir())) == 3
    with open_shards(tmp_path / "h5") as a, open_shards(tmp_path / "p1") as b, open_shards(tmp_path / "p2") as c:
        for vid in a.ids():
            for name in a[vid].keys():
                np.testing.assert_array_equal(a[vid][name][:], b[vid][name][:], err_msg=f"{vid}/{name}")
        assert video_keys(b, "v1") == video_keys(c, "v1")
        assert b.meta() == a.meta() == c.meta() and c.failures() == a.failures()


def test_killed_pack_is_not_a_set_and_rerun_finishes(tmp_path, monkeypatch):
    import shards.pack as packmod

    src, dst = tmp_path / "src", tmp_path / "packed"
    write_set(src)
    real = packmod.write_pack
    calls = []

    def dies_on_second(fs, final, ds, ids, number):
        calls.append(number)
        if len(calls) == 2:  # half a file on disk, then the process dies
            Path(f"{final}.partial").write_bytes(b"x")
            (Path(final).parent / f".{Path(final).name}.dead.tmp").write_bytes(b"half a pack")
            raise KeyboardInterrupt
        return real(fs, final, ds, ids, number)

    monkeypatch.setattr(packmod, "write_pack", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        pack(str(src), str(dst), videos_per_file=2, log=lambda s: None)
    Path(f"{dst}/{PACK_DIR}/00001.mmpack.partial").unlink()
    with pytest.raises(FileNotFoundError, match="not a shard set"):
        open_shards(dst)
    monkeypatch.setattr(packmod, "write_pack", real)
    lines: list[str] = []
    summary = pack(str(src), str(dst), videos_per_file=2, log=lines.append)
    assert summary["written"] == 2 and summary["kept"] == 1, lines
    assert "00000.mmpack: 2 videos already packed" in lines[0]
    assert not list((dst / PACK_DIR).glob(".*.tmp"))
    with open_shards(src) as a, open_shards(dst) as b:
        assert_same_set(a, b)
    # a re-pack with another N rewrites every file and drops the extra ones
    pack(str(src), str(dst), videos_per_file=4, log=lambda s: None)
    assert sorted(p.name for p in (dst / PACK_DIR).iterdir()) == ["00000.mmpack", "00001.mmpack"]
    with open_shards(src) as a, open_shards(dst) as b:
        assert_same_set(a, b)


def _read_in_child(ds, queue):
    queue.put(float(ds["v3"]["flow"][2:5].sum()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_get_their_own_handles(tmp_path, method):
    """A DataLoader worker reads from a forked copy or from the pickled set (spawn)."""
    write_set(tmp_path / "src")
    pack(str(tmp_path / "src"), str(tmp_path / "p"), videos_per_file=2, log=lambda s: None)
    ds = open_shards(tmp_path / "p")
    want = float(ds["v3"]["flow"][2:5].sum())  # the parent has opened its handle first
    assert pickle.loads(pickle.dumps(ds)).ids() == ds.ids()
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_child, args=(ds, queue))
    proc.start()
    got = queue.get(timeout=60)
    proc.join(timeout=60)
    assert got == want and proc.exitcode == 0
    assert float(ds["v3"]["flow"][2:5].sum()) == want


def test_cli_pack(tmp_path, capsys):
    src = tmp_path / "src"
    write_set(src, n=3)
    assert main(["pack", str(src), str(tmp_path / "p"), "--videos-per-file", "2"]) == 0
    assert "3 videos in 2 pack files (2 written, 0 already packed) from a zarr set" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "p")]) == 0
    assert "packed, schema v3, 3 videos (3 committed), 1 failures; 0 problems" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "p")]) == 0
    assert "format: packed" in capsys.readouterr().out
    with pytest.raises(UsageError, match="--videos-per-file: expected a whole number >= 1") as e:
        main(["pack", str(src), str(tmp_path / "q"), "--videos-per-file", "0"])
    assert e.value.exit_code == 2  # one line through run_main, as every command's usage error
    # a destination holding anything else (here: the source set itself) is left alone
    from shards.pack import ForeignDestination

    with pytest.raises(ForeignDestination, match="holds files that are not part of a packed set"):
        main(["pack", str(tmp_path / "p"), str(src)])
    assert not (src / PACK_DIR).exists() and not (src / ROOT_FILE).exists()


def test_a_second_pack_into_the_same_destination_is_refused(tmp_path):
    from shards.lock import SetLocked, writer_lock

    write_set(tmp_path / "src", n=1)
    with writer_lock(tmp_path / "p"):
        with pytest.raises(SetLocked):
            pack(str(tmp_path / "src"), str(tmp_path / "p"), log=lambda s: None)
    pack(str(tmp_path / "src"), str(tmp_path / "p"), log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [ROOT_FILE, PACK_DIR]


def test_packing_a_set_that_a_live_run_writes_is_refused(tmp_path):
    from shards.cli import CliError
    from shards.lock import writer_lock

    write_set(tmp_path / "src", n=1)
    with writer_lock(tmp_path / "src"):  # an extraction still running: its newest videos are not in yet
        with pytest.raises(CliError, match=r"pack: .*src is being written by another run \(host .*pid \d+"):
            main(["pack", str(tmp_path / "src"), str(tmp_path / "p")])
    assert not (tmp_path / "p").exists()
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "p")]) == 0  # finished: packed


def test_workers_write_the_same_packs(tmp_path):
    src = tmp_path / "src"
    write_set(src)
    pack(str(src), str(tmp_path / "serial"), videos_per_file=2, log=lambda s: None)
    lines: list[str] = []
    summary = pack(str(src), str(tmp_path / "parallel"), videos_per_file=2, log=lines.append, workers=2)
    assert summary["written"] == 3 and len(lines) == 3
    for name in ("00000.mmpack", "00001.mmpack", "00002.mmpack"):
        assert (tmp_path / "parallel" / PACK_DIR / name).read_bytes() == (tmp_path / "serial" / PACK_DIR / name).read_bytes()
    assert (tmp_path / "parallel" / ROOT_FILE).read_bytes() == (tmp_path / "serial" / ROOT_FILE).read_bytes()


def test_a_local_pack_is_read_straight_from_its_file(tmp_path):
    """A local packed set's shards are read by `shard_file` at their offsets in the pack file
    (the loader's direct read, not zarr's per-chunk pipeline): the same values as the
    source, and a flipped byte inside a chunk fails its crc32c as in an unpacked set."""
    from shards.shard_file import layout, read_frames

    write_set(tmp_path / "src")
    pack(str(tmp_path / "src"), str(tmp_path / "p"), videos_per_file=2, log=lambda s: None)
    src, packed = open_shards(tmp_path / "src"), open_shards(tmp_path / "p")
    for vid in packed.ids():
        for name, raw in packed[vid]._raws.items():
            if layout(raw) is None:
                continue
            assert layout(raw)[0] is None  # the pack, not a folder
            idx = np.arange(0, raw.shape[0], 2)
            got = read_frames(raw, idx)
            assert got is not None, (vid, name)
            np.testing.assert_array_equal(got, src[vid]._raws[name][idx], err_msg=f"{vid}/{name}")
    raw = packed["v1"]._raws["mv"]
    store = raw.store_path.store
    offset, length = store._dir["mv/c/0/0/0/0"]
    packfile = Path(store._pack.path)
    data = bytearray(packfile.read_bytes())
    data[offset + 10] ^= 0xFF  # inside the first chunk (the index is at the end)
    packfile.write_bytes(bytes(data))
    fresh = open_shards(tmp_path / "p")
    with pytest.raises(ValueError, match="checksum"):
        read_frames(fresh["v1"]._raws["mv"], np.arange(2))
