"""UCF101: `<root>/<Class>/v_<Class>_gXX_cYY.avi` (or flat `<root>/v_*.avi`, or under `<root>/UCF-101/`
as UCF101.rar unpacks, or `<root>/videos/` as OpenMMLab arranges it).

Annotations: `ucfTrainTestlist/` (UCF101TrainTestSplits-RecognitionTask.zip) in the root or
next to it, or its files in `<root>/annotations/` (OpenMMLab), with `classInd.txt`
("1 ApplyEyeMakeup", 1-based; ids here are 0-based), `trainlist0N.txt`
("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1") and `testlist0N.txt` for the three
folds. Splits are "train1", "test1", ... "test3"; "train" / "test" mean fold 1, and so
does "val" (UCF101 has no validation set; the test list is the usual one). Without
`--split`, every video is listed, tagged with its fold-1 split.

Labels come from classInd by class folder, or by the class in the file name when the
video is flat. Matching is case-insensitive because the files of class HandstandPushups
are named `v_HandStandPushups_*`. Videos are matched to list lines by file name.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, DatasetRootError, Listing, VideoItem, first_existing, read_lines, safe_id, walk_videos

FOLDS = (1, 2, 3)
SPLITS = tuple(f"{kind}{k}" for k in FOLDS for kind in ("train", "test"))
ALIASES = {"train": "train1", "test": "test1", "val": "test1"}
_FILE_CLASS = re.compile(r"^v_(?P<cls>.+)_g\d+_c\d+$")


LIST_DIRS = ("ucfTrainTestlist", "annotations")
VIDEO_DIRS = ("UCF-101", "videos")


def find_lists(root: Path) -> Path:
    folder = first_existing(base / d for base in (root, root.parent) for d in LIST_DIRS
                            if (base / d / "classInd.txt").is_file())
    if folder is None:
        raise DatasetRootError(f"ucf101: ucfTrainTestlist/classInd.txt (or annotations/classInd.txt) not found "
                               f"in {root} or {root.parent} (docs/datasets.md)")
    return folder


def read_classes(path: Path) -> list[str]:
    """classInd.txt -> class names in id order (file ids are 1-based, ours 0-based)."""
    pairs = sorted((int(index), name) for index, name in (line.split(maxsplit=1) for line in read_lines(path)))
    if [index for index, _ in pairs] != list(range(1, len(pairs) + 1)):
        raise DatasetRootError(f"ucf101: {path} does not number its classes 1..{len(pairs)}")
    return [name.strip() for _, name in pairs]


def fold_of(split: str | None) -> int:
    return int(split[-1]) if split else 1


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    lists = find_lists(root)
    videos_dir = next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root)
    names = read_classes(lists / "classInd.txt")
    by_folded_name = {name.casefold(): i for i, name in enumerate(names)}
    fold = fold_of(split)
    tagged: dict[str, tuple[str, str]] = {}  # file name -> (split, list line path)
    for kind in ("train", "test"):
        path = lists / f"{kind}list{fold:02d}.txt"
        if not path.is_file():
            raise DatasetRootError(f"ucf101: split list {path} not found")
        for line in read_lines(path):
            rel = line.split()[0]
            tagged.setdefault(Path(rel).name, (f"{kind}{fold}", rel))

    def class_id(folder: str | None, stem: str) -> int | None:
        match = _FILE_CLASS.match(stem)
        for candidate in (folder, match["cls"] if match else None):
            if candidate is not None and candidate.casefold() in by_folded_name:
                return by_folded_name[candidate.casefold()]
        return None

    on_disk = walk_videos(videos_dir)
    items = []
    for path in on_disk:
        folder = path.parent.name if path.parent != videos_dir else None
        label = class_id(folder, path.stem)
        s = tagged.get(path.name, (None, ""))[0]
        items.append(VideoItem(safe_id(path.stem), str(path), label, None if label is None else names[label], s))
    found = {p.name for p in on_disk}
    missing = []
    for name, (s, rel) in tagged.items():
        if name not in found:
            label = class_id(Path(rel).parent.name or None, Path(name).stem)
            missing.append(VideoItem(safe_id(Path(name).stem), str(videos_dir / rel), label,
                                     None if label is None else names[label], s))
    return Listing(tuple(items), tuple(missing))


ADAPTER = Adapter(name="ucf101", scan=scan, splits=SPLITS, aliases=ALIASES,
                  layout="<root>/[UCF-101/]<Class>/v_<Class>_gXX_cYY.avi with ucfTrainTestlist/ (classInd.txt, "
                         "trainlist0N.txt, testlist0N.txt) in <root> or next to it")
