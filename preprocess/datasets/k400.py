"""Kinetics-400: `<root>/{train,val,test}/[<class>/]<youtube_id>_<start:06d>_<end:06d>.mp4`.

Annotations are the official CSVs (`label,youtube_id,time_start,time_end,split[,is_cc]`):
`{train,val,test}.csv` (CVDF), `{train,validate,test}.csv` (DeepMind's kinetics400.tar.gz)
or `kinetics_{train,val,test}.csv` (OpenMMLab), in `<root>/annotations/`, `<root>/`, or a
`kinetics400/` folder in either (the tarball unpacked there). Class
ids follow the sorted class names of the train CSV (400 of them), so they do not depend
on which videos were downloaded. A video is matched to its row by file stem (or by bare
youtube id, for downloads named `<youtube_id>.mp4`), wherever it sits under the root; its
split is the CSV it was found in. Rows whose video is not on disk are reported in
`Listing.missing`; videos on disk that no CSV names get label None and the split of
their top folder.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from .base import Adapter, DatasetRootError, Listing, VideoItem, first_existing, safe_id, walk_videos

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ALIASES = {"validate": "val", "validation": "val"}
CSV_NAMES = {"train": ("train", "kinetics_train"), "val": ("val", "validate", "kinetics_val"),
             "test": ("test", "kinetics_test")}
CSV_DIRS = ("annotations", ".", "annotations/kinetics400", "kinetics400")
# split folders of the common releases: CVDF's train/val, OpenMMLab's videos_train/videos_val
FOLDER_SPLITS = {**ALIASES, "videos_train": "train", "videos_val": "val", "videos_test": "test"}


def find_csvs(root: Path) -> dict[str, Path]:
    """split -> CSV path, for the splits whose CSV exists."""
    found = {}
    for split, names in CSV_NAMES.items():
        path = first_existing(root / folder / f"{name}.csv" for folder in CSV_DIRS for name in names)
        if path is not None:
            found[split] = path
    return found


def clip_stem(youtube_id: str, start: float, end: float) -> str:
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"youtube_id", "time_start", "time_end"} <= rows[0].keys():
        raise DatasetRootError(f"k400: {path} lacks the youtube_id,time_start,time_end columns of the "
                               f"official Kinetics CSVs (found {', '.join(rows[0])})")
    return rows


def class_names(rows: dict[str, list[dict[str, str]]]) -> list[str]:
    """Sorted class names of the train CSV (of every CSV when there is none)."""
    sources = ["train"] if "train" in rows else list(rows)
    if "train" not in rows:
        log.warning("k400: no train CSV; class ids follow the sorted class names of the %s CSVs", "/".join(sources))
    return sorted({row["label"] for s in sources for row in rows[s] if row.get("label")})


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    csvs = find_csvs(root)
    if not csvs:
        raise DatasetRootError(f"k400: no annotation CSVs in {root}/annotations/ or {root}/ (expected "
                               f"train.csv, val.csv or validate.csv, test.csv; docs/datasets.md); for "
                               f"unlabelled videos use --dataset folder")
    rows = {s: read_csv(p) for s, p in csvs.items()}
    classes = {name: i for i, name in enumerate(class_names(rows))}
    by_stem: dict[str, tuple[str, dict[str, str]]] = {}
    for s, split_rows in rows.items():
        for row in split_rows:
            stem = clip_stem(row["youtube_id"], float(row["time_start"]), float(row["time_end"]))
            by_stem.setdefault(stem, (s, row))
    stems_of_id: dict[str, list[str]] = {}
    for stem, (_, row) in by_stem.items():
        stems_of_id.setdefault(row["youtube_id"], []).append(stem)

    items, found = [], set()
    for path in walk_videos(root):
        stem = path.stem if path.stem in by_stem else _only(stems_of_id.get(path.stem, []))
        if stem is None:
            items.append(VideoItem(safe_id(path.stem), str(path), None, None, _folder_split(path, root)))
            continue
        found.add(stem)
        s, row = by_stem[stem]
        name = row.get("label") or None
        items.append(VideoItem(safe_id(path.stem), str(path), classes.get(name or ""), name, s))
    missing = [VideoItem(safe_id(stem), str(root / s / f"{stem}.mp4"), classes.get(row.get("label") or ""),
                         row.get("label") or None, s)
               for stem, (s, row) in by_stem.items() if stem not in found]
    return Listing(tuple(items), tuple(missing))


def _only(stems: list[str]) -> str | None:
    """The clip of a bare youtube id, when the id names exactly one clip."""
    return stems[0] if len(stems) == 1 else None


def _folder_split(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    top = FOLDER_SPLITS.get(parts[0], parts[0]) if len(parts) > 1 else None
    return top if top in SPLITS else None


ADAPTER = Adapter(name="k400", scan=scan, splits=SPLITS, aliases=ALIASES,
                  layout="<root>/{train,val,test}/[<class>/]<youtube_id>_<start>_<end>.mp4 with the official "
                         "CSVs (train.csv, val.csv or validate.csv) in <root>/annotations/ or <root>/")
