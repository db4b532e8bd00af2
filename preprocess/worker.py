"""The worker side of the extractor: what one Dask task runs on a batch of videos.

Each video is decoded and computed window by window (`preprocess.video`) and written into
its own group (zarr) or file (hdf5), then committed; bad input becomes a failure record.
"""
from __future__ import annotations

import os
import time

import cv2

from preprocess.config import ExtractConfig
from preprocess.datasets.base import VideoItem
from preprocess.errors import ExtractionError, storage_fault
from preprocess.video import extract_video_into, stage
from shards.writer import open_writer


def extract_one(item: VideoItem, cfg: ExtractConfig, writer) -> dict:
    """One video -> its own group in the shard set, or a failure record. A small status dict."""
    start, cpu = time.perf_counter(), time.process_time()
    base = {"id": item.video_id, "source": item.path}
    try:
        committed = writer.committed(item.video_id)
        video = writer.begin_video(item.video_id) if committed is None else None
    except OSError as err:
        if storage_fault(err) is None:
            raise
        return halted(item, err, cfg.out_path())
    if committed is not None:  # by an earlier attempt of this task whose worker died: never rewritten
        attrs, nbytes = committed
        return {**base, "status": "done", "frames": int(attrs["num_frames"]), "bytes": nbytes,
                "seconds": time.perf_counter() - start, "cpu_seconds": 0.0, "timings": {}}
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
        try:
            writer.write_failure(item.video_id, record)
        except OSError as write_err:  # not recorded: the next run meets the video again
            if storage_fault(write_err) is None:
                raise
            return halted(item, write_err, cfg.out_path())
        return {**base, **record, "status": "failed", "seconds": time.perf_counter() - start}
    except BaseException as err:
        _abort(video)
        if isinstance(err, Exception) and storage_fault(err) is not None:
            return halted(item, err, cfg.out_path())
        raise
    # CPU seconds next to wall seconds: on a shared machine only the former measures our work
    return {**base, "status": "done", "frames": int(attrs["num_frames"]), "bytes": nbytes,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "timings": {**attrs["timings"], "write": round(video.seconds, 4)}}


def halted(item: VideoItem, err: BaseException, out: str) -> dict:
    """The result of a video whose write the storage refused (`storage_fault`): it stops the
    run, and no failure record is written (the video is fine; the disk is not)."""
    fault = storage_fault(err)
    where = f"video {item.video_id}" + (f" ({fault.filename})" if fault.filename else f" into {out}")
    return {"id": item.video_id, "source": item.path, "status": "halted", "errno": fault.errno,
            "path": where, "reason": f"{type(err).__name__}: {' '.join(str(err).split())}"}


def _abort(video) -> None:
    """Drop a video being written; on a storage that refuses writes even deleting may fail,
    which leaves an uncommitted video that no reader lists and the next run rewrites."""
    try:
        video.abort()
    except OSError:
        pass


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

    Bad input is an ExtractionError, recorded inside `extract_one`. A storage that refuses
    writes (full, capped, read-only) ends the batch with a "halted" result, which stops the
    run; anything else (a bug, a flaky network store) propagates so that Dask retries the task.
    """
    cv2.setNumThreads(1)  # one core per task: Dask gives the parallelism
    writer = open_writer(cfg.out_path(), format=cfg.format)
    results = []
    for item in items:
        results.append(extract_one(item, cfg, writer))
        if results[-1]["status"] == "halted":  # the videos after it would meet the same disk
            break
    return results
