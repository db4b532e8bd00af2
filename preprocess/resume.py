"""The checks on a shard set that a run is about to extend, before any video is written.

A set at --out is resumed only when it was extracted with the same settings, from the same
dataset and root (or --append adds another one); --overwrite replaces it, deleting only its
own files. --out must be a folder (or URL) apart from the corpus. Each refusal is one line
(CliError / UsageError) saying what differs and what to do.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from preprocess.config import ExtractConfig
from preprocess.datasets import KnownIds
from preprocess.manifest import read_manifest
from shards import open_shards
from shards.cli import CliError, UsageError
from shards.metadata import DamagedMetadata
from shards.reader import ShardReadError
from shards.schema import SchemaVersionError
from shards.writer import open_writer, remove_set, restore_root

NOT_ON_DISK = "not on disk"


def settings_diff(existing: dict | None, cfg: ExtractConfig) -> str:
    """'' when a set written with `existing` settings can be resumed by cfg, else what differs."""
    if not existing:
        return ""
    new = cfg.compute_key()
    # keys a set written by an older motion-mae lacks had that version's (the default) value;
    # a set without an extractor revision was written by revision 1
    defaults = {**ExtractConfig().compute_key(), "extractor": 1}
    old = {k: existing.get(k, defaults[k]) for k in new}
    return ", ".join(f"{k}: {old[k]!r} there vs {new[k]!r} now" for k in new if old[k] != new[k])


def source_diff(existing: dict | None, cfg: ExtractConfig) -> str:
    """'' when the set at --out holds cfg's dataset and root, else what differs.

    Roots are compared resolved (`os.path.realpath`: `../root`, a symlink to it and the folder
    itself are one root). Sets written before roots were stored resolved hold the root as
    given: None (the default root; only the dataset is compared) or a path, read from the
    current folder."""
    if not existing:
        return ""
    new = cfg.source_key()
    old = {k: existing.get(k) for k in new}
    if old["root"] is None:
        old["root"] = new["root"]
    elif "://" not in old["root"]:
        old["root"] = os.path.realpath(os.path.expanduser(old["root"]))
    if new["root"] is not None and "://" not in new["root"]:
        new["root"] = os.path.realpath(os.path.expanduser(new["root"]))
    return ", ".join(f"{k}: {old[k]!r} there vs {new[k]!r} now" for k in new if old[k] != new[k])


def open_checked(cfg: ExtractConfig, out: str, log):
    """The writer for `out`, refusing (or with --overwrite, replacing) a set extracted otherwise
    or from another dataset or root (which --append accepts); a damaged root document or failure
    record is repaired from what the set still holds."""
    try:
        writer = open_writer(out, format=cfg.format, config=cfg.to_dict())
    except DamagedMetadata as err:
        writer = reopen_damaged_root(cfg, out, err, log)
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
    settings = settings_diff(writer.config(), cfg)
    source = source_diff(writer.config(), cfg)
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


def reopen_damaged_root(cfg: ExtractConfig, out: str, err: Exception, log):
    """The writer of a set whose root document is damaged: rebuilt from the config its
    manifest records (the videos are kept), else with --overwrite a fresh set."""
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


def check_runnable(cfg: ExtractConfig, out: str) -> None:
    if cfg.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1, got {cfg.shard_size}")
    if cfg.overwrite and cfg.append:
        raise UsageError("--overwrite (replace the set) and --append (add to it) exclude each other")
    if out.startswith("memory://") and (cfg.workers or cfg.scheduler):
        raise UsageError(f"{out} lives in the memory of one process, which Dask workers do not "
                         f"share; use --workers 0, or a directory or object-store URL")
    check_out_path(out)


def check_out_path(out: str) -> None:
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


def check_out_apart(out: str, listing, dataset: str) -> None:
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


def record_missing(writer, listing, done: set[str], cfg: ExtractConfig, log) -> int:
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


def known_ids(out: str) -> KnownIds | None:
    """The ids the set at `out` gave to the videos of its root, by path relative to that root:
    from the manifest, else each video's attrs, and the failure records. The listing keeps
    them (`unique_ids`), so a video in the set keeps its id whatever is added to the corpus.
    None: no set at `out` yet, or one whose root document cannot be read (`open_checked`
    reports or repairs that)."""
    try:
        ds = open_shards(out)
    except (FileNotFoundError, ValueError, OSError):  # no set yet, or damage open_checked reports
        return None
    with ds:
        config = ds.attrs.get("config")
        root = config.get("root") if isinstance(config, dict) else None
        if not isinstance(root, str) or "://" in root:
            return None
        try:
            manifest = read_manifest(out)
        except DamagedMetadata:
            manifest = None
        listed = manifest.get("videos") if isinstance(manifest, dict) else None
        sources = {vid: e.get("source") for vid, e in listed.items() if isinstance(e, dict)} \
            if isinstance(listed, dict) else {}
        ids: dict[str, str] = {}
        for vid in ds.all_ids():
            rel = _under(sources.get(vid), root)
            if rel is None:
                try:
                    attrs = ds.video(vid, require_complete=False).attrs
                except (KeyError, ShardReadError, SchemaVersionError):  # damaged: verify reports it
                    continue
                rel = attrs.get("source_relpath") or _under(attrs.get("source"), root)
            if rel:
                ids[Path(rel).as_posix()] = vid
        try:
            failures = ds.failures()
        except DamagedMetadata:  # dropped by open_checked; their videos are extracted again
            failures = []
        for record in failures:
            rel = _under(record.get("source"), root)
            if rel is not None and rel not in ids:
                ids[rel] = record["id"]
    return KnownIds(root, ids)


def _under(path, root: str) -> str | None:
    """`path` relative to `root` (posix), or None when it is not a path under it."""
    if not isinstance(path, str):
        return None
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return None


def set_traj_len(cfg: ExtractConfig, stored: dict, log) -> ExtractConfig:
    """cfg with the set's own trajectory length: every video of a set carries the one its first
    run stored (training's default, which picks any length with its own --traj-len), so a
    resumed run with another --traj-len extends the set as it is, saying so."""
    old = stored.get("traj_len") if isinstance(stored, dict) else None
    if not isinstance(old, int) or old == cfg.traj_len:
        return cfg
    log(f"--traj-len {cfg.traj_len} ignored: the set's default trajectory length stays {old} "
        f"(training tracks any length: its --traj-len)")
    return replace(cfg, traj_len=old)
