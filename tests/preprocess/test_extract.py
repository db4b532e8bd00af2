"""End to end: folders of real videos (good, broken, absent) -> shards, through `run` and the CLI.

Covers task batching (--shard-size), the corpus index and manifest, fsspec URLs, every kind
of bad file, crashing tasks (retried, then recorded), and a kill -9 followed by a resume.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import main, run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards
from shards.schema import SCHEMA_VERSION
from shards.cli import CliError, UsageError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    pan = Scene(height=96, width=128, num_frames=10, bg_velocity=(2.0, 0.0), seed=3)
    obj = Scene(height=96, width=128, num_frames=10, seed=4,
                objects=(MovingObject(24, (30, 30), (2.0, 1.0)),))
    encode(root / "pan", render(pan), codec="h264")
    encode(root / "sub" / "object", render(obj), codec="h264", bframes=2)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root


def _cfg(corpus: Path, out: Path, **kw) -> ExtractConfig:
    return ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=96, **kw)


def test_folder_in_process_then_resume(corpus, tmp_path):
    out = tmp_path / "shards"
    summary = run(_cfg(corpus, out, workers=0), log=lambda s: None)
    assert (summary["done"], summary["failed"]) == (2, 1)
    ds = open_shards(str(out))
    assert sorted(ds.ids()) == ["object", "pan"]
    v = ds["pan"]
    assert v["frames"].shape == (10, 96, 128, 3)
    assert v["traj"].shape == (10, 12, 16, 6, 2)
    # the pan is 2 px/frame to the right: codec vectors and the homography both say so
    mv = np.asarray(v["mv"])[np.asarray(v["mv_valid"])]
    assert abs(np.median(mv[:, 0]) - 2.0) < 0.5
    assert abs(float(np.median(np.asarray(v["homography"])[:, 0, 2])) - 2.0) < 0.5
    (failure,) = ds.failures()
    assert failure["source"].endswith("broken.mp4") and failure["stage"] in ("open", "decode")
    # a second run skips what is done and only retries the failure
    again = run(_cfg(corpus, out, workers=0), log=lambda s: None)
    assert (again["skipped"], again["done"], again["failed"]) == (2, 0, 1)


def test_resume_refuses_other_settings_but_not_other_workers(corpus, tmp_path):
    out = tmp_path / "shards"
    run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)  # broken.mp4 and pan.mp4
    with pytest.raises(CliError, match="flow_stride: 4 there vs 2 now"):
        run(_cfg(corpus, out, workers=0, flow_stride=2), log=lambda s: None)
    again = run(_cfg(corpus, out, workers=0, limit=2, retries=0), log=lambda s: None)
    assert again["skipped"] == 1


def test_another_traj_len_resumes_the_set_with_its_own(corpus, tmp_path):
    """No stored array depends on traj_len (schema 3 tracks when read): it is the set's default."""
    out = tmp_path / "shards"
    run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)  # broken.mp4 and pan.mp4
    lines: list[str] = []
    again = run(_cfg(corpus, out, workers=0, traj_len=4), log=lines.append)
    assert (again["skipped"], again["done"]) == (1, 1)
    assert any("--traj-len 4 ignored: the set's default trajectory length stays 6" in line for line in lines)
    ds = open_shards(str(out))
    assert {int(ds.video(vid).attrs["traj_len"]) for vid in ds.ids()} == {6}


def test_resume_refuses_a_set_from_another_extractor_revision(corpus, tmp_path, monkeypatch):
    """Same flags, older computation (e.g. another resize filter): not mixed into one set."""
    import preprocess.config as config

    out = tmp_path / "shards"
    now = config.EXTRACTOR_REVISION
    monkeypatch.setattr(config, "EXTRACTOR_REVISION", now - 1)
    run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)
    monkeypatch.setattr(config, "EXTRACTOR_REVISION", now)
    with pytest.raises(CliError, match=f"extractor: {now - 1} there vs {now} now"):
        run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)
    # --overwrite deletes the old set and extracts anew; the next run resumes it as usual
    lines = []
    fresh = run(_cfg(corpus, out, workers=0, limit=2, overwrite=True), log=lines.append)
    assert (fresh["done"], fresh["failed"]) == (1, 1) and any("--overwrite: deleted the shard set" in x for x in lines)
    assert open_shards(str(out)).ids() == ["pan"]
    again = run(_cfg(corpus, out, workers=0, limit=2, retries=0), log=lambda s: None)
    assert again["skipped"] == 1


