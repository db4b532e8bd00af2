"""A VideoMAE-style list file: one `path label` per line.

Fields are separated by whitespace or commas; a path may itself contain spaces (Kinetics
class folders do), so the label is the *last* integer field and the path is everything
before the trailing integer fields (`path num_frames label` lines work too). A line with
no integer field is an unlabelled path; a negative label means unlabelled. Blank lines and
`#` comments are ignored. Relative paths are relative to the root.

The list is `--list FILE`, or `<root>/<split>.csv` / `.txt` when only `--split` is
given. Items are tagged with `--split` (None without it).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .base import Adapter, DatasetRootError, DatasetUsageError, Listing, VideoItem, first_existing, read_lines, safe_id

log = logging.getLogger(__name__)

_LINE = re.compile(r"^(?P<path>.+?)(?P<ints>(?:[\s,]+-?\d+)*)[\s,]*$")


def parse_line(line: str) -> tuple[str, int | None]:
    """`"a b/c.mp4, 12"` -> ("a b/c.mp4", 12); `"x.mp4 300 7"` -> ("x.mp4", 7)."""
    match = _LINE.match(line.strip())
    if match is None:  # only reachable for an empty line, which read_lines drops
        raise ValueError(f"cannot parse list line {line!r}")
    ints = re.findall(r"-?\d+", match["ints"])
    label = int(ints[-1]) if ints else None
    return match["path"].strip(), label if label is None or label >= 0 else None


def find_list_file(root: Path, split: str | None, list_file: Path | None) -> Path:
    if list_file is not None:
        found = first_existing([list_file] if list_file.is_absolute() else [list_file, root / list_file])
        if found is None:
            raise DatasetRootError(f"list: list file {list_file} not found (relative paths are tried "
                                   f"from the working directory, then from the root {root})")
        return found
    if split is None:
        raise DatasetUsageError("list: give --list FILE (one 'path label' line per video), or --split NAME "
                                "to read <root>/NAME.csv or <root>/NAME.txt")
    candidates = [root / f"{split}{ext}" for ext in (".csv", ".txt")]
    found = first_existing(candidates)
    if found is None:
        raise DatasetRootError(f"list: no list file for split {split!r}: looked for "
                               f"{' and '.join(map(str, candidates))}; pass --list FILE")
    return found


def scan(root: Path, split: str | None, list_file: Path | None) -> Listing:
    source = find_list_file(root, split, list_file)
    items, missing, seen = [], [], set()
    for line in read_lines(source, comment="#"):
        rel, label = parse_line(line)
        path = Path(rel).expanduser()
        path = (path if path.is_absolute() else root / path).absolute()
        if path in seen:
            log.warning("list: %s is listed more than once in %s; keeping the first line", path, source)
            continue
        seen.add(path)
        item = VideoItem(video_id=safe_id(path.stem), path=str(path), label=label, label_name=None,
                         split=split)
        (items if path.is_file() else missing).append(item)
    return Listing(tuple(items), tuple(missing))


ADAPTER = Adapter(name="list", scan=scan,
                  layout="a list file of `path label` lines (--list FILE, or <root>/<split>.csv)")
