"""`--out s3://bucket/set` against a real S3 API: moto's server on 127.0.0.1 (no network).

Extraction, kill -9 + resume, the writer lock, `open_shards("s3://...")` and a training clip
read, with the HTTP requests each costs counted on the server (docs/reliability.md)."""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from preprocess.config import ExtractConfig  # noqa: E402
from preprocess.extract import run  # noqa: E402
from shards import open_shards  # noqa: E402
from tests.videos import pan_clips  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class Requests(logging.Handler):
    """Counts the requests the in-process moto server logs (werkzeug's access log)."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def count(self, start: int = 0) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines[start:]:
            # werkzeug colours some status codes (206 of ranged GETs, 404 of HEADs that find
            # nothing) on every POSIX system: '"\x1b[35m\x1b[1mGET /...' would not count
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            for verb in ("GET", "PUT", "HEAD", "POST", "DELETE"):
                if f'"{verb} ' in line:
                    out[verb] = out.get(verb, 0) + 1
        return out


@pytest.fixture(scope="module")
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    counter = Requests()
    access = logging.getLogger("werkzeug")
    level = access.level
    access.addHandler(counter)
    access.setLevel(logging.INFO)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("bucket")
    yield fs, counter
    access.removeHandler(counter)
    access.setLevel(level)
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s3fs.S3FileSystem.clear_instance_cache()


def test_writer_lock_on_s3(s3):
    """The lock on an object store: a conditional PUT refuses the second writer; a dead
    run's lock is taken over (fast: a few requests; the extraction tests below are slow)."""
    import json
    import socket

    from shards.lock import SetLocked, writer_lock

    fs, _ = s3
    url = "s3://bucket/locked"
    with writer_lock(url) as lock:
        with pytest.raises(SetLocked, match=f"pid {lock.holder.pid}, started"):
            writer_lock(url)
    assert not fs.exists("bucket/locked/.motion_mae.lock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fs.pipe_file("bucket/locked/.motion_mae.lock", json.dumps(
        {"host": socket.gethostname(), "pid": dead.pid, "started": time.time(), "heartbeat": time.time(),
         "token": "old"}).encode())
    lines: list[str] = []
    with writer_lock(url, log=lines.append):
        assert json.loads(fs.cat_file("bucket/locked/.motion_mae.lock"))["pid"] == os.getpid()
    assert "is gone" in lines[0]


def _clips(root: Path, count: int, height: int, width: int, frames: int, seed: int, side: int) -> Path:
    """`count` H.264 clips of a pan (faster in each) and one object of `side` px."""
    return pan_clips(root, count, seed, height, width, frames, bg_dy=0.5, side=side, at=(side, side),
                     velocity=(1.5, -1.0))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return _clips(tmp_path_factory.mktemp("small"), 2, 32, 48, 8, seed=40, side=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _clips(tmp_path_factory.mktemp("corpus"), 8, 96, 128, 16, seed=30, side=16)


def _ids_now(url: str, fs) -> list[str]:
    fs.invalidate_cache()
    try:
        return open_shards(url).ids()
    except (FileNotFoundError, ValueError):
        return []


@pytest.mark.slow
def test_extract_kill_resume_lock_and_read_on_s3(s3, corpus, tmp_path):
    from shards.lock import SetLocked, writer_lock

    fs, counter = s3
    url = "s3://bucket/set"
    cmd = [sys.executable, str(REPO / "preprocess" / "extract.py"), "--dataset", "folder", "--root", str(corpus),
           "--out", url, "--workers", "0", "--short-side", "96"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _ids_now(url, fs) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the extraction finished before it could be killed"
        with pytest.raises(SetLocked, match=f"pid {proc.pid}, started"):  # the lock lives in the bucket
            writer_lock(url)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    committed = _ids_now(url, fs)
    assert 1 <= len(committed) < 8, committed
    assert fs.exists("bucket/set/.motion_mae.lock")  # left by the dead run, taken over below

    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(committed)} already done" in res.stdout and "is gone" in res.stdout
    assert not fs.exists("bucket/set/.motion_mae.lock")

    reference = tmp_path / "reference"
    run(ExtractConfig(dataset="folder", root=str(corpus), out=str(reference), short_side=96, workers=0),
        log=lambda s: None)
    fs.invalidate_cache()
    a, b = open_shards(url), open_shards(str(reference))
    assert a.ids() == b.ids() == [f"clip{i}" for i in range(8)]
    for vid in a.ids():
        for name in a[vid].keys():
            np.testing.assert_array_equal(a[vid][name][:], b[vid][name][:], err_msg=f"{vid}/{name}")


@pytest.mark.slow  # ~500 requests: 70-100 s against moto on a busy 2-core machine
def test_extract_lock_and_requests_of_a_clip_read(s3, small, tmp_path):
    """Extract into S3, hold the lock there, open the set, open one video and read one clip
    with what MGM + pixel and MGMAE + MME read; the counts are in docs/reliability.md."""
    from shards.lock import SetLocked, writer_lock
    from train.clips.dataset import ClipSpec, read_clip

    fs, counter = s3
    url = "s3://bucket/small"
    start = len(counter.lines)
    summary = run(ExtractConfig(dataset="folder", root=str(small), out=url, short_side=32, workers=0),
                  log=lambda s: None)
    written = counter.count(start)
    assert summary["done"] == 2 and not fs.exists("bucket/small/.motion_mae.lock")
    with writer_lock(url) as lock:
        with pytest.raises(SetLocked, match=f"pid {lock.holder.pid}, started"):
            writer_lock(url)

    s3fs.S3FileSystem.clear_instance_cache()
    start = len(counter.lines)
    ds = open_shards(url)
    assert ds.ids() == ["clip0", "clip1"]
    opened = counter.count(start)
    start = len(counter.lines)
    video = ds["clip1"]
    video_open = counter.count(start)
    costs = {}
    for label, needs in (("mgm+pixel", {"mv", "mv_valid"}),
                         ("mgmae+mme", {"flow", "homography", "traj", "traj_valid", "hog"})):
        spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, tubelet=2, min_crop=1.0, flip=False,
                        needs=frozenset(needs))
        start = len(counter.lines)
        clip = read_clip(video, spec, np.random.default_rng(0))
        costs[label] = counter.count(start)
        assert clip["video"].shape == (3, 4, 32, 32)
    print(f"\nS3 requests: extraction of 2 videos {written}, open_shards {opened}, open a video {video_open}, "
          f"clip reads {costs}")
    # measured 13 (7 HEAD, 6 GET) and 8 (4 HEAD, 4 GET), counting the lines werkzeug colours
    # (404 HEADs, 206 GETs; uncounted before: 10 and 5): bounds that catch a listing per video
    assert sum(opened.values()) <= 16 and sum(video_open.values()) <= 10
    for label, count in costs.items():  # ranged GETs of the arrays read (shard index + chunks), no listing
        assert set(count) <= {"GET", "HEAD"} and count.get("GET", 0) <= 40, (label, count)


