"""Any folder of videos: every video file under the root, recursively, unlabelled.

`label_name` is the folder a video sits in (when that is not the root itself), for
reading only: folder names are not turned into class ids, since a folder tree need not
be a class tree. With `--split NAME` the videos under `<root>/NAME/` are listed, tagged
NAME; ids are still made unique over the whole tree, so they match a listing without it.
"""
from __future__ import annotations

from pathlib import Path

from .base import VIDEO_EXTENSIONS, Adapter, DatasetRootError, Listing, VideoItem, safe_id, walk_videos


def scan(root: Path, split: str | None, list_file: Path | None = None) -> Listing:
    if split is not None and not (root / split).is_dir():
        raise DatasetRootError(f"folder: no split folder {root / split} (with --split {split}, videos are "
                               f"listed from <root>/{split}/)")
    unreadable: list[str] = []
    items = [VideoItem(video_id=safe_id(path.stem), path=str(path), label=None,
                       label_name=path.parent.name if path.parent != root else None,
                       split=_top_folder(path, root) if split is not None else None)
             for path in walk_videos(root, unreadable)]
    return Listing(tuple(items), unreadable=tuple(unreadable))


def _top_folder(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


ADAPTER = Adapter(name="folder", scan=scan,
                  layout=f"any tree of video files ({' '.join(sorted(e[1:] for e in VIDEO_EXTENSIONS))})")
