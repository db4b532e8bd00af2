"""Scan a video corpus once and write motion-vector, warped-flow, trajectory and HOG shards.

    python preprocess/extract.py                          # the built-in demo corpus
    python preprocess/extract.py --dataset folder --root ~/videos --workers 2
    python preprocess/extract.py --dataset k400 --scheduler tcp://host:8786 --out s3://bucket/k400

This is the only place where Dask and files meet. Each Dask task takes `--shard-size`
videos, decodes each, computes its arrays with the pure functions of `preprocess.video`
and writes that video's own group (so no two processes ever write the same array).
Finished videos are skipped on a re-run; bad videos, annotated videos that are not on
disk and tasks that keep crashing become failure records with a stage and a reason. At
the end the driver writes the corpus index (root attrs) and `manifest.json`.
Corpus layouts: docs/datasets.md; clusters, resume and failures: docs/scaling.md. Mistakes
and Ctrl-C are one line on stderr (`cli`, shards/cli.py); `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # `python preprocess/extract.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess.config import ExtractConfig  # noqa: E402
from preprocess.datasets import DATASETS, DatasetRootError, DatasetUsageError, scan  # noqa: E402
from preprocess.datasets.base import VideoItem  # noqa: E402
from preprocess.errors import INTERNAL, ExtractionError  # noqa: E402
from preprocess.manifest import build_manifest, read_manifest, video_entries, write_manifest  # noqa: E402
from preprocess.progress import Progress  # noqa: E402
from shards.cli import ArgumentParser, CliError, UsageError, add_debug_flag, run_main  # noqa: E402

NOT_ON_DISK = "not on disk"
MAX_FAILURES_SHOWN = 20


PROG = "python preprocess/extract.py"
DATASETS_DOC = "docs/datasets.md"


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> ArgumentParser:
    d = ExtractConfig()
    p = ArgumentParser(
        prog=PROG,
        description="Extract frames, codec motion vectors, camera-compensated optical flow,\n"
                    "dense trajectories and HOG from a video corpus into versioned shards.\n"
                    f"Corpus layouts: {DATASETS_DOC}; clusters and resume: docs/scaling.md.")
    g = p.add_argument_group("input")
    g.add_argument("--dataset", default=d.dataset, choices=sorted(DATASETS),
                   help="corpus layout (docs/datasets.md); 'demo' is generated locally and needs no data")
    g.add_argument("--root", default=None,
                   help="corpus root (default: $MOTION_MAE_<DATASET>_ROOT, else $MOTION_MAE_DATA/<dataset>, "
                        "else <repo>/data/<dataset>; the demo uses data/demo_videos)")
    g.add_argument("--list", "--list-file", dest="list_file", default=None, metavar="FILE",
                   help="for --dataset list: a file of 'path label' lines (paths relative to --root, "
                        "or to the file's folder without --root)")
    g.add_argument("--split", default=None,
                   help="only this split, e.g. train or val (k400, ssv2), train1..test3 (ucf101, hmdb51), "
                        "a subfolder (folder); default: every video")
    g.add_argument("--limit", type=_count(0), default=None, metavar="N",
                   help="only the first N videos by path (annotated videos not on disk are then not recorded); "
                        "default: all")
    g.add_argument("--allow-images", action="store_true",
                   help="store a still image named like a video (a PNG renamed .mp4) as a one-frame video "
                        "instead of recording it as a failure (default: a failure, 'image, not a video')")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None,
                   help="shard set: a directory or fsspec URL such as s3://bucket/k400 "
                        "(default: <data dir>/shards/<dataset>, data dir = $MOTION_MAE_DATA or <repo>/data)")
    g.add_argument("--format", default=d.format, choices=["zarr", "hdf5"],
                   help="zarr: one group per video, any fsspec store, concurrent writers; "
                        "hdf5: one .h5 file per video, faster clip reads from local disk (docs/shards.md)")
    g.add_argument("--frames", default=d.frames, choices=["jpeg", "none"],
                   help="jpeg: store the frames (JPEG q90, ~20 kB per 340x256 frame); none: store no frames, "
                        "the reader decodes each clip from the source video, which must stay readable "
                        "(open_shards(..., source_root=) / train --source-root if it moves; docs/shards.md)")
    g.add_argument("--overwrite", action="store_true",
                   help="if --out holds a set extracted with other settings, from another dataset or root, "
                        "or by an older extractor, delete that set (only its own files: refused if --out "
                        "holds anything else) and start over instead of stopping")
    g.add_argument("--append", action="store_true",
                   help="add this dataset or root to a set at --out that holds another one (same settings "
                        "needed); a video whose id is already in the set is skipped as done")
    g = p.add_argument_group("what is computed")
    g.add_argument("--short-side", type=_count(1), default=d.short_side, metavar="PX",
                   help="resize the short side to this many pixels (never upscale)")
    g.add_argument("--fps", type=float, default=None,
                   help="resample to this frame rate (default: the video's own)")
    g.add_argument("--max-ref-distance", type=_count(1), default=d.max_ref_distance, metavar="N",
                   help="largest codec reference distance tested when recovering per-frame motion vectors")
    g.add_argument("--flow", dest="flow_method", default=d.flow_method, choices=["dis", "tvl1"],
                   help="optical flow: DIS (fast) or TV-L1 (slow, opt-in quality mode)")
    g.add_argument("--dis-preset", default=d.dis_preset, choices=["ultrafast", "fast", "medium"],
                   help="OpenCV DIS preset, for what the extractor does not set itself (patch size, "
                        "variational refinement; full resolution, --dis-patch-stride and 6 descent "
                        "iterations are always used, docs/design.md); only with --flow dis")
    g.add_argument("--dis-patch-stride", type=_count(1), default=d.dis_patch_stride, metavar="PX",
                   help="DIS patch stride in px (DIS runs at full resolution); 8 is faster, slightly less accurate")
    g.add_argument("--features", default=d.features, choices=["orb", "sift", "none"],
                   help="feature matches for the camera homography (flow matches are always used)")
    g.add_argument("--compensation", default=d.compensation, choices=["subtract", "reflow"],
                   help="remove camera motion by subtracting the homography field or re-running flow")
    g.add_argument("--flow-stride", type=_count(1), default=d.flow_stride, metavar="N",
                   help="stored flow grid = frame size / N")
    g.add_argument("--traj-len", type=_count(1), default=d.traj_len, metavar="L", help="trajectory steps L")
    g = p.add_argument_group("how it runs")
    g.add_argument("--workers", type=_count(0), default=d.workers, metavar="N",
                   help="local Dask worker processes, one thread each (0 = in this process, for debugging)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of an existing Dask scheduler, e.g. tcp://host:8786 (default: none, "
                        "start --workers local processes)")
    g.add_argument("--scheduler-timeout", type=_seconds, default=d.scheduler_timeout, metavar="SECONDS",
                   help="give up on --scheduler after this long without a connection")
    g.add_argument("--retries", type=_count(0), default=d.retries, metavar="N",
                   help="retries of a task that crashed or whose worker died (not of bad input)")
    g.add_argument("--shard-size", type=_count(1), default=d.shard_size, metavar="N",
                   help="videos per Dask task; every video is still its own group (zarr) or file (hdf5)")
    add_debug_flag(p)
    return p


def parse_args(argv: list[str] | None = None) -> ExtractConfig:
    p = build_parser()
    a = vars(p.parse_args(argv))
    a.pop("debug")
    if a["overwrite"] and a["append"]:
        p.error("--overwrite (replace the set) and --append (add to it) exclude each other")
    return ExtractConfig(**a)


# ------------------------------------------------------------------------ worker side

def extract_one(item: VideoItem, cfg: ExtractConfig, writer) -> dict:
    """One video -> its own group in the shard set, or a failure record. A small status dict."""
    from preprocess.video import extract_video_into, stage

    start, cpu = time.perf_counter(), time.process_time()
    base = {"id": item.video_id, "source": item.path}
    committed = writer.committed(item.video_id)
    if committed is not None:  # by an earlier attempt of this task whose worker died: never rewritten
        attrs, nbytes = committed
        return {**base, "status": "done", "frames": int(attrs["num_frames"]), "bytes": nbytes,
                "seconds": time.perf_counter() - start, "cpu_seconds": 0.0, "timings": {}}
    video = writer.begin_video(item.video_id)
    try:
        # each window of frames is written as soon as it is computed (bounded memory)
        attrs = extract_video_into(item.path, cfg, video)
        attrs.update({"video_id": item.video_id, "source": item.path, "label": item.label,
                      "label_name": item.label_name, "split": item.split,
                      "source_relpath": source_relpath(item.path, cfg.root)})
        with stage("write"):  # arrays or attrs the schema refuses, a store that refuses the write
            nbytes = video.commit(attrs)
    except ExtractionError as err:
        video.abort()
        record = err.record(item.path)
        writer.write_failure(item.video_id, record)
        return {**base, **record, "status": "failed", "seconds": time.perf_counter() - start}
    except BaseException:
        video.abort()
        raise
    # CPU seconds next to wall seconds: on a shared machine only the former measures our work
    return {**base, "status": "done", "frames": int(attrs["num_frames"]), "bytes": nbytes,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "timings": {**attrs["timings"], "write": round(video.seconds, 4)}}


def source_relpath(path: str, root: str | None) -> str:
    """`path` relative to the corpus root (its file name when outside it): where a reader of a
    --frames none set finds the video under another root (`open_shards(..., source_root=)`)."""
    if root:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if not rel.startswith(os.pardir + os.sep) and rel != os.pardir:
            return rel
    return os.path.basename(path)


def extract_batch(items: list[VideoItem], cfg: ExtractConfig) -> list[dict]:
    """Dask task: `shard_size` videos, each committed (or recorded as failed) on its own.

    Bad input is an ExtractionError, recorded inside `extract_one`; anything else (a bug,
    a full disk, a flaky network store) propagates so that Dask retries the task.
    """
    import cv2

    from shards.writer import open_writer

    cv2.setNumThreads(1)  # one core per task: Dask gives the parallelism
    writer = open_writer(cfg.out_path(), format=cfg.format)
    return [extract_one(item, cfg, writer) for item in items]


# ------------------------------------------------------------------------ driver side

Task = Callable[[list[VideoItem], ExtractConfig], list[dict]]


def _settings_diff(existing: dict | None, cfg: ExtractConfig) -> str:
    """'' when a set written with `existing` settings can be resumed by cfg, else what differs."""
    if not existing:
        return ""
    new = cfg.compute_key()
    # keys a set written by an older motion-mae lacks had that version's (the default) value;
    # a set without an extractor revision was written by revision 1
    defaults = {**ExtractConfig().compute_key(), "extractor": 1}
    old = {k: existing.get(k, defaults[k]) for k in new}
    return ", ".join(f"{k}: {old[k]!r} there vs {new[k]!r} now" for k in new if old[k] != new[k])


def _source_diff(existing: dict | None, cfg: ExtractConfig) -> str:
    """'' when the set at --out holds cfg's dataset and root, else what differs.

    Sets written before roots were stored resolved hold the root as given: None (the default
    root; only the dataset is compared) or a path, read from the current folder."""
    if not existing:
        return ""
    new = cfg.source_key()
    old = {k: existing.get(k) for k in new}
    if old["root"] is None:
        old["root"] = new["root"]
    elif "://" not in old["root"]:
        old["root"] = str(Path(old["root"]).expanduser().absolute())
    return ", ".join(f"{k}: {old[k]!r} there vs {new[k]!r} now" for k in new if old[k] != new[k])


def _open_checked(cfg: ExtractConfig, out: str, log):
    """The writer for `out`, refusing (or with --overwrite, replacing) a set extracted otherwise
    or from another dataset or root (which --append accepts); a damaged root document or failure
    record is repaired from what the set still holds."""
    from shards.metadata import DamagedMetadata
    from shards.schema import SchemaVersionError
    from shards.writer import open_writer, remove_set

    try:
        writer = open_writer(out, format=cfg.format, config=cfg.to_dict())
    except DamagedMetadata as err:
        writer = _restore_root(cfg, out, err, log)
    except SchemaVersionError as err:  # its message says what to do: re-extract with --overwrite
        if not cfg.overwrite:
            raise CliError(str(err)) from err
        removed = remove_set(out, cfg.format)
        log(f"--overwrite: deleted the shard set at {out} ({', '.join(removed)}), written by another "
            f"shard schema ({err})")
        return open_writer(out, format=cfg.format, config=cfg.to_dict())
    except ValueError as err:  # a set of the other format: the stores say which
        other = "hdf5" if cfg.format == "zarr" else "zarr"
        raise CliError(f"{err}: pass --format {other} to resume it, or use another --out") from err
    dropped = writer.drop_damaged_failures()
    if dropped:
        log(f"removed {len(dropped)} damaged failure records ({', '.join(dropped[:5])}); "
            f"their videos are extracted again")
    settings = _settings_diff(writer.config(), cfg)
    source = _source_diff(writer.config(), cfg)
    if source and cfg.append and not settings:
        log(f"--append: adding {cfg.dataset} videos from {cfg.root} to {out} ({source})")
        return writer
    if not settings and not source:
        return writer
    what = (f"with other settings ({settings})" if settings else "") + (" and " if settings and source else "") \
        + (f"from another dataset or root ({source})" if source else "")
    if not cfg.overwrite:
        hint = ("Use another --out, the same settings, or --overwrite to delete it and start over"
                if settings else "Use another --out, --append to add these videos to it, or --overwrite "
                "to delete it and start over")
        raise CliError(f"{out} was extracted {what}. {hint}.")
    removed = remove_set(out, cfg.format)
    log(f"--overwrite: deleted the shard set at {out} ({', '.join(removed)}), extracted {what}")
    return open_writer(out, format=cfg.format, config=cfg.to_dict())


def _restore_root(cfg: ExtractConfig, out: str, err: Exception, log):
    """The writer of a set whose root document is damaged: rebuilt from the config its
    manifest records (the videos are kept), else with --overwrite a fresh set."""
    from shards.metadata import DamagedMetadata
    from shards.writer import open_writer, remove_set, restore_root

    try:
        manifest = read_manifest(out)
    except DamagedMetadata:
        manifest = None
    if manifest and manifest.get("format") == cfg.format and manifest.get("config"):
        log(f"{err}: rebuilding the root from {out}/manifest.json's config, keeping the videos")
        restore_root(out, cfg.format, manifest["config"])
    elif cfg.overwrite:
        log(f"{err}: no readable manifest to rebuild it from; --overwrite: starting the set over")
        remove_set(out, cfg.format)
    else:
        raise CliError(f"{err}. Its manifest.json cannot rebuild it either: re-run with --overwrite "
                       f"to extract the set anew.")
    return open_writer(out, format=cfg.format, config=cfg.to_dict())


def _check_runnable(cfg: ExtractConfig, out: str) -> None:
    if cfg.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {cfg.shard_size}")
    if cfg.overwrite and cfg.append:
        raise UsageError("--overwrite (replace the set) and --append (add to it) exclude each other")
    if out.startswith("memory://") and (cfg.workers or cfg.scheduler):
        raise UsageError(f"{out} lives in the memory of one process, which Dask workers do not "
                         f"share; use --workers 0, or a directory or object-store URL")
    _check_out_path(out)


def _check_out_path(out: str) -> None:
    """A local --out must be a folder or not exist yet, under a folder (zarr and h5py would
    otherwise fail deep inside with NotADirectoryError or FileExistsError)."""
    if "://" in out and not out.startswith("file://"):
        return  # object stores have no files in the way: a key prefix is never a file
    path = Path(out[len("file://"):] if out.startswith("file://") else out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out} is a file; a shard set is a folder (created if absent) or an fsspec URL")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is a file, so no folder can be created under it")
            if not os.access(parent, os.W_OK | os.X_OK) and not path.exists():
                raise CliError(f"--out {out}: cannot create it, {parent} is not writable")
            return


def _check_out_apart(out: str, listing, dataset: str) -> None:
    """A local --out must not be the corpus root, lie inside it, or hold it or any of its videos:
    the set's `videos/` would share a folder with the corpus's own `videos/` (UCF101, HMDB51,
    SSv2 layouts), the next scan would list what the set holds, and --overwrite could not tell
    them apart. A list file's folder is only where its relative paths start, so for `list` the
    videos it names are what must stay outside --out."""
    if "://" in out and not out.startswith("file://"):
        return
    given = Path(out[len("file://"):] if out.startswith("file://") else out).expanduser().absolute()
    path = given.resolve()
    corpus = Path(listing.root).expanduser().resolve()
    walked = dataset != "list"
    # string prefixes, not a resolve() per video: a corpus lists hundreds of thousands
    prefixes = tuple({f"{path}{os.sep}", f"{given}{os.sep}"})
    inside = [it.path for it in (*listing.items, *listing.missing) if os.path.abspath(it.path).startswith(prefixes)]
    if path == corpus:
        where = "is the corpus root"
    elif walked and corpus in path.parents:
        where = f"lies inside the corpus root {corpus}"
    elif walked and path in corpus.parents:
        where = f"holds the corpus root {corpus}"
    elif inside:
        where = f"holds {len(inside)} of the corpus's videos ({inside[0]})"
    else:
        return
    beside = corpus.parent / f"{corpus.name}_shards"
    raise UsageError(f"--out {out} {where}: the shard set and the source videos would share folders. "
                     f"Write the set outside the corpus, e.g. --out {beside}")


def _record_missing(writer, listing, done: set[str], cfg: ExtractConfig, log) -> int:
    """Failure records (stage "open", "not on disk") for annotated videos absent from disk."""
    taken = done | {it.video_id for it in listing.items}
    absent = [it for it in listing.missing if it.video_id not in taken]
    if not absent:
        return 0
    if cfg.limit is not None:
        log(f"{len(absent)} annotated videos are not on disk (not recorded with --limit)")
        return 0
    recorded = writer.failed_ids()
    for it in absent:
        if it.video_id not in recorded:
            writer.write_failure(it.video_id, {"source": it.path, "stage": "open", "reason": NOT_ON_DISK})
    return len(absent)


def _crashed(writer, item: VideoItem, err: BaseException) -> dict:
    """A task that kept crashing, alone, after its retries: an 'internal' failure record."""
    record = {"source": item.path, "stage": INTERNAL,
              "reason": f"{type(err).__name__}: {' '.join(str(err).split())}"}
    writer.write_failure(item.video_id, record)
    return {"id": item.video_id, "status": "failed", **record}


def _in_process(task: Task, batch: list[VideoItem], cfg: ExtractConfig, writer) -> list[dict]:
    """One batch in this process, with the retries and the split it would get on a cluster."""
    error: Exception | None = None
    for _ in range(cfg.retries + 1):
        try:
            return task(batch, cfg)
        except Exception as err:  # a crash, not bad input: that is recorded inside the task
            error = err
    if len(batch) > 1:  # find the video that crashes it: one task per video
        return [r for item in batch for r in _in_process(task, [item], cfg, writer)]
    return [_crashed(writer, batch[0], error)]


@contextmanager
def dask_client(cfg: ExtractConfig):
    """A Dask client: of the scheduler at `cfg.scheduler`, else of a LocalCluster of
    `cfg.workers` single-threaded processes that closes with the client."""
    import dask
    from dask.distributed import Client, LocalCluster

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
    with dask.config.set({"distributed.scheduler.allowed-failures": cfg.retries}):
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
    import signal
    import threading

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


def _on_dask(task: Task, batches: list[list[VideoItem]], cfg: ExtractConfig, writer,
             collect: Callable[[dict], None], log) -> None:
    from dask.base import tokenize
    from dask.distributed import as_completed

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
            if fut.status == "error":  # the task itself crashed, even after retries
                if len(batch) > 1:  # find the video that crashes it: one task per video
                    singles = submit([[item] for item in batch])
                    batch_of.update(singles)
                    queue.update(singles)
                    continue
                results = [_crashed(writer, batch[0], fut.exception())]
            else:
                results = fut.result()
            fut.release()
            for result in results:
                collect(result)


@dataclass
class Counts:
    """How far a run got, for the line printed on Ctrl-C (None: the set was not opened yet)."""

    out: str = ""
    before: int | None = None   # videos committed in the set when the run started
    now: int = 0                # videos this run committed (recounted on disk when interrupted)


def run(cfg: ExtractConfig, log=print, task: Task = extract_batch, counts: Counts | None = None) -> dict:
    """Extract every video of the corpus that is not already in the shard set.

    `task` is what a Dask task runs on a batch of videos (tests swap in a flaky one);
    `counts`, when given, is kept up to date as videos are committed.
    """
    from shards.lock import writer_lock

    counts = counts if counts is not None else Counts()
    out = counts.out = cfg.out_path()
    _check_runnable(cfg, out)
    listing = scan(cfg.dataset, root=cfg.root, split=cfg.split, list_file=cfg.list_file, limit=cfg.limit)
    cfg = replace(cfg, root=str(listing.root))  # stored resolved: the next run is compared with it
    _check_out_apart(out, listing, cfg.dataset)
    with writer_lock(out, log=log) as lock:  # one run per shard set: a second one is refused
        return _run_locked(cfg, listing, log, task, lock, counts)


def _run_locked(cfg: ExtractConfig, listing, log, task: Task, lock, counts: Counts) -> dict:
    from shards import open_shards
    from shards.metadata import DamagedMetadata

    out = cfg.out_path()
    items = list(listing.items)
    writer = _open_checked(cfg, out, log)
    try:
        previous = read_manifest(out)
    except DamagedMetadata as err:  # rewritten at the end of this run; videos are measured anew
        log(f"{err}: ignored, this run writes a new one")
        previous = None
    done = writer.done_ids()
    counts.before = len(done)
    todo = [it for it in items if it.video_id not in done]
    missing = _record_missing(writer, listing, done, cfg, log)
    batches = [todo[i:i + cfg.shard_size] for i in range(0, len(todo), cfg.shard_size)]
    for folder in listing.unreadable:  # os.walk would skip them without a word
        log(f"warning: cannot read folder {folder}; its videos are not listed")
    log(f"motion-mae extract: {len(items)} videos in '{cfg.dataset}', {len(items) - len(todo)} already done, "
        f"{len(todo)} to do in {len(batches)} tasks -> {out} ({cfg.format})"
        + (f"; {missing} annotated videos not on disk" if missing else ""))

    start = time.perf_counter()
    progress = Progress(total=len(todo), log=log)
    results: list[dict] = []

    def collect(result: dict) -> None:
        results.append(result)
        counts.now += result["status"] == "done"
        progress.update(result)

    try:
        if batches and cfg.workers == 0 and not cfg.scheduler:
            for batch in batches:
                for result in _in_process(task, batch, cfg, writer):
                    collect(result)
        elif batches:
            _on_dask(task, batches, cfg, writer, collect, log)
    except KeyboardInterrupt:
        # count what is on disk once the local workers are gone: results still in flight and
        # the videos workers finished while the cluster closed are committed too
        counts.now = len(writer.done_ids()) - counts.before
        raise
    progress.close()
    if lock.lost:
        raise CliError(f"{out}: another run took over the writer lock while this one ran (its heartbeat "
                       f"could not be written for minutes); not finalizing. Re-run once it is done.")
    writer.finalize()
    summary = _summary(cfg, items, results, len(items) - len(todo), missing, time.perf_counter() - start)

    new = {it.video_id: it for it in todo}
    entries = {r["id"]: {"frames": r["frames"], "bytes": r["bytes"], "source": r["source"],
                         "label": new[r["id"]].label, "split": new[r["id"]].split}
               for r in results if r["status"] == "done"}
    videos = video_entries(out, done | entries.keys(), entries, previous)
    with open_shards(out) as ds:
        failures = ds.failures()
    summary["unreadable_folders"] = list(listing.unreadable)
    run_info = {k: summary[k] for k in ("done", "skipped", "failed", "missing", "frames", "seconds",
                                        "frames_per_s", "bytes_written", "stage_seconds", "unreadable_folders")}
    manifest = build_manifest(out, cfg.format, cfg.to_dict(), videos, failures, run_info)
    summary.update(manifest=write_manifest(out, manifest), committed=len(videos),
                   bytes=manifest["counts"]["bytes"], failure_records=len(failures))
    log(_format_summary(summary))
    return summary


def _summary(cfg: ExtractConfig, items, results, skipped: int, missing: int, seconds: float) -> dict:
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] == "failed"]
    frames = sum(r["frames"] for r in done)
    stages: dict[str, float] = {}
    for r in done:
        for k, v in r.get("timings", {}).items():
            stages[k] = stages.get(k, 0.0) + v
    return {
        "out": cfg.out_path(), "format": cfg.format, "videos": len(items), "done": len(done),
        "skipped": skipped, "failed": len(failed), "missing": missing, "failures": failed,
        "frames": frames, "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        "bytes_written": sum(r["bytes"] for r in done),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
    }


def _format_summary(s: dict) -> str:
    header = ("done", "skipped", "failed", "missing", "frames", "seconds", "frames/s", "MB")
    row = (s["done"], s["skipped"], s["failed"], s["missing"], s["frames"], f"{s['seconds']:.1f}",
           f"{s['frames_per_s'] or 0:.1f}", f"{s['bytes_written'] / 1e6:.1f}")
    width = [max(len(h), len(str(v))) for h, v in zip(header, row)]
    lines = [
        "",
        f"shards:   {s['out']}  ({s['format']}, {s['committed']} videos, {s['bytes'] / 1e6:.1f} MB, "
        f"{s['failure_records']} failure records)",
        "this run: " + "  ".join(h.rjust(w) for h, w in zip(header, width)),
        "          " + "  ".join(str(v).rjust(w) for v, w in zip(row, width)),
    ]
    if s["stage_seconds"]:
        total = sum(s["stage_seconds"].values()) or 1.0
        lines.append("stages:   " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in s["stage_seconds"].items()))
    for f in s["failures"][:MAX_FAILURES_SHOWN]:
        lines.append(f"failed:   {f['source']}  [{f['stage']}] {f['reason']}")
    if len(s["failures"]) > MAX_FAILURES_SHOWN:
        lines.append(f"failed:   ... and {len(s['failures']) - MAX_FAILURES_SHOWN} more (all in the manifest)")
    for folder in s.get("unreadable_folders", []):
        lines.append(f"warning:  cannot read folder {folder}; its videos are not listed")
    lines.append(f"manifest: {s['manifest']}")
    lines.append(f"read:     python -c \"from shards import open_shards; ds = open_shards('{s['out']}'); "
                 f"print(len(ds), ds.ids()[:3])\"")
    return "\n".join(lines)


def main(argv: list[str] | None = None, counts: Counts | None = None) -> int:
    """Parse, print the config, extract; 1 if any video failed. Wrong usage raises UsageError,
    a corpus or output that cannot be used CliError (`cli` prints either as one line)."""
    cfg = parse_args(argv)
    print("config:\n" + cfg.describe(), flush=True)
    try:
        summary = run(cfg, counts=counts)
    except DatasetUsageError as err:
        raise UsageError(str(err)) from err
    except DatasetRootError as err:
        raise CliError(str(err)) from err
    return 1 if summary["failed"] else 0


def interrupted_line(counts: Counts) -> str:
    if counts.before is None:
        return "interrupted before any video was extracted"
    return (f"interrupted: {counts.before + counts.now} videos committed in {counts.out} "
            f"({counts.now} by this run); run the same command to resume")


def cli(argv: list[str] | None = None) -> None:
    """The command line: `main` with one-line errors and a one-line Ctrl-C (shards/cli.py)."""
    counts = Counts()
    run_main(lambda: main(argv, counts), PROG, interrupted=lambda: interrupted_line(counts))


if __name__ == "__main__":
    from preprocess.extract import cli as _cli  # run under the package name so Dask pickles by reference

    _cli()