def test_a_set_of_schema_1_is_refused_then_replaced_with_overwrite(corpus, tmp_path):
    """Schema 2 added chunk checksums: the refusal says to re-extract with --overwrite, which works."""
    import zarr

    out = tmp_path / "shards"
    run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)
    root = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    root.update_attributes({"motion_mae": dict(root.attrs["motion_mae"], schema_version=1)})
    with pytest.raises(CliError, match=r"version 1 \(chunks without checksums.*--overwrite"):
        run(_cfg(corpus, out, workers=0, limit=2), log=lambda s: None)
    lines = []
    fresh = run(_cfg(corpus, out, workers=0, limit=2, overwrite=True), log=lines.append)
    assert (fresh["done"], fresh["failed"]) == (1, 1) and any("another shard schema" in x for x in lines)
    assert open_shards(str(out)).attrs["motion_mae"]["schema_version"] == SCHEMA_VERSION


def test_dask_two_workers_same_arrays(corpus, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run(_cfg(corpus, serial, workers=0), log=lambda s: None)
    # two videos per task: one task holds a good video and the broken one
    summary = run(_cfg(corpus, parallel, workers=2, shard_size=2), log=lambda s: None)
    assert (summary["done"], summary["failed"]) == (2, 1)
    a, b = open_shards(str(serial)), open_shards(str(parallel))
    for vid in a.ids():
        for name in ("mv", "flow", "traj", "hog"):
            np.testing.assert_array_equal(np.asarray(a[vid][name]), np.asarray(b[vid][name]))


def test_cli_help_and_exit_status(corpus, tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "preprocess" / "extract.py"), "--help"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "--dataset" in res.stdout
    out = tmp_path / "s"
    assert main(["--dataset", "folder", "--root", str(corpus), "--out", str(out),
                 "--workers", "0", "--short-side", "96"]) == 1  # one video failed


def test_missing_root_is_one_clear_message(tmp_path):
    with pytest.raises(CliError, match="nope.*docs/datasets.md"):
        main(["--dataset", "folder", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--workers", "0"])


# ------------------------------------------------------------------ shard size, index, manifest

def _quiet(_):
    return None


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_shard_size_in_process_one_group_or_file_per_video(corpus, tmp_path, fmt):
    out = tmp_path / "s"
    summary = run(_cfg(corpus, out, workers=0, shard_size=2, format=fmt), log=_quiet)
    assert (summary["done"], summary["failed"]) == (2, 1)
    if fmt == "hdf5":
        assert sorted(p.name for p in (out / "videos").iterdir()) == ["object.h5", "pan.h5"]
    else:
        assert sorted(p.name for p in (out / "videos").iterdir() if p.is_dir()) == ["object", "pan"]


def _list_corpus(root: Path) -> dict[str, Path]:
    """Two list files (train, val) over three real clips, plus a line whose file is absent."""
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        encode(root / "vids" / name, render(Scene(height=64, width=96, num_frames=6, seed=seed,
                                                   bg_velocity=(1.0, 0.0))), codec="h264")
    train = root / "train.txt"
    train.write_text("vids/a.mp4 0\nvids/b.mp4 1\nvids/gone.mp4 1\n")
    val = root / "val.txt"
    val.write_text("vids/c.mp4 2\n")
    return {"train": train, "val": val}


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_index_splits_labels_and_missing_videos(tmp_path, fmt):
    lists = _list_corpus(tmp_path / "corpus")
    out = str(tmp_path / "s")

    def cfg(split):
        return ExtractConfig(dataset="list", root=str(tmp_path / "corpus"), list_file=str(lists[split]),
                             split=split, out=out, format=fmt, short_side=64, workers=0)

    first = run(cfg("train"), log=_quiet)
    # an annotated video that is not on disk is a failure record, not a failed run
    assert (first["done"], first["failed"], first["missing"]) == (2, 0, 1)
    assert main(["--dataset", "list", "--root", str(tmp_path / "corpus"), "--list", str(lists["val"]),
                 "--split", "val", "--out", out, "--format", fmt, "--short-side", "64", "--workers", "0"]) == 0
    ds = open_shards(out)
    assert ds.failures() == [{"source": str(tmp_path / "corpus" / "vids" / "gone.mp4"), "stage": "open",
                              "reason": "not on disk", "id": "gone"}]
    assert ds.ids() == ["a", "b", "c"]
    assert ds.ids(split="train") == ["a", "b"] and ds.ids(split="val") == ["c"] and ds.ids(split="test") == []
    assert ds.labels() == {"a": 0, "b": 1, "c": 2} and ds.labels(split="val") == {"c": 2}
    assert ds._backend.index["videos"] == ["a", "b", "c"]  # answered by the index, not per video

    # without an index (a shard set never finalized) the same answers come from video attrs
    if fmt == "zarr":
        import zarr

        zarr.open_group(out, mode="r+", use_consolidated=False).update_attributes({"index": None})
    else:
        root = json.loads((tmp_path / "s" / "motion_mae.json").read_text())
        (tmp_path / "s" / "motion_mae.json").write_text(json.dumps({**root, "index": None}))
    ds = open_shards(out)
    assert ds.ids(split="train") == ["a", "b"] and ds.labels() == {"a": 0, "b": 1, "c": 2}
    assert "index" not in ds.attrs

    # the manifest covers both runs; the second run carried the first run's entries over
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["counts"]["videos"] == 3 and manifest["counts"]["failures"] == 1
    assert manifest["counts"]["frames"] == 18
    assert manifest["run"]["done"] == 1 and manifest["config"]["split"] == "val"
    assert set(manifest["videos"]) == {"a", "b", "c"}
    a = manifest["videos"]["a"]
    assert a["frames"] == 6 and a["source"].endswith("a.mp4") and a["split"] == "train" and a["label"] == 0
    assert a["bytes"] == ds.video_bytes("a") > sum(ds.nbytes("a").values())
    # --limit: missing videos are not recorded (the listing was cut short on purpose)
    limited = run(replace(cfg("train"), limit=1, out=str(tmp_path / "lim")), log=_quiet)
    assert limited["missing"] == 0 and open_shards(str(tmp_path / "lim")).failures() == []


def test_manifest_measures_videos_committed_by_a_run_that_died(corpus, tmp_path):
    out = tmp_path / "s"
    run(_cfg(corpus, out, workers=0), log=_quiet)
    (out / "manifest.json").unlink()  # as if the driver was killed before writing it
    again = run(_cfg(corpus, out, workers=0), log=_quiet)
    assert again["skipped"] == 2 and again["committed"] == 2 and again["bytes"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["videos"]["pan"]["frames"] == 10 and manifest["videos"]["pan"]["bytes"] > 0


def test_summary_table(corpus, tmp_path):
    lines = []
    run(_cfg(corpus, tmp_path / "s", workers=0), log=lines.append)
    text = "\n".join(lines)
    for column in ("done", "skipped", "failed", "missing", "frames", "seconds", "frames/s", "MB"):
        assert column in text
    assert f"manifest: {tmp_path / 's' / 'manifest.json'}" in text


# ----------------------------------------------------------------------------- URLs

def test_file_url_and_memory_store(corpus, tmp_path):
    url = f"file://{tmp_path / 'viaurl'}"
    summary = run(_cfg(corpus, url, workers=0), log=_quiet)
    assert summary["done"] == 2 and summary["bytes"] > 0 and summary["manifest"] == f"{url}/manifest.json"
    assert open_shards(url).ids() == ["object", "pan"]
    assert (tmp_path / "viaurl" / "manifest.json").is_file()

    mem = f"memory://mmae-test-{uuid.uuid4().hex}/shards"
    summary = run(_cfg(corpus, mem, workers=0), log=_quiet)
    assert summary["done"] == 2 and summary["bytes"] > 0
    ds = open_shards(mem)
    assert ds.ids() == ["object", "pan"] and ds["pan"]["frames"].shape == (10, 96, 128, 3)
    with pytest.raises(UsageError, match="memory"):  # workers are other processes
        run(_cfg(corpus, mem, workers=2), log=_quiet)


# ------------------------------------------------------------------------- failures

@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> Path:
    """Every kind of bad file next to a good clip and a one-frame clip."""
    root = tmp_path_factory.mktemp("bad")
    good = encode(root / "good", render(Scene(height=64, width=96, num_frames=12, seed=1,
                                              bg_velocity=(1.0, 0.5))), codec="h264")
    encode(root / "one_frame", render(Scene(height=64, width=96, num_frames=1, seed=2)), codec="h264")
    (root / "zero.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[:len(data) // 2])
    with av.open(str(root / "audio_only.mp4"), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return root


def test_bad_files_through_the_cli(bad_corpus, tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["--dataset", "folder", "--root", str(bad_corpus), "--out", str(out), "--workers", "0",
                 "--short-side", "64"])
    assert code == 1
    ds = open_shards(str(out))
    assert ds.ids() == ["good", "one_frame"]
    assert ds["one_frame"]["flow"].shape[0] == 0 and ds["one_frame"]["traj"].shape[0] == 1
    failures = {f["id"]: f for f in ds.failures()}
    assert set(failures) == {"zero", "garbage", "truncated", "audio_only"}
    for vid, f in failures.items():
        assert f["source"] == str(bad_corpus / f"{vid}.mp4") and f["stage"] == "open" and f["reason"]
    assert "empty" in failures["zero"]["reason"] and "no video stream" in failures["audio_only"]["reason"]
    printed = capsys.readouterr().out
    assert all(f"{vid}.mp4  [open]" in printed for vid in failures)


def test_in_process_crash_is_retried_then_recorded(corpus, tmp_path, monkeypatch):
    import preprocess.worker

    real = preprocess.worker.extract_video_into
    calls: dict[str, int] = {}

    def flaky(path, cfg, sink):
        name = Path(path).stem
        calls[name] = calls.get(name, 0) + 1
        if name == "pan" and calls[name] == 1:
            raise OSError("stale NFS file handle")  # transient: the retry succeeds
        if name == "object":
            raise KeyError("a bug")  # every attempt: an 'internal' failure, the run goes on
        return real(path, cfg, sink)

    monkeypatch.setattr(preprocess.worker, "extract_video_into", flaky)
    out = tmp_path / "s"
    summary = run(_cfg(corpus, out, workers=0, retries=1, shard_size=3), log=_quiet)
    assert (summary["done"], summary["failed"]) == (1, 2)
    ds = open_shards(str(out))
    assert ds.ids() == ["pan"]
    internal = {f["id"]: f for f in ds.failures()}["object"]
    assert internal["stage"] == "internal" and internal["reason"] == "KeyError: 'a bug'"
    # batch [broken, pan, object]: attempt 1 stops at pan, the retry commits pan and stops at
    # object; then each video runs alone: pan is committed and not extracted again, object
    # twice more (once + 1 retry)
    assert calls["pan"] == 2 and calls["object"] == 1 + 2


def flaky_batch(items, cfg):
    """A Dask task that crashes: on its first attempt at 'pan' (a marker file remembers the
    attempt across worker processes) and on every attempt at 'object'."""
    from preprocess.worker import extract_batch

    for item in items:
        marker = Path(cfg.out_path() + f".tried-{item.video_id}")
        if item.video_id == "object":
            raise RuntimeError("segfault-like crash")
        if item.video_id == "pan" and not marker.exists():
            marker.touch()
            raise OSError("transient")
    return extract_batch(items, cfg)


def test_dask_crash_is_retried_then_recorded(corpus, tmp_path):
    out = tmp_path / "s"
    summary = run(_cfg(corpus, out, workers=1, retries=1), log=_quiet, task=flaky_batch)
    assert (summary["done"], summary["failed"]) == (1, 2)
    failures = {f["id"]: f for f in open_shards(str(out)).failures()}
    assert failures["object"]["stage"] == "internal" and "segfault-like" in failures["object"]["reason"]
    assert failures["broken"]["stage"] in ("open", "decode")
    assert open_shards(str(out)).ids() == ["pan"]


# --------------------------------------------------------------------- kill -9, resume

def _ids_now(out: Path) -> list[str]:
    """Committed ids of a shard set another process is writing ([] until it reads cleanly)."""
    try:
        return open_shards(str(out)).ids()
    except (FileNotFoundError, ValueError):  # no root yet, or a root file caught mid-write
        return []


def test_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
    root = tmp_path / "corpus"
    for i in range(6):
        scene = Scene(height=96, width=128, num_frames=12 + 2 * (i % 4), bg_velocity=(1.0 + i, 0.5), seed=10 + i,
                      objects=(MovingObject(20, (20 + 5 * i, 30), (1.5, -1.0)),))
        encode(root / f"clip{i}", render(scene), codec="h264", bframes=i % 2)
    out = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "preprocess" / "extract.py"), "--dataset", "folder", "--root", str(root),
           "--out", str(out), "--workers", "1", "--short-side", "96"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _ids_now(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must stop by themselves
        proc.wait()
        committed = _ids_now(out)
        assert 1 <= len(committed) < 6, committed
        time.sleep(0.5)  # a worker that outlived the driver would commit more by now
        assert _ids_now(out) == committed
        alive = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        assert all(s.startswith("Z") for s in alive.split()), alive  # only zombies, awaiting their reaper
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(committed)} already done" in res.stdout
    verify = subprocess.run([sys.executable, "-m", "shards", "verify", str(out)], capture_output=True, text=True,
                            cwd=REPO)
    assert verify.returncode == 0, verify.stdout

    reference = tmp_path / "reference"
    run(ExtractConfig(dataset="folder", root=str(root), out=str(reference), short_side=96, workers=0), log=_quiet)
    a, b = open_shards(str(out)), open_shards(str(reference))
    ids = [p.name for p in (out / "videos").iterdir() if p.is_dir()]
    assert sorted(ids) == a.ids() == b.ids() == [f"clip{i}" for i in range(6)]  # each exactly once
    for vid in a.ids():
        for name in a[vid].keys():
            np.testing.assert_array_equal(a[vid][name][:], b[vid][name][:], err_msg=f"{vid}/{name}")


def _slow_write(marker: str) -> None:
    time.sleep(1.5)
    Path(marker).touch()


def test_resumed_driver_waits_for_orphans_on_a_shared_cluster(tmp_path):
    """A driver that died leaves its running tasks on a shared cluster: the next one waits."""
    from dask.distributed import Client, LocalCluster

    from preprocess.dask_driver import wait_for_orphans

    marker = tmp_path / "written"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        fut = client.submit(_slow_write, str(marker), key="extract-0123abcd-v1-1")
        while not any(client.processing().values()):
            time.sleep(0.01)
        fut.release()  # what the scheduler does when the driver holding the future dies
        del fut
        lines = []
        wait_for_orphans(client, "extract-0123abcd-", lines.append, poll=0.05)
        assert marker.exists() and "waiting for 1 tasks" in lines[0]
        wait_for_orphans(client, "extract-0123abcd-", lines.append, poll=0.05)  # none left: returns at once
        assert len(lines) == 1


# ------------------------------------------------------------------ --overwrite, writer lock

def cli(argv: list[str]) -> int:
    """extract.py's exit status as a user sees it (main under shards.cli.run_main)."""
    from shards.cli import run_main

    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(argv), "extract.py")
    return exit_.value.code


def test_overwrite_removes_only_what_the_set_owns(corpus, tmp_path, capsys):
    from shards.writer import ForeignFiles

    out = tmp_path / "s"
    run(_cfg(corpus, out, workers=0, limit=2), log=_quiet)
    (out / "notes.txt").write_text("my notes")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ForeignFiles, match=r"holds files that are not part of the zarr shard set \(notes.txt\)"):
        run(_cfg(corpus, out, workers=0, limit=2, flow_stride=2, overwrite=True), log=_quiet)
    assert sorted(p.name for p in out.iterdir()) == before and open_shards(str(out)).ids() == ["pan"]
    # through the CLI: one line, exit 1
    code = cli(["--dataset", "folder", "--root", str(corpus), "--out", str(out), "--workers", "0",
                "--limit", "2", "--flow-stride", "2", "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "deleted nothing" in err[0]
    (out / "notes.txt").unlink()
    lines: list[str] = []
    summary = run(_cfg(corpus, out, workers=0, limit=2, flow_stride=2, overwrite=True), log=lines.append)
    assert summary["done"] == 1 and open_shards(str(out))["pan"]["flow"].shape[1] == 96 // 2
    assert "deleted the shard set" in lines[0] and "failures, manifest.json, videos, zarr.json" in lines[0]


def test_a_second_writer_is_refused(corpus, tmp_path, capsys):
    from shards.lock import writer_lock

    out = tmp_path / "s"
    with writer_lock(str(out)) as lock:
        code = cli(["--dataset", "folder", "--root", str(corpus), "--out", str(out), "--workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert f"pid {lock.holder.pid}, started " in err[0] and "being written by another run" in err[0]
    assert not (out / "zarr.json").exists()  # refused before touching anything
