"""Something-Something v2: `<root>/<id>.webm`, or in `<root>/20bn-something-something-v2/` (the
official parts concatenated and unpacked) or `<root>/videos/` (OpenMMLab).

Annotations (in `<root>/`, `<root>/labels/` or `<root>/annotations/`):
`something-something-v2-{train,validation,test}.json`, lists of
`{"id", "label", "template", "placeholders"}` (test: `{"id"}` only), and
`something-something-v2-labels.json`, template -> class id string. Qualcomm's current
labels download names the same files `labels.json`, `train.json`, `validation.json` and
`test.json`; either name is read, the long one first. `test-answers.csv` is not read: the
test split stays unlabelled, as in the papers. The json "template"
writes its placeholders as `[something]` while labels.json keys have no brackets
("Putting something on a surface"); like the official loaders we strip the brackets.
Videos on disk that no json names get label None and split None.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import Adapter, DatasetRootError, Listing, VideoItem, first_existing, is_video, safe_id

SPLITS = ("train", "val", "test")
ALIASES = {"validation": "val", "validate": "val"}
JSON_SPLITS = {"train": "train", "val": "validation", "test": "test"}
VIDEO_DIRS = (".", "20bn-something-something-v2", "videos")
ANNOTATION_DIRS = (".", "labels", "annotations")


def class_name(template: str) -> str:
    """`"Putting [something] on a surface"` -> `"Putting something on a surface"`."""
    return template.replace("[", "").replace("]", "")


def _annotation(root: Path, name: str) -> Path | None:
    return first_existing(root / d / f"{prefix}{name}.json" for prefix in ("something-something-v2-", "")
                          for d in ANNOTATION_DIRS)


def scan(root: Path, split: str | None = None, list_file: Path | None = None) -> Listing:
    labels_json = _annotation(root, "labels")
    if labels_json is None:
        raise DatasetRootError(f"ssv2: something-something-v2-labels.json (or labels.json) not found in "
                               f"{', '.join(str(root / d) for d in ANNOTATION_DIRS)} (docs/datasets.md)")
    classes = {name: int(i) for name, i in json.loads(labels_json.read_text(encoding="utf-8")).items()}
    annotated: dict[str, tuple[str, str | None]] = {}  # video id -> (split, class name)
    for s, json_name in JSON_SPLITS.items():
        path = _annotation(root, json_name)
        for entry in json.loads(path.read_text(encoding="utf-8")) if path else []:
            template = entry.get("template")
            annotated.setdefault(str(entry["id"]), (s, class_name(template) if template else None))

    on_disk = sorted(p for d in VIDEO_DIRS if (root / d).is_dir() for p in (root / d).iterdir() if is_video(p.name))
    items = []
    for path in on_disk:
        s, name = annotated.get(path.stem, (None, None))
        items.append(VideoItem(safe_id(path.stem), str(path), _label(classes, name), name, s))
    found = {p.stem for p in on_disk}
    missing = [VideoItem(safe_id(vid), str(root / f"{vid}.webm"), _label(classes, name), name, s)
               for vid, (s, name) in annotated.items() if vid not in found]
    return Listing(tuple(items), tuple(missing))


def _label(classes: dict[str, int], name: str | None) -> int | None:
    if name is None:
        return None
    if name not in classes:
        raise DatasetRootError(f"ssv2: class {name!r} is not in something-something-v2-labels.json")
    return classes[name]


ADAPTER = Adapter(name="ssv2", scan=scan, splits=SPLITS, aliases=ALIASES,
                  layout="<root>/<id>.webm (or <root>/20bn-something-something-v2/, <root>/videos/) with "
                         "something-something-v2-{labels,train,validation,test}.json or labels/{labels,train,"
                         "validation,test}.json")
