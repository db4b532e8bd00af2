"""The manifest of a shard set: what it holds, where each video came from, what failed.

`manifest.json` sits at the root of the shard set (a directory or any fsspec URL) and is
rewritten at the end of every extraction run:

    {"created": "2026-...Z", "out": ..., "format": "zarr", "config": {...},
     "counts": {"videos": 9, "failures": 1, "frames": 360, "bytes": 12345678},
     "run": {"done": 3, "skipped": 6, "failed": 1, "missing": 0, "seconds": 4.2, ...},
     "videos": {"<id>": {"frames": 40, "bytes": 1234567, "source": "/data/...mp4",
                         "label": 0, "split": "train"}, ...},
     "failures": [{"id", "source", "stage", "reason"}, ...]}

Training never reads it (the index in the root attrs serves `ds.ids(split=...)` and
`ds.labels()`); it is the record a person or a pipeline checks after a run. Entries of
videos committed by earlier runs are carried over from the previous manifest, so a run
only measures what it wrote; videos committed by a run that died before writing its
manifest are measured from the shard set itself.
"""
from __future__ import annotations

import json
import time
import uuid

import fsspec

from shards import open_shards
from shards.metadata import damaged, object_field, parse_json

MANIFEST = "manifest.json"


def manifest_url(out: str) -> str:
    return f"{out.rstrip('/')}/{MANIFEST}"


def read_manifest(out: str) -> dict | None:
    fs, path = fsspec.core.url_to_fs(manifest_url(out))
    if not fs.exists(path):
        return None
    doc = parse_json(fs.cat_file(path), manifest_url(out), "the manifest")
    videos = object_field(doc, "videos", manifest_url(out), "the manifest")
    bad = next((vid for vid, e in videos.items()
                if not (isinstance(e, dict) and isinstance(e.get("frames"), int) and isinstance(e.get("bytes"), int))), None)
    if bad is not None:  # entries are carried into the next manifest: a wrong one would crash its counts
        raise damaged(manifest_url(out), "the manifest", TypeError(f"its entry of video {bad!r} lacks integer "
                                                                   f"frames and bytes"))
    return doc


def video_entries(out: str, done: set[str], new: dict[str, dict], previous: dict | None) -> dict[str, dict]:
    """{id: {frames, bytes, source, label, split}} of every committed video, sorted by id."""
    entries = {vid: e for vid, e in ((previous or {}).get("videos") or {}).items() if vid in done}
    entries.update({vid: e for vid, e in new.items() if vid in done})
    unknown = sorted(done - entries.keys())
    if unknown:
        with open_shards(out) as ds:
            for vid in unknown:
                attrs = ds.video(vid).attrs
                entries[vid] = {"frames": int(attrs["num_frames"]), "bytes": ds.video_bytes(vid),
                                "source": attrs.get("source"), "label": attrs.get("label"),
                                "split": attrs.get("split")}
    return dict(sorted(entries.items()))


def build_manifest(out: str, fmt: str, config: dict, videos: dict[str, dict], failures: list[dict],
                   run: dict) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "out": out, "format": fmt, "config": config,
        "counts": {"videos": len(videos), "failures": len(failures),
                   "frames": sum(e["frames"] for e in videos.values()),
                   "bytes": sum(e["bytes"] for e in videos.values())},
        "run": run,
        "videos": videos,
        "failures": failures,
    }


def write_manifest(out: str, manifest: dict) -> str:
    """Write through a temporary name and a rename, so a reader never sees half a manifest."""
    url = manifest_url(out)
    fs, path = fsspec.core.url_to_fs(url)
    tmp = f"{path.rsplit('/', 1)[0]}/.{MANIFEST}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(tmp, "w") as f:
            json.dump(manifest, f, indent=1, default=str)
        fs.mv(tmp, path)
    except OSError:  # a full disk: leave the previous manifest, not half a new one beside it
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    return url
