"""Check and summarize a shard set.

    python -m shards verify PATH [--workers N]   decode every array of every video; one line per
                                                 problem (video / array / cause), a summary;
                                                 exit 1 on problems
    python -m shards verify PATH --repair        ... then delete the damaged videos and re-extract
                                                 them with the set's stored config (shards/repair.py)
    python -m shards inspect PATH [ID]    corpus summary, or one video's attrs and arrays
    python -m shards pack SRC DST [--videos-per-file N] [--workers N]
                                          a finished set into a few large files (docs/shards.md,
                                          "Packed sets"); resumable, DST opens with open_shards
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import Counter

import numpy as np

from .cli import ArgumentParser, CliError, add_debug_flag, run_main
from .errors import SchemaVersionError, ShardReadError
from .lock import live_holder
from .pack import DEFAULT_VIDEOS_PER_FILE, pack
from .reader import open_shards
from .ref import ShardRef
from .repair import EXTRACT, check_repairable_set, command_line, delete_videos, extract_commands, repairable
from .schema import ARRAYS, SUPPORTED_VERSIONS
from .verify import check_all, video_problems

PROG = "python -m shards"


def _open(shards):
    """The shard set (a path or a ShardRef), or CliError saying why it cannot be opened."""
    shards = ShardRef.of(shards)
    try:
        return open_shards(shards)
    except (SchemaVersionError, FileNotFoundError, ValueError) as e:
        raise CliError(str(e) if shards.path in str(e) else f"{shards}: {e}") from e


def verify(path: str, workers: int = 1, source_root: str | None = None, repair: bool = False) -> int:
    damaged: dict[str, list[tuple[str, str]]] = {}
    with _open(ShardRef(path, source_root)) as ds:
        config = check_repairable_set(ds) if repair else {}
        n_problems, bad_videos = 0, 0
        all_ids = ds.all_ids()
        for video_id, problems in check_all(ds, all_ids, workers):
            for array, cause in problems:
                print(f"{video_id} / {array} / {cause}", flush=True)
            n_problems += len(problems)
            bad_videos += bool(problems)
            if problems:
                damaged[video_id] = problems
        committed = set(ds.ids())
        stale = committed - set(all_ids)
        if stale:  # an index listing videos that are gone
            print(f"index lists {len(stale)} videos that do not exist, e.g. {sorted(stale)[:5]}")
            n_problems += len(stale)
        try:
            n_failures = len(ds.failures())
        except Exception as e:  # a garbage failure record is a finding too
            print(f"failures / - / unreadable failure records: {type(e).__name__}: {e}")
            n_problems, n_failures = n_problems + 1, "?"
        print(f"{path}: {ds.format}, schema v{ds.attrs['motion_mae']['schema_version']}, "
              f"{len(all_ids)} videos ({len(committed)} committed), {n_failures} failures; "
              f"{n_problems} problems in {bad_videos} videos")
        if repair and damaged:
            return repair_videos(ds, config, damaged)
    return 1 if n_problems else 0


def repair_videos(ds, config: dict, damaged: dict[str, list[tuple[str, str]]]) -> int:
    """Delete the damaged videos that re-extraction mends, re-extract them with the set's config,
    check them again; 0 when every damaged video is good now."""
    fix, splits, kept = [], set(), []
    for vid, problems in damaged.items():
        try:
            attrs = ds.video(vid, require_complete=False).attrs
        except (KeyError, ShardReadError, SchemaVersionError):  # attrs unreadable too: source unknown
            attrs = {}
        source = attrs.get("source")
        if ds.ref.source_root and attrs.get("source_relpath"):
            source = os.path.join(ds.ref.source_root, attrs["source_relpath"])
        if not repairable(problems):
            kept.append(f"{vid} (nothing stored is damaged)")
        elif isinstance(source, str) and "://" not in source and not os.path.isfile(source):
            kept.append(f"{vid} (its source {source} is gone: deleting it would lose it)")
        else:
            fix.append(vid)
            splits.add(attrs.get("split"))
    for line in kept:
        print(f"repair: left {line}")
    if not fix:
        return 1
    out, fmt, ref = ds.path, ds.format, ds.ref
    ds.close()
    delete_videos(out, fmt, fix)
    commands = extract_commands(config, out, splits)
    print(f"repair: deleted {len(fix)} damaged videos ({', '.join(sorted(fix)[:5])}"
          f"{', ...' if len(fix) > 5 else ''}); re-extracting them with the set's config:", flush=True)
    for cmd in commands:
        print(f"  {command_line(cmd)}", flush=True)
    if not EXTRACT.is_file():
        print(f"repair: {EXTRACT} is not here: run the command above from a motion-mae checkout")
        return 1
    for cmd in commands:
        subprocess.run(cmd, check=False)
    with _open(ref) as again:
        missing = [vid for vid in fix if vid not in again]
        still = [vid for vid in fix if vid in again and video_problems(again, vid)]
    if missing:
        print(f"repair: not re-extracted: {', '.join(sorted(missing)[:5])} (not in the listing of the stored "
              f"dataset, root and split; run the extraction that made them)")
    print(f"repair: {len(fix) - len(missing) - len(still)} of {len(fix)} damaged videos re-extracted and verified"
          + (f"; still damaged: {', '.join(sorted(still)[:5])}" if still else ""))
    return 1 if missing or still or kept else 0


def pack_set(src: str, dst: str, videos_per_file: int, workers: int = 1) -> int:
    if src.rstrip("/") == dst.rstrip("/"):
        raise CliError(f"pack: SRC and DST are the same path ({src}); pack into a new directory")
    _open(src).close()  # a one-line error for a path that is no shard set
    holder = live_holder(src)
    if holder is not None:  # its newest videos would be missing from the pack, with no word
        raise CliError(f"pack: {src} is being written by another run ({holder.describe(time.time())}); "
                       f"pack it once that run has finished")
    summary = pack(src, dst, videos_per_file, workers=workers)
    print(f"{dst}: {summary['videos']} videos in {summary['files']} pack files "
          f"({summary['written']} written, {summary['kept']} already packed) from a {summary['source_format']} set"
          + (f"; {len(summary['incomplete_skipped'])} uncommitted videos left out" if summary["incomplete_skipped"] else ""))
    return 0


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


def inspect_corpus(ds) -> None:
    ids = ds.ids()
    frames, nbytes = 0, Counter()
    for video_id in ids:
        frames += int(ds.video(video_id).attrs["num_frames"])
        nbytes.update(ds.nbytes(video_id))
    failures = ds.failures()
    print(f"path: {ds.path}\nformat: {ds.format}\nschema version: "
          f"{ds.attrs['motion_mae']['schema_version']} (this code reads {SUPPORTED_VERSIONS})")
    print(f"videos: {len(ids)} committed, {len(ds.all_ids()) - len(ids)} incomplete; frames: {frames}")
    by_stage = Counter(f.get("stage") for f in failures)
    print(f"failures: {len(failures)}" + (f" by stage {dict(by_stage)}" if failures else ""))
    print(f"config: {json.dumps(ds.attrs.get('config', {}), sort_keys=True)}")
    print(f"{'array':<14}{'bytes on disk':>16}{'bytes/frame':>14}")
    for name in ARRAYS:
        per_frame = nbytes[name] / frames if frames else 0
        print(f"{name:<14}{_human(nbytes[name]):>16}{_human(per_frame):>14}")
    total = sum(nbytes.values())
    print(f"{'total':<14}{_human(total):>16}{_human(total / frames if frames else 0):>14}")


def inspect_video(ds, video_id: str) -> None:
    v = ds[video_id]
    print(f"video {video_id}")
    for k, val in sorted(v.attrs.items()):
        print(f"  {k}: {json.dumps(val)}")
    sizes = ds.nbytes(video_id)
    print(f"  {'array':<14}{'shape':<24}{'dtype':<9}{'stored':<9}{'bytes':>10}  stats")
    for name in v.keys():
        arr = v[name]
        x = arr[...]
        if x.size == 0:
            stats = "empty"
        elif x.dtype == np.bool_:
            stats = f"true {x.mean():.3f}"
        else:
            stats = f"min {x.min():.4g} max {x.max():.4g} mean {x.mean():.4g}"
        print(f"  {name:<14}{str(arr.shape):<24}{str(arr.dtype):<9}{str(arr.stored_dtype):<9}"
              f"{_human(sizes[name]):>10}  {stats}")


def inspect(path: str, video_id: str | None) -> int:
    with _open(path) as ds:
        if video_id is None:
            inspect_corpus(ds)
            return 0
        try:
            inspect_video(ds, video_id)
        except KeyError as e:  # the reader's message lists a few ids
            raise CliError(e.args[0]) from None
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


PATH_HELP = "shard set: a directory or fsspec URL (zarr or hdf5, detected)"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{verify,inspect,pack}")
    p = sub.add_parser("verify", help="decode every array of every video, check it against the schema; "
                                      "exit 1 on any problem",
                       description="Check every video of a shard set: schema version, commit marker,\n"
                                   "arrays present, shapes, stored dtypes, finite values, and a full\n"
                                   "decode of every chunk (checksums: a missing, truncated or damaged\n"
                                   "chunk is found). One line per problem as `video / array / cause`\n"
                                   "('-': the video as a whole), then a summary; exit 1 on any problem.")
    p.add_argument("path", help=PATH_HELP)
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="processes checking videos in parallel (default 1); same output as serial")
    p.add_argument("--source-root", default=None, metavar="DIR",
                   help="a set extracted with --frames none: the folder its source videos moved to "
                        "(default: where extraction found them); a missing source is a problem")
    p.add_argument("--repair", action="store_true",
                   help="delete the damaged videos (only their own files) and re-extract them with the "
                        "config stored in the set (preprocess/extract.py); exit 0 once every one verifies")
    add_debug_flag(p)
    p = sub.add_parser("inspect", help="summarize the corpus, or one video",
                       description="Without ID: videos, failures by stage, the config, bytes on disk per array.\n"
                                   "With ID: that video's attrs, and each array's shape, dtypes, size and\n"
                                   "value range.")
    p.add_argument("path", help=PATH_HELP)
    p.add_argument("video_id", nargs="?", metavar="ID", help="one video's id (default: the whole corpus)")
    add_debug_flag(p)

    p = sub.add_parser("pack", help="copy a finished set into a few large files (thousands of videos each)",
                       description="Copy the committed videos of SRC (zarr, hdf5 or packed) into DST as a packed\n"
                                   "set: pack files of N videos each plus one root document (docs/shards.md,\n"
                                   "'Packed sets'). Zarr chunks are copied byte for byte (their checksums\n"
                                   "too). Interrupted: run it again; finished pack files are kept.")
    p.add_argument("src", help=PATH_HELP)
    p.add_argument("dst", help="the packed set to write: a directory or fsspec URL")
    p.add_argument("--videos-per-file", type=_positive_int, default=DEFAULT_VIDEOS_PER_FILE, metavar="N",
                   help="videos per pack file")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="pack files written at once, in N processes (worth it on object stores)")
    add_debug_flag(p)
    args = parser.parse_args(argv)
    if args.command == "pack":
        return pack_set(args.src, args.dst, args.videos_per_file, args.workers)
    if args.command == "verify":
        return verify(args.path, args.workers, args.source_root, args.repair)
    return inspect(args.path, args.video_id)


if __name__ == "__main__":
    run_main(main, PROG)