def _settled(counter: Requests) -> Requests:
    """The counter once the server has logged every request made so far (werkzeug logs a
    request after sending its response, so the client may be ahead of the log)."""
    seen = -1
    while seen != len(counter.lines):
        seen = len(counter.lines)
        time.sleep(0.05)
    return counter


def test_pack_into_s3_verify_and_read_a_clip(s3, tmp_path):
    """`python -m shards pack` into the bucket: two objects for three videos, verify passes,
    a training clip reads the same values as from the local source."""
    from shards.__main__ import main
    from train.clips.dataset import ClipSpec, read_clip

    from .test_pack import write_set

    fs, _ = s3
    write_set(tmp_path / "src", n=3)
    assert main(["pack", str(tmp_path / "src"), "s3://bucket/fast", "--videos-per-file", "3"]) == 0
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find("bucket/fast")) == ["00000.mmpack", "motion_mae_pack.json"]
    assert main(["verify", "s3://bucket/fast"]) == 0
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, min_crop=1.0, flip=False,
                    needs=frozenset({"mv", "mv_valid", "flow", "homography"}))
    with open_shards("s3://bucket/fast") as remote, open_shards(tmp_path / "src") as local:
        assert remote.ids() == local.ids() and remote.failures() == local.failures()
        got = read_clip(remote["v2"], spec, np.random.default_rng(0))
        want = read_clip(local["v2"], spec, np.random.default_rng(0))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.slow  # ~40 s against moto on a busy 2-core machine (uploads the unpacked set too)
def test_packed_set_on_s3_reads_a_clip_in_as_many_requests(s3, tmp_path):
    """Objects and requests per clip read, the same videos unpacked and packed in the same
    bucket (docs/benchmarks.md, "Packed sets"); packing from the bucket gives the same bytes."""
    from shards.pack import pack, video_keys
    from train.clips.dataset import ClipSpec, read_clip

    from .test_pack import write_set

    fs, counter = s3
    src = tmp_path / "src"
    write_set(src, n=4)
    fs.put(str(src), "bucket/unpacked", recursive=True)
    pack(str(src), "s3://bucket/packed", videos_per_file=4, log=lambda s: None)
    objects = {name: len(fs.find(f"bucket/{name}")) for name in ("unpacked", "packed")}
    assert objects["packed"] == 2  # one pack file + the root document, for 4 videos
    with open_shards(src) as ds:  # a zarr.json per video group and per array, a shard per array
        assert objects["unpacked"] > 4 * (1 + 2 * len(ds["v0"].stored_names()))

    counts = {}
    for name in ("unpacked", "packed"):
        s3fs.S3FileSystem.clear_instance_cache()
        start = len(counter.lines)
        ds = open_shards(f"s3://bucket/{name}")
        counts[name, "open set"] = _settled(counter).count(start)
        start = len(counter.lines)
        video = ds["v3"]
        counts[name, "open video"] = _settled(counter).count(start)
        for label, needs in (("pixel", set()), ("mgm", {"mv", "mv_valid"}),
                             ("mgmae+mme", {"flow", "homography", "traj", "traj_valid", "hog"})):
            spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, tubelet=2, min_crop=1.0, flip=False,
                            needs=frozenset(needs))
            start = len(counter.lines)
            clip = read_clip(video, spec, np.random.default_rng(0))
            counts[name, label] = _settled(counter).count(start)
            assert clip["video"].shape == (3, 4, 32, 32)
        if name == "unpacked":
            want = clip
        else:
            for key in want:
                np.testing.assert_array_equal(clip[key], want[key], err_msg=key)
    print(f"\nS3 objects {objects}; requests {counts}")
    pack("s3://bucket/unpacked", str(tmp_path / "from_s3"), videos_per_file=4, log=lambda s: None)
    with open_shards(tmp_path / "from_s3") as a, open_shards("s3://bucket/packed") as b:
        assert a.ids() == b.ids() and all(video_keys(a, vid) == video_keys(b, vid) for vid in a.ids())
    assert sum(counts["packed", "open video"].values()) == 1  # its metadata range, one ranged GET
    for label in ("pixel", "mgm", "mgmae+mme"):  # the same ranged GETs of the same chunks, no HEAD
        assert counts["packed", label] == {"GET": counts["unpacked", label]["GET"]}, label
