"""Check every video of a shard set: the engine of `python -m shards verify`.

Lives outside `shards/__main__.py` so that `--workers` processes (spawned, not forked: open
zarr/h5py handles and zarr's event-loop thread do not survive a fork) can import it: the
functions of `__main__` do not unpickle in a spawned child.
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np

from .errors import SchemaVersionError, ShardReadError
from .reader import open_shards
from .ref import ShardRef
from .schema import ARRAYS, COMMIT_ATTR, REQUIRED_VIDEO_ATTRS, SHAPE_ATTRS, dims_from_attrs, frames_storage

FRAMES_PER_READ = 64  # bounds memory when decoding long videos


def video_problems(ds, video_id: str) -> list[tuple[str, str]]:
    """Everything wrong with one video as (array, cause) pairs ("-" for the video as a
    whole); empty: the video is good. Decodes every stored frame of every array (JPEG
    frames and booleans too, so every chunk's checksum is checked), computes every derived
    array (schema 3: traj, traj_valid, hog) from its sources, and never raises: a damaged
    video is a finding."""
    try:
        v = ds.video(video_id, require_complete=False, fresh=True)
    except SchemaVersionError as e:
        return [("-", str(e))]
    except Exception as e:  # an unreadable video is a finding to report, not a crash
        cause = e.__cause__ if isinstance(e, ShardReadError) and e.__cause__ is not None else e
        return [("-", f"cannot open: {type(cause).__name__}: {cause}")]
    problems = []
    if v.attrs.get(COMMIT_ATTR) is not True:
        problems.append(("-", "no commit marker: interrupted write; resume the extraction to redo it"))
    missing = [k for k in (*REQUIRED_VIDEO_ATTRS, *SHAPE_ATTRS) if k not in v.attrs]
    if missing:
        problems.append(("-", f"attrs lack {missing}"))
    try:
        dims = dims_from_attrs(v.attrs)
    except (ValueError, TypeError):
        dims = None
    for name, spec in v.specs.items():
        if name == "frames" and frames_storage(v.attrs) == "none":
            problems += source_problems(v)
            continue
        if name not in v:
            lost = [s for s in spec.source if s not in v.stored_names()]
            problems.append((name, f"cannot be derived: {lost} missing" if spec.derived else "missing"))
            continue
        try:
            problems += [(name, p) for p in array_problems(v[name], spec, dims)]
        except Exception as e:  # damaged chunks: checksum, truncation, missing file, bad JPEG
            if spec.derived:  # the message names the damaged source array
                problems.append((name, f"cannot be derived: {type(e).__name__}: {_one_line(e)}"))
                continue
            cause = e.__cause__ if isinstance(e, ShardReadError) and e.__cause__ is not None else e
            problems.append((name, f"unreadable: {type(cause).__name__}: {_one_line(cause)}"))
    extra = sorted(set(v.stored_names()) - set(ARRAYS))
    if extra:
        problems.append(("-", f"arrays not in the schema: {extra}"))
    return problems


def source_problems(v) -> list[tuple[str, str]]:
    """A --frames none video: its source video must be where the reader looks for it."""
    path = v.frames_source
    return [] if os.path.isfile(path) else [("frames", f"source video missing: {path} (--frames none: "
                                                       f"frames are decoded from it)")]


def array_problems(arr, spec, dims) -> list[str]:
    """Dtype, shape and a full decode of one stored array, or the computation of a derived
    one (raises on unreadable chunks)."""
    if not spec.derived and arr.stored_dtype != np.dtype(spec.stored_dtype):
        return [f"stored dtype {arr.stored_dtype}, schema {spec.stored_dtype}"]
    if dims is not None and arr.shape != spec.shape(dims):
        return [f"shape {arr.shape}, schema {spec.dims} -> {spec.shape(dims)}"]
    bad = 0
    for t in range(0, len(arr), FRAMES_PER_READ):
        block = arr[t:t + FRAMES_PER_READ]  # every array, not only floats: the read is the check
        if block.dtype.kind == "f":
            bad += int(np.count_nonzero(~np.isfinite(block)))
    return [f"{bad} non-finite values"] if bad else []


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


_worker_ds = None


def _worker_init(ref: ShardRef) -> None:
    global _worker_ds
    _worker_ds = open_shards(ref)


def _worker_check(video_id: str) -> tuple[str, list[tuple[str, str]]]:
    try:
        return video_id, video_problems(_worker_ds, video_id)
    except Exception as e:  # video_problems does not raise; this guards the pool itself
        return video_id, [("-", f"verify failed: {type(e).__name__}: {e}")]


def check_all(ds, ids: list[str], workers: int):
    """Yield (video id, problems) for `ids`, in order; `workers` > 1 checks in processes,
    each with its own handle on the set (zarr and h5py handles do not cross processes)."""
    if workers <= 1:
        for video_id in ids:
            yield video_id, video_problems(ds, video_id)
        return
    ctx = mp.get_context("spawn")  # fork would copy open zarr/h5py handles and zarr's threads
    with ctx.Pool(workers, initializer=_worker_init, initargs=(ds.ref,)) as pool:
        yield from pool.imap(_worker_check, ids, chunksize=max(1, min(64, len(ids) // (4 * workers))))
