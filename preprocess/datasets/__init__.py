"""Corpus adapters: one file per layout, one dict to pick them by name.

    list_videos(name, root=None, split=None, list_file=None, limit=None) -> list[VideoItem]

The root is `root` when given, else `$MOTION_MAE_<NAME>_ROOT`, else
`$MOTION_MAE_DATA/<name>` (`<repo>/data/<name>` without the variable; the demo corpus uses
the folder `demo_videos`). A `list` dataset given only `--list FILE` resolves relative
paths from the list file's folder. Items come sorted by path with ids unique across the
whole corpus, so `--split` and `--limit N` (the first N) never change an item's id.
`scan` returns the same items plus the annotated videos that are not on disk.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from . import demo, folder, hmdb51, k400, listfile, ssv2, synthetic_motion, ucf101
from shards.paths import DATA_ENV, data_dir
from .base import Adapter, DatasetRootError, DatasetUsageError, KnownIds, Listing, VideoItem, unique_ids

__all__ = ["DATASETS", "Adapter", "DatasetRootError", "DatasetUsageError", "KnownIds", "Listing", "VideoItem", "default_root", "get_adapter",
           "list_videos", "scan"]

log = logging.getLogger(__name__)

LAYOUTS_DOC = "docs/datasets.md"

DATASETS: dict[str, Adapter] = {"demo": demo.ADAPTER, "folder": folder.ADAPTER, "list": listfile.ADAPTER,
                                "k400": k400.ADAPTER, "ssv2": ssv2.ADAPTER, "ucf101": ucf101.ADAPTER,
                                "hmdb51": hmdb51.ADAPTER, "synthetic-motion": synthetic_motion.ADAPTER}


def get_adapter(name: str) -> Adapter:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def root_env(name: str) -> str:
    """MOTION_MAE_<NAME>_ROOT, spelled so a shell can export it (synthetic-motion -> SYNTHETIC_MOTION)."""
    return f"MOTION_MAE_{name.upper().replace('-', '_')}_ROOT"


def default_root(name: str) -> Path:
    """Where `name` lives when no root is passed: the per-dataset variable, else the data dir."""
    adapter = get_adapter(name)
    if os.environ.get(root_env(name)):
        return Path(os.environ[root_env(name)]).expanduser()
    return data_dir() / (adapter.dirname or name)


def _root_and_source(adapter: Adapter, root: str | Path | None, list_file: Path | None) -> tuple[Path, str]:
    """The root to use, and a phrase saying where it came from (for the error message)."""
    dirname = adapter.dirname or adapter.name
    if root is not None:
        return Path(root).expanduser(), "--root"
    if os.environ.get(root_env(adapter.name)):
        return default_root(adapter.name), f"${root_env(adapter.name)}"
    if adapter.name == "list" and list_file is not None:
        if not list_file.is_file():
            raise DatasetRootError(f"list: list file {list_file} not found")
        return list_file.parent, "the list file's folder"
    if os.environ.get(DATA_ENV):
        return default_root(adapter.name), f"${DATA_ENV}/{dirname}"
    return default_root(adapter.name), f"the default <repo>/data/{dirname}"


def scan(name: str, root: str | Path | None = None, split: str | None = None,
         list_file: str | Path | None = None, limit: int | None = None, known: KnownIds | None = None) -> Listing:
    """The videos of `name` (sorted, unique ids, split-filtered, first `limit`) and those missing.

    `known`: the ids a shard set already gave (`unique_ids`), which its videos keep."""
    adapter = get_adapter(name)
    split = adapter.canonical_split(split)
    if list_file is not None and name != "list":
        raise DatasetUsageError(f"{name}: --list is only read by --dataset list")
    if limit is not None and limit < 0:
        raise DatasetUsageError(f"--limit must be >= 0, got {limit}")
    list_path = Path(list_file).expanduser() if list_file is not None else None
    path, source = _root_and_source(adapter, root, list_path)
    path = Path(os.path.realpath(path))  # one spelling of the root, however it was given (../x, a symlink)
    if adapter.prepare is not None:
        adapter.prepare(path)
    if not path.is_dir():
        dirname = adapter.dirname or name
        raise DatasetRootError(
            f"{name}: dataset root {path} (from {source}) {'is not a folder' if path.exists() else 'does not exist'}; "
            f"expected {adapter.layout}. "
            f"Point elsewhere with --root DIR or {root_env(name)}=DIR, or set {DATA_ENV}=DIR to use DIR/{dirname}. "
            f"Layouts: {LAYOUTS_DOC}")
    listing = adapter.scan(path, split, list_path)
    items = unique_ids(listing.items, path, known)
    missing = sorted(listing.missing, key=lambda it: it.path)
    if split is not None:
        items = [it for it in items if it.split == split]
        missing = [it for it in missing if it.split == split]
    if not items:
        what = f"videos of split {split!r}" if split else "videos"
        unreadable = f"; could not read {', '.join(listing.unreadable[:3])}" if listing.unreadable else ""
        raise DatasetRootError(f"{name}: found no {what} under {path} (from {source}); expected {adapter.layout}"
                               + (f"; {len(missing)} annotated videos are not on disk" if missing else "")
                               + unreadable + f". Layouts: {LAYOUTS_DOC}")
    return Listing(tuple(items[:limit] if limit is not None else items), tuple(missing), listing.unreadable,
                   root=path)


def list_videos(name: str, root: str | Path | None = None, split: str | None = None,
                list_file: str | Path | None = None, limit: int | None = None) -> list[VideoItem]:
    """The videos of dataset `name` on disk; annotated videos not on disk are counted in a warning."""
    listing = scan(name, root=root, split=split, list_file=list_file, limit=limit)
    if listing.missing:
        log.warning("%s: skipped %d annotated videos that are not on disk (first: %s); "
                    "preprocess.datasets.scan() lists them", name, len(listing.missing), listing.missing[0].path)
    return list(listing.items)
