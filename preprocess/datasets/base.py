"""What every corpus adapter returns, and the helpers they share.

An adapter reads one corpus layout (files on disk plus its annotation files) and returns
a `Listing`: the videos found, each a `VideoItem`, and the annotated videos that are not
on disk. Adapters list the *whole* corpus with every item tagged by its split; the
registry (`preprocess/datasets/__init__.py`) makes the ids unique, filters the split,
sorts and applies the limit, so an id never depends on `--split` or `--limit`.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

from shards.schema import RESERVED_IDS

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg",
                              ".flv", ".wmv", ".ts", ".3gp"})


@dataclass(frozen=True)
class VideoItem:
    """One video of a corpus. `label` is a 0-based class id, None when unlabelled."""

    video_id: str            # unique in the corpus, safe as a file and zarr group name
    path: str                # absolute path (for a missing video: where it was expected)
    label: int | None
    label_name: str | None
    split: str | None        # canonical split name ("train", "val", "train1", ...) or None


@dataclass(frozen=True)
class Listing:
    """Videos found on disk, and annotated videos that are not (reported, never extracted)."""

    items: tuple[VideoItem, ...]
    missing: tuple[VideoItem, ...] = ()
    # folders the scan could not read (permissions, I/O errors): "path: reason" lines that
    # the extractor prints and keeps in the manifest, since their videos are not listed
    unreadable: tuple[str, ...] = ()
    root: Path | None = None  # the absolute root the registry scanned (adapters leave it None)


class Scan(Protocol):
    """The adapter signature: list the whole corpus under `root`.

    `split` is already canonical (or None); adapters whose split *scheme* depends on it
    (UCF101 / HMDB51 folds) use it to pick the fold, the others may ignore it.
    """

    def __call__(self, root: Path, split: str | None, list_file: Path | None) -> Listing: ...


@dataclass(frozen=True)
class Adapter:
    name: str
    scan: Scan
    layout: str                            # one line, shown when the root looks wrong
    splits: tuple[str, ...] = ()           # canonical split names; () accepts any name
    aliases: Mapping[str, str] = field(default_factory=dict)  # e.g. "validation" -> "val"
    dirname: str = ""                      # folder under the data dir; "" means `name`
    prepare: Callable[[Path], None] | None = None  # creates missing files (the demo corpus)

    def canonical_split(self, split: str | None) -> str | None:
        if split is None:
            return None
        split = self.aliases.get(split, split)
        if self.splits and split not in self.splits:
            choices = sorted(set(self.splits) | set(self.aliases))
            raise DatasetUsageError(f"{self.name}: unknown split {split!r}; choose one of {', '.join(choices)}")
        return split


class DatasetRootError(FileNotFoundError):
    """The dataset root (or an annotation file it should hold) is not where we looked."""


class DatasetUsageError(ValueError):
    """The request itself is wrong (an unknown split, a list dataset without a list file):
    the command line, not the files, has to change."""


# ---------------------------------------------------------------------------------- files

def walk_videos(folder: Path, unreadable: list[str] | None = None) -> list[Path]:
    """Every video file under `folder`, recursively, sorted; follows symlinked folders once,
    and lists a file that a symlink also reaches once (under its own name, not the link's).

    Hidden files and folders are skipped: `._clip.mp4` AppleDouble files look like videos
    but are not, and the demo writes its partial files into a hidden folder. Folders that
    cannot be read are appended to `unreadable` as "path: reason" (os.walk would skip
    them silently).
    """
    found: list[tuple[bool, Path, str]] = []  # (is a symlink, path, the file it is)
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        if unreadable is not None:
            unreadable.append(f"{err.filename}: {err.strerror or type(err).__name__}")

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=onerror):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        real_dir = os.path.realpath(dirpath)  # once per folder; a link's target once per link
        for f in filenames:
            if is_video(f):
                path = Path(dirpath) / f
                link = os.path.islink(path)
                found.append((link, path, os.path.realpath(path) if link else os.path.join(real_dir, f)))
    videos: dict[str, Path] = {}
    for _, path, real in sorted(found):  # files before links, then by path: the first name wins
        videos.setdefault(real, path)
    return sorted(videos.values())


def is_video(name: str | Path) -> bool:
    name = os.path.basename(name)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def read_lines(path: Path, comment: str | None = None) -> list[str]:
    """Non-blank lines of a text annotation file, stripped, lines starting with `comment` dropped.

    Official split files have no comments, and some HMDB51 file names start with `#`.
    """
    lines = (line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return [line for line in lines if line and not (comment and line.startswith(comment))]


def first_existing(candidates: Iterable[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


# ------------------------------------------------------------------------------------ ids

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ID_LEN = 120


def safe_id(stem: str) -> str:
    """A file stem made safe as a file name and a zarr group name.

    Runs of characters outside [A-Za-z0-9._-] become one `_`; zarr reserves names that
    start with `__` and hides names that start with `.`, and a few names are the store's own
    files (`shards.schema.RESERVED_IDS`, e.g. `zarr.json`), so those get a `v` prefix.
    """
    vid = _UNSAFE.sub("_", stem)
    if vid.startswith(("__", ".")) or not vid or vid.casefold() in RESERVED_IDS:
        vid = "v" + vid
    if len(vid) > MAX_ID_LEN:
        vid = f"{vid[:MAX_ID_LEN - 10]}__{_short_hash(stem)}"
    return vid


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class KnownIds:
    """The ids a shard set already gave to videos under `root`: {path relative to it: id}
    (`preprocess.resume.known_ids`). With them, `unique_ids` keeps every video's id stable
    however the corpus grows."""

    root: str
    ids: Mapping[str, str]


def unique_ids(items: Iterable[VideoItem], root: Path, known: KnownIds | None = None) -> list[VideoItem]:
    """Ids unique across the corpus (compared case-insensitively: ids become file names on
    case-insensitive file systems too) that adding files never changes:

    1. a video the set already holds (`known`, matched by its path relative to the root, the
       same root however it is spelled) keeps the id it has there;
    2. any other video keeps its safe stem when no other video, listed or known, has it;
    3. else it gets `__<hash>`, a short hash of its own relative path: every new member of a
       colliding group, so its id depends neither on which member sorts first nor on what
       else is added later.
    """
    items = sorted(items, key=lambda it: it.path)
    rel = [_relative(it.path, root) for it in items]
    pinned = dict(known.ids) if known is not None and _same_root(known.root, root) else {}
    stems: dict[str, int] = {}
    for it in items:
        stems[it.video_id.casefold()] = stems.get(it.video_id.casefold(), 0) + 1
    taken = {vid.casefold() for vid in pinned.values()}
    ids = []
    for it, r in zip(items, rel):
        if r in pinned:
            ids.append(pinned[r])
        elif stems[it.video_id.casefold()] == 1 and it.video_id.casefold() not in taken:
            ids.append(it.video_id)
        else:
            ids.append(f"{it.video_id}__{_short_hash(r)}")
    seen = set(taken)
    for i, vid in enumerate(ids):  # a hashed id equal to another stem: vanishingly rare
        if rel[i] in pinned:
            continue
        n, candidate = 2, vid
        while candidate.casefold() in seen:
            candidate, n = f"{vid}__{n}", n + 1
        ids[i] = candidate
        seen.add(candidate.casefold())
    return [it if it.video_id == vid else replace(it, video_id=vid) for it, vid in zip(items, ids)]


def _same_root(a: str | Path, b: str | Path) -> bool:
    """The same folder, however it is spelled (relative, through a symlink)."""
    return os.path.realpath(os.path.expanduser(os.fspath(a))) == os.path.realpath(os.path.expanduser(os.fspath(b)))


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()
