"""HMDB51: `<root>/<class>/*.avi` (hmdb51_org.rar's 51 class archives unpacked; also under
`<root>/videos/`, as OpenMMLab arranges it) with the official 70/30 split files.

Split files `<class>_test_split{1,2,3}.txt` (test_train_splits.rar) sit in `<root>/splits/`,
`<root>/testTrainMulti_7030_splits/`, `<root>/annotations/` (OpenMMLab) or
`testTrainMulti_7030_splits/` next to the root; each line is
"name.avi 1|2|0": 1 train, 2 test, 0 unused in that fold (tagged split None). Splits are
"train1", "test1", ... "test3"; "train" / "test" / "val" mean fold 1, and without
`--split` every video is listed with its fold-1 tag. Class ids follow the sorted class
names (of the split files when present, else of the class folders).
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, DatasetRootError, Listing, VideoItem, first_existing, read_lines, safe_id, walk_videos

FOLDS = (1, 2, 3)
SPLITS = tuple(f"{kind}{k}" for k in FOLDS for kind in ("train", "test"))
ALIASES = {"train": "train1", "test": "test1", "val": "test1"}
SPLIT_DIRS = ("splits", "testTrainMulti_7030_splits", "annotations")
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<fold>\d)\.txt$")
_KIND = {"1": "train", "2": "test"}


def find_split_files(root: Path) -> dict[tuple[str, int], Path]:
    """(class, fold) -> split file, from the first split folder that exists."""
    folders = [root / d for d in SPLIT_DIRS] + [root.parent / SPLIT_DIRS[1]]
    folder = first_existing(f for f in folders if f.is_dir() and any(f.glob("*_test_split*.txt")))
    files = {}
    for path in sorted(folder.iterdir()) if folder else []:
        match = _SPLIT_FILE.match(path.name)
        if match:
            files[(match["cls"], int(match["fold"]))] = path
    return files


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    fold = int(split[-1]) if split else 1
    split_files = find_split_files(root)
    if split is not None and not split_files:
        raise DatasetRootError(f"hmdb51: --split {split} needs the split files (<class>_test_split{fold}.txt) "
                               f"in {root}/splits/, {root}/{SPLIT_DIRS[1]}/ or {root}/annotations/ "
                               f"(docs/datasets.md)")
    tagged: dict[str, tuple[str | None, str]] = {}  # file name -> (split, class)
    for (cls, k), path in split_files.items():
        if k == fold:
            for line in read_lines(path):
                name, code = line.rsplit(maxsplit=1)  # names may hold spaces, codes never
                tagged[name] = (f"{_KIND[code]}{fold}" if code in _KIND else None, cls)

    on_disk = walk_videos(root)
    class_names = sorted({cls for cls, _ in split_files} or {p.parent.name for p in on_disk if p.parent != root})
    classes = {name: i for i, name in enumerate(class_names)}
    items = [VideoItem(safe_id(p.stem), str(p), classes.get(p.parent.name),
                       p.parent.name if p.parent.name in classes else None, tagged.get(p.name, (None, ""))[0])
             for p in on_disk]
    found = {p.name for p in on_disk}
    missing = [VideoItem(safe_id(Path(name).stem), str(root / cls / name), classes[cls], cls, s)
               for name, (s, cls) in tagged.items() if name not in found]
    return Listing(tuple(items), tuple(missing))


ADAPTER = Adapter(name="hmdb51", scan=scan, splits=SPLITS, aliases=ALIASES,
                  layout="<root>/<class>/*.avi with <class>_test_splitN.txt in <root>/splits/ or "
                         "<root>/testTrainMulti_7030_splits/")
