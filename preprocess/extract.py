"""Scan a video corpus once and write motion-vector and camera-compensated flow shards (and frames).

    python preprocess/extract.py                          # the built-in demo corpus
    python preprocess/extract.py --dataset folder --root ~/videos --workers 2
    python preprocess/extract.py --dataset k400 --scheduler tcp://host:8786 --out s3://bucket/k400

The command line and the run. Each Dask task takes `--shard-size` videos, decodes each,
computes its arrays with the pure functions of `preprocess.video` and writes that video's
own group (so no two processes ever write the same array): `preprocess.worker`. The checks
on a set at --out before anything is written: `preprocess.resume`; running the tasks on
Dask or in this process: `preprocess.dask_driver`.
Finished videos are skipped on a re-run; bad videos, annotated videos that are not on
disk and tasks that keep crashing become failure records with a stage and a reason. At
the end the driver writes the corpus index (root attrs) and `manifest.json`.
Corpus layouts: docs/datasets.md; clusters, resume and failures: docs/scaling.md. Mistakes
and Ctrl-C are one line on stderr (`cli`, shards/cli.py); `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import errno
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # `python preprocess/extract.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess.config import ExtractConfig  # noqa: E402
from preprocess.dask_driver import Task, in_process, is_halted, on_dask  # noqa: E402
from preprocess.datasets import DATASETS, DatasetRootError, DatasetUsageError, scan  # noqa: E402
from preprocess.errors import STORAGE_ERRNOS, storage_fault  # noqa: E402
from preprocess.manifest import build_manifest, read_manifest, video_entries, write_manifest  # noqa: E402
from preprocess.progress import Progress  # noqa: E402
from preprocess.resume import check_out_apart, check_runnable, known_ids, open_checked, record_missing, set_traj_len  # noqa: E402
from preprocess.worker import extract_batch  # noqa: E402
from shards import open_shards  # noqa: E402
from shards.cli import ArgumentParser, CliError, UsageError, add_debug_flag, run_main  # noqa: E402
from shards.lock import writer_lock  # noqa: E402
from shards.metadata import DamagedMetadata  # noqa: E402

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
        description="Extract codec motion vectors, camera-compensated optical flow and (optionally) the\n"
                    "decoded frames of a video corpus into versioned shards; trajectories and HOG are\n"
                    "derived from them when read.\n"
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
    g.add_argument("--traj-len", type=_count(1), default=d.traj_len, metavar="L", help="trajectory steps L recorded in the set's config for training to use unless it asks "
                   "for another length (trajectories are tracked when read); a resumed set keeps its first value")
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
    counts = counts if counts is not None else Counts()
    out = counts.out = cfg.out_path()
    check_runnable(cfg, out)
    listing = scan(cfg.dataset, root=cfg.root, split=cfg.split, list_file=cfg.list_file, limit=cfg.limit,
                   known=known_ids(out))  # the set's videos keep their ids whatever was added
    cfg = replace(cfg, root=str(listing.root))  # stored resolved: the next run is compared with it
    check_out_apart(out, listing, cfg.dataset)
    try:
        with writer_lock(out, log=log) as lock:  # one run per shard set: a second one is refused
            return _run_locked(cfg, listing, log, task, lock, counts)
    except OSError as err:  # the driver's own writes: the set's root, failure records, index, manifest
        fault = storage_fault(err)
        if fault is None:
            raise
        raise StorageRefused(storage_line(out, fault.errno, fault.filename or out, counts)) from err


class StorageRefused(CliError):
    """The storage of the shard set refuses writes (full, capped, quota, read-only): the run
    stopped, what it finished is committed, and the same command resumes once space is freed."""


def storage_line(out: str, code: int, what: str, counts: Counts) -> str:
    """The one line of a run stopped by its storage: what was refused, where, the free space."""
    committed = (counts.before or 0) + counts.now
    return (f"{out}: {STORAGE_ERRNOS[code]} (errno {errno.errorcode.get(code, code)}) while writing {what}; "
            f"{free_space(out)}. The {committed} videos committed so far are kept and no video was recorded "
            f"as failed: free space (or lift the limit) and run the same command to resume")


def free_space(out: str) -> str:
    """'<n> free on <folder>' for a local set (its nearest existing folder), else why unknown."""
    if "://" in out and not out.startswith("file://"):
        return "free space unknown on an object store"
    folder = Path(out[len("file://"):] if out.startswith("file://") else out).expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as err:
        return f"free space on {folder} unknown ({err.strerror})"
    return f"{_size(free)} free on {folder}"


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return ""


def _run_locked(cfg: ExtractConfig, listing, log, task: Task, lock, counts: Counts) -> dict:
    out = cfg.out_path()
    items = list(listing.items)
    writer = open_checked(cfg, out, log)
    cfg = set_traj_len(cfg, writer.config(), log)
    try:
        previous = read_manifest(out)
    except DamagedMetadata as err:  # rewritten at the end of this run; videos are measured anew
        log(f"{err}: ignored, this run writes a new one")
        previous = None
    done = writer.done_ids()
    counts.before = len(done)
    todo = [it for it in items if it.video_id not in done]
    missing = record_missing(writer, listing, done, cfg, log)
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
                for result in in_process(task, batch, cfg, writer):
                    collect(result)
                if is_halted(results):  # the storage refuses writes: the rest would meet it too
                    break
        elif batches:
            on_dask(task, batches, cfg, writer, collect, log)
    except KeyboardInterrupt:
        # count what is on disk once the local workers are gone: results still in flight and
        # the videos workers finished while the cluster closed are committed too
        counts.now = len(writer.done_ids()) - counts.before
        raise
    progress.close()
    halt = next((r for r in results if r["status"] == "halted"), None)
    if lock.lost:
        raise CliError(f"{out}: another run took over the writer lock while this one ran (its heartbeat "
                       f"could not be written for minutes); not finalizing. Re-run once it is done.")
    try:
        writer.finalize()
    except OSError as err:
        if halt is None or storage_fault(err) is None:
            raise
        # the committed videos are listed by the next run all the same, which writes the index
        raise StorageRefused(storage_line(out, halt["errno"], halt["path"], counts)) from err
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
    if halt is not None:  # after the index and the manifest: the next run sees what was finished
        raise StorageRefused(storage_line(out, halt["errno"], halt["path"], counts))
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
