"""kill -9 of one Dask worker mid-task: the task is retried on another worker, nothing is
lost or written twice, and the set equals an uninterrupted run. With a LocalCluster (fast)
and with a `dask scheduler` + two `dask worker` processes over TCP on localhost (slow)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.worker import extract_batch
from shards import open_shards
from tests.videos import pan_clips

REPO = Path(__file__).resolve().parents[2]
VICTIM = "clip1"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return pan_clips(tmp_path_factory.mktemp("corpus"), 4, seed=20)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "s"
    run(ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=64, workers=0), log=lambda s: None)
    return out


def dying_batch(items, cfg):
    """A task that, on its first attempt at a batch holding VICTIM, commits the videos before
    it, leaves VICTIM half-written, publishes its worker's pid and waits to be killed."""
    from preprocess.worker import extract_one
    from shards.writer import open_writer

    pidfile = Path(cfg.out_path() + ".victim")
    if VICTIM not in [it.video_id for it in items] or pidfile.exists():
        return extract_batch(items, cfg)
    writer = open_writer(cfg.out_path(), format=cfg.format)
    results = []
    for item in items:
        if item.video_id == VICTIM:
            import zarr

            from shards.zarr_store import make_store

            root = zarr.open_group(make_store(cfg.out_path(), read_only=False), mode="r+", use_consolidated=False)
            root.require_group("videos").create_group(VICTIM, attributes={"complete": False}, overwrite=True)
            for done in results:  # what this attempt committed, to tell a rewrite later
                stamp = Path(cfg.out_path()) / "videos" / done["id"] / "zarr.json"
                Path(f"{cfg.out_path()}.{done['id']}.mtime").write_text(str(stamp.stat().st_mtime_ns))
            pidfile.write_text(str(os.getpid()))
            time.sleep(120)  # killed here
        results.append(extract_one(item, cfg, writer))
    return results


def _kill_when_published(pidfile: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the victim task never started"
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def _same_as_reference(out: Path, reference: Path, summary: dict) -> None:
    assert (summary["done"], summary["failed"]) == (4, 0), summary
    a, b = open_shards(str(out)), open_shards(str(reference))
    assert sorted(p.name for p in (out / "videos").iterdir() if p.is_dir()) == a.ids() == b.ids()
    assert a.failures() == []
    for vid in a.ids():
        assert a[vid].attrs["complete"] is True
        for name in a[vid].keys():
            np.testing.assert_array_equal(a[vid][name][:], b[vid][name][:], err_msg=f"{vid}/{name}")


def _run_killing(cfg: ExtractConfig) -> tuple[dict, int]:
    """run(cfg) with dying_batch while this thread kills the victim's worker."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run(cfg, log=lambda s: None, task=dying_batch)))
    thread.start()
    try:
        pid = _kill_when_published(Path(cfg.out_path() + ".victim"))
    finally:
        thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not finish after the kill"
    return result, pid


def test_local_cluster_worker_killed_mid_task(corpus, reference, tmp_path):
    out = tmp_path / "s"
    # two videos per task: clip0 is committed by the killed attempt, the retry must not rewrite it
    cfg = ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=64, workers=2,
                        shard_size=2, retries=2)
    summary, pid = _run_killing(cfg)
    _same_as_reference(out, reference, summary)
    # written once: clip0, committed by the killed attempt, was not rewritten by the retry
    stamp = Path(f"{out}.clip0.mtime")
    assert stamp.exists() and int(stamp.read_text()) == (out / "videos" / "clip0" / "zarr.json").stat().st_mtime_ns
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_tcp_scheduler_and_workers_worker_killed_mid_task(corpus, reference, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(sched_file)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().rstrip().endswith("}"):
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        for _ in range(2):  # each a nanny that restarts its worker process after a kill -9
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                           str(sched_file), "--nthreads", "1", "--host", "127.0.0.1",
                                           "--dashboard-address", ":0"],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import json

        from dask.distributed import Client

        address = json.loads(sched_file.read_text())["address"]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        out = tmp_path / "s"
        cfg = ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=64, scheduler=address,
                            shard_size=2, retries=2)
        summary, _ = _run_killing(cfg)
        _same_as_reference(out, reference, summary)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
