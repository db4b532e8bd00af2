"""Scan a video corpus once and write motion-vector, warped-flow, trajectory and HOG shards.

    python preprocess/extract.py                          # the built-in demo corpus
    python preprocess/extract.py --dataset folder --root ~/videos --workers 2
    python preprocess/extract.py --dataset k400 --scheduler tcp://host:8786

This is the only place where Dask and files meet: each Dask task decodes one video,
computes its arrays with the pure functions of `preprocess.video`, and writes that
video's own group (so no two processes ever write the same array). Finished videos are
skipped on a re-run; bad videos become failure records with a stage and a reason.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python preprocess/extract.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess.config import ExtractConfig  # noqa: E402
from preprocess.datasets import DATASETS, DatasetRootError, list_videos  # noqa: E402
from preprocess.datasets.base import VideoItem  # noqa: E402
from preprocess.errors import ExtractionError  # noqa: E402
from preprocess.progress import Progress  # noqa: E402


def parse_args(argv: list[str] | None = None) -> ExtractConfig:
    d = ExtractConfig()
    p = argparse.ArgumentParser(
        prog="python preprocess/extract.py",
        description="Extract frames, codec motion vectors, camera-compensated optical flow, "
                    "dense trajectories and HOG from a video corpus into versioned shards.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("input")
    g.add_argument("--dataset", default=d.dataset, choices=sorted(DATASETS),
                   help="corpus layout; 'demo' is generated locally and needs no data")
    g.add_argument("--root", default=None,
                   help="corpus root (default: $MOTION_MAE_DATA/<dataset> or <repo>/data/<dataset>)")
    g.add_argument("--list", dest="list_file", default=None, help="for --dataset list: 'path label' lines")
    g.add_argument("--split", default=None, help="only this split (e.g. train, val)")
    g.add_argument("--limit", type=int, default=None, help="only the first N videos")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=None, help="shard set path or fsspec URL (default: <data dir>/shards/<dataset>)")
    g.add_argument("--format", default=d.format, choices=["zarr", "hdf5"])
    g = p.add_argument_group("what is computed")
    g.add_argument("--short-side", type=int, default=d.short_side, help="resize short side to this (never upscale)")
    g.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: native)")
    g.add_argument("--max-ref-distance", type=int, default=d.max_ref_distance,
                   help="largest codec reference distance tested when recovering per-frame motion vectors")
    g.add_argument("--flow", dest="flow_method", default=d.flow_method, choices=["dis", "tvl1"],
                   help="optical flow: DIS (fast) or TV-L1 (slow, opt-in quality mode)")
    g.add_argument("--dis-preset", default=d.dis_preset, choices=["ultrafast", "fast", "medium"])
    g.add_argument("--features", default=d.features, choices=["orb", "sift", "none"],
                   help="feature matches for the camera homography (flow matches are always used)")
    g.add_argument("--compensation", default=d.compensation, choices=["subtract", "reflow"],
                   help="remove camera motion by subtracting the homography field or re-running flow")
    g.add_argument("--flow-stride", type=int, default=d.flow_stride, help="stored flow grid = frame size / this")
    g.add_argument("--traj-len", type=int, default=d.traj_len, help="trajectory steps L")
    g = p.add_argument_group("how it runs")
    g.add_argument("--workers", type=int, default=d.workers,
                   help="local Dask worker processes, one thread each (0 = in this process, for debugging)")
    g.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    g.add_argument("--retries", type=int, default=d.retries, help="retries of a task that crashed (not of bad input)")
    a = p.parse_args(argv)
    return ExtractConfig(**{k: v for k, v in vars(a).items()})


def extract_one(item: VideoItem, cfg: ExtractConfig) -> dict:
    """Dask task: one video -> its own group in the shard set. Returns a small status dict."""
    import cv2

    from preprocess.video import extract_video, stage
    from shards.writer import open_writer

    cv2.setNumThreads(1)  # one core per task: Dask gives the parallelism
    start = time.perf_counter()
    writer = open_writer(cfg.out_path(), format=cfg.format)
    base = {"id": item.video_id, "source": item.path}
    try:
        arrays, attrs = extract_video(item.path, cfg)
        attrs.update({"video_id": item.video_id, "source": item.path, "label": item.label,
                      "label_name": item.label_name, "split": item.split})
        with stage("write"):
            writer.write_video(item.video_id, arrays, attrs)
    except ExtractionError as err:
        record = err.record(item.path)
        writer.write_failure(item.video_id, record)
        return {**base, **record, "status": "failed", "seconds": time.perf_counter() - start}
    return {**base, "status": "done", "frames": int(attrs["num_frames"]),
            "seconds": time.perf_counter() - start, "timings": attrs["timings"]}


def _check_same_settings(existing: dict | None, cfg: ExtractConfig, out: str) -> None:
    if not existing:
        return
    old = {k: existing.get(k) for k in cfg.compute_key()}
    new = cfg.compute_key()
    diff = {k: (old[k], new[k]) for k in new if old[k] != new[k]}
    if diff:
        text = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
        raise SystemExit(f"error: {out} was extracted with other settings ({text}). "
                         f"Use another --out or the same settings.")


def _client(cfg: ExtractConfig):
    from dask.distributed import Client, LocalCluster

    if cfg.scheduler:
        return Client(cfg.scheduler)
    # Each worker: one process, one thread; BLAS/OpenCV inside a task stay single-threaded.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster)


def run(cfg: ExtractConfig, log=print) -> dict:
    """Extract every video of the corpus that is not already in the shard set."""
    from shards.writer import open_writer

    out = cfg.out_path()
    items = list_videos(cfg.dataset, root=cfg.root, split=cfg.split, list_file=cfg.list_file,
                        limit=cfg.limit)
    writer = open_writer(out, format=cfg.format, config=cfg.to_dict())
    _check_same_settings(writer.config(), cfg, out)
    done = writer.done_ids()
    todo = [it for it in items if it.video_id not in done]
    log(f"motion-mae extract: {len(items)} videos in '{cfg.dataset}', {len(items) - len(todo)} already done, "
        f"{len(todo)} to do -> {out} ({cfg.format})")
    start = time.perf_counter()
    progress = Progress(total=len(todo), log=log)
    results: list[dict] = []
    if todo and cfg.workers == 0 and not cfg.scheduler:
        for item in todo:
            results.append(extract_one(item, cfg))
            progress.update(results[-1])
    elif todo:
        from dask.distributed import as_completed

        with _client(cfg) as client:
            log(f"dask: {client.dashboard_link or 'no dashboard'}  "
                f"({len(client.scheduler_info()['workers'])} workers)")
            futures = {client.submit(extract_one, it, cfg, retries=cfg.retries, pure=False,
                                     key=f"extract-{it.video_id}"): it for it in todo}
            for fut in as_completed(futures):
                item = futures[fut]
                if fut.status == "error":  # the task itself crashed, even after retries
                    err = fut.exception()
                    record = {"source": item.path, "stage": "internal",
                              "reason": f"{type(err).__name__}: {' '.join(str(err).split())}"}
                    writer.write_failure(item.video_id, record)
                    result = {"id": item.video_id, "status": "failed", **record}
                else:
                    result = fut.result()
                results.append(result)
                progress.update(result)
    progress.close()
    writer.finalize()
    summary = _summary(cfg, items, results, len(items) - len(todo), time.perf_counter() - start)
    log(_format_summary(summary))
    return summary


def _dir_bytes(path: str) -> int | None:
    p = Path(path)
    if not p.exists():
        return None
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _summary(cfg: ExtractConfig, items, results, skipped: int, seconds: float) -> dict:
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] == "failed"]
    frames = sum(r["frames"] for r in done)
    stages: dict[str, float] = {}
    for r in done:
        for k, v in r.get("timings", {}).items():
            stages[k] = stages.get(k, 0.0) + v
    return {
        "out": cfg.out_path(), "format": cfg.format, "videos": len(items), "done": len(done),
        "skipped": skipped, "failed": len(failed), "failures": failed, "frames": frames,
        "seconds": round(seconds, 2), "bytes": _dir_bytes(cfg.out_path()),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
    }


def _format_summary(s: dict) -> str:
    size = f"{s['bytes'] / 1e6:.1f} MB" if s["bytes"] is not None else "n/a (remote store)"
    lines = [
        "",
        f"shards:  {s['out']}  ({s['format']}, {size})",
        f"videos:  {s['done']} extracted, {s['skipped']} already there, {s['failed']} failed, {s['videos']} in corpus",
        f"frames:  {s['frames']} in {s['seconds']:.1f} s ({s['frames_per_s'] or 0:.1f} frames/s)",
    ]
    if s["stage_seconds"]:
        total = sum(s["stage_seconds"].values()) or 1.0
        lines.append("stages:  " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in s["stage_seconds"].items()))
    for f in s["failures"]:
        lines.append(f"failed:  {f['source']}  [{f['stage']}] {f['reason']}")
    lines.append(f"read:    python -c \"from shards import open_shards; ds = open_shards('{s['out']}'); "
                 f"print(len(ds), ds.ids()[:3])\"")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    print("config:\n" + cfg.describe(), flush=True)
    try:
        summary = run(cfg)
    except DatasetRootError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    Path(cfg.out_path()).exists() and _write_json(Path(cfg.out_path()) / "last_run.json", summary)
    return 1 if summary["failed"] else 0


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str))


if __name__ == "__main__":
    from preprocess.extract import main as _main  # run under the package name so Dask pickles by reference

    sys.exit(_main())
