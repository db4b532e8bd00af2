"""Running the extraction's tasks: on a Dask cluster (local processes or a scheduler), or in
this process with the same retries and the same split of a crashing batch into single videos.

A task that crashes (a bug, a killed worker) is retried `--retries` times, then its batch
runs one video per task, and a video that still crashes becomes an 'internal' failure record.
A storage that refuses writes (`preprocess.errors.storage_fault`) is not retried: the first
"halted" result stops the run, and no further task is started.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable

import dask
from dask.base import tokenize
from dask.distributed import Client, LocalCluster, as_completed

from preprocess.config import ExtractConfig
from preprocess.datasets.base import VideoItem
from preprocess.errors import INTERNAL, storage_fault
from preprocess.worker import halted
from shards.cli import CliError

Task = Callable[[list[VideoItem], ExtractConfig], list[dict]]


def crashed(writer, item: VideoItem, err: BaseException) -> dict:
    """A task that kept crashing, alone, after its retries: an 'internal' failure record."""
    record = {"source": item.path, "stage": INTERNAL,
              "reason": f"{type(err).__name__}: {' '.join(str(err).split())}"}
    writer.write_failure(item.video_id, record)
    return {"id": item.video_id, "status": "failed", **record}


def in_process(task: Task, batch: list[VideoItem], cfg: ExtractConfig, writer) -> list[dict]:
    """One batch in this process, with the retries and the split it would get on a cluster."""
    error: Exception | None = None
    for _ in range(cfg.retries + 1):
        try:
            return task(batch, cfg)
        except Exception as err:  # a crash, not bad input: that is recorded inside the task
            if storage_fault(err) is not None:  # not retried: the disk stays full
                return [halted(batch[0], err, cfg.out_path())]
            error = err
    if len(batch) > 1:  # find the video that crashes it: one task per video
        results: list[dict] = []
        for item in batch:
            results += in_process(task, [item], cfg, writer)
            if is_halted(results):
                break
        return results
    return [crashed(writer, batch[0], error)]


def is_halted(results: list[dict]) -> bool:
    """Whether a storage that refuses writes stopped one of these videos (and so the run)."""
    return any(r["status"] == "halted" for r in results)


@contextmanager
def dask_client(cfg: ExtractConfig):
    """A Dask client: of the scheduler at `cfg.scheduler`, else of a LocalCluster of
    `cfg.workers` single-threaded processes that closes with the client."""
    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout=cfg.scheduler_timeout)
        except (OSError, ValueError, TypeError) as err:  # unreachable, or not an address at all
            raise CliError(f"could not connect to the Dask scheduler at {cfg.scheduler} within "
                           f"{cfg.scheduler_timeout:g} s ({' '.join(str(err).split())}); check the address "
                           f"and that `dask scheduler` runs there, raise --scheduler-timeout, or drop "
                           f"--scheduler to start local workers") from err
        with client, _quiet_on_interrupt(client):  # innermost: quiet before the client closes
            yield client
        return
    # Each worker: one process, one thread; BLAS/OpenCV inside a task stay single-threaded.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A worker that dies (out of memory, a decoder segfault) has its task rescheduled up to
    # `retries` times before the task errs. Local workers hold a pipe from this process and
    # exit the moment it closes, so killing the driver (even with -9) stops every write.
    # The workers' sampling profiler (the dashboard's "Profile" page) is off: every 10 ms it
    # walks the running task's stack, CPU the extraction wants, and on Python 3.11 it now and
    # then logs an AttributeError traceback ('function' object has no attribute 'f_back')
    # into the run's output while the run itself is fine.
    with dask.config.set({"distributed.scheduler.allowed-failures": cfg.retries,
                          "distributed.worker.profile.enabled": False}):
        with _sigint_ignored_by_children():  # the workers start here, and inherit it
            cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client, _quiet_on_interrupt(client):  # innermost: quiet before closing
            yield client


@contextmanager
def _sigint_ignored_by_children():
    """Start the local workers with SIGINT ignored (an ignored signal stays ignored across
    fork and exec), then restore this process's handler.

    Ctrl-C in a terminal signals the whole process group: each worker would die with its
    own KeyboardInterrupt traceback mid-task. Ignoring it there leaves the driver alone to
    stop, and the workers exit when the driver closes the cluster (or its pipe closes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _silence_dask_logs(dask_worker=None) -> None:
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


@contextmanager
def _quiet_on_interrupt(client):
    """On Ctrl-C, silence Dask's logging here and on the local workers before the cluster
    closes: cancelled tasks, closed comms and workers that lose the scheduler mid-heartbeat
    are expected then, and would print pages of tracebacks under the one line `run_main`
    prints. A shared cluster's workers are left alone (they outlive this run)."""
    try:
        yield
    except KeyboardInterrupt:
        _silence_dask_logs()
        if client.cluster is not None:  # our own LocalCluster
            try:
                client.run(_silence_dask_logs, on_error="ignore")
            except Exception:  # a worker already gone: nothing left to silence there
                pass
        raise


def _executing(prefix: str, dask_worker=None) -> list[str]:
    """On a worker: keys starting with `prefix` still running there, released or not."""
    return [str(ts.key) for ts in dask_worker.state.executing if str(ts.key).startswith(prefix)]


def wait_for_orphans(client, prefix: str, log, poll: float = 2.0) -> None:
    """Wait until no task of an earlier driver still writes into this output.

    Dask cannot interrupt a running task: when a driver dies, a shared cluster forgets its
    tasks but finishes the running ones, which would write the same videos as the resumed
    run's tasks. Task keys carry a token of the output, so this finds exactly those.
    """
    announced = False
    while True:
        running = sum(len(keys) for keys in client.run(_executing, prefix).values())
        if not running:
            return
        if not announced:
            log(f"waiting for {running} tasks of an earlier run still writing here to finish")
            announced = True
        time.sleep(poll)


def on_dask(task: Task, batches: list[list[VideoItem]], cfg: ExtractConfig, writer,
             collect: Callable[[dict], None], log) -> None:
    """Every batch as a Dask task; each result goes to `collect` as it arrives."""
    prefix = f"extract-{tokenize(cfg.out_path())[:8]}-"

    def submit(groups: list[list[VideoItem]]) -> dict:
        keys = [f"{prefix}{g[0].video_id}-{len(g)}" for g in groups]
        futures = client.map(task, groups, cfg=cfg, key=keys, retries=cfg.retries, pure=False)
        return dict(zip(futures, groups))

    with dask_client(cfg) as client:
        log(f"dask: {client.dashboard_link or 'no dashboard'}  ({len(client.nthreads())} workers)")
        if cfg.scheduler:
            wait_for_orphans(client, prefix, log)
        batch_of = submit(batches)
        queue = as_completed(list(batch_of))
        for fut in queue:
            batch = batch_of.pop(fut)
            if fut.status == "error" and storage_fault(fut.exception()) is not None:
                results = [halted(batch[0], fut.exception(), cfg.out_path())]
            elif fut.status == "error":  # the task itself crashed, even after retries
                if len(batch) > 1:  # find the video that crashes it: one task per video
                    singles = submit([[item] for item in batch])
                    batch_of.update(singles)
                    queue.update(singles)
                    continue
                results = [crashed(writer, batch[0], fut.exception())]
            else:
                results = fut.result()
            fut.release()
            for result in results:
                collect(result)
            if is_halted(results):  # the storage refuses writes: submit nothing more
                client.cancel(list(batch_of))
                return
