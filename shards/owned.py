"""Which files under a shard set's folder the set owns, at every depth.

`--overwrite` deletes a set by removing its top-level names (`videos/`, `failures/`, the root
document). A folder named `videos/` is also where several corpus layouts keep their source
videos (UCF101 and HMDB51 as OpenMMLab ships them, SSv2), so a name alone proves nothing: a
file is the set's only when its path has the shape the backend writes and the metadata at
that path says the set wrote it. Anything else is the user's, and nothing is deleted.

Shapes (docs/shards.md, Layout):
    zarr   videos/zarr.json, videos/<id>/zarr.json (video attrs with the commit flag),
           videos/<id>/<array>/zarr.json, videos/<id>/<array>/c/<int>/.../<int> (chunks);
           failures/zarr.json, failures/<id>/zarr.json (a record with a reason)
    hdf5   videos/<id>.h5 (file attrs "motion_mae"), videos/.<id>.<hex>.tmp (a write in
           progress); failures/<id>.json (a record with a reason)
"""
from __future__ import annotations

import json
import re

import h5py

from .schema import COMMIT_ATTR, ROOT_KEY

_INT = re.compile(r"^\d+$")
_ZARR_TEMP = re.compile(r"^[^/]*\.[0-9a-f]{32}\.partial$")  # zarr's write-then-rename temporaries
_HDF5_TMP = re.compile(r"^\.[^/]+\.[0-9a-f]+\.tmp$")
# how many foreign paths a refusal names; the count of the rest follows
SHOWN = 5


def _files(fs, base: str) -> list[str]:
    """Every file under `base`, relative to it ('' when `base` does not exist)."""
    if not fs.exists(base):
        return []
    prefix = base.rstrip("/") + "/"
    return sorted(p[len(prefix):] for p in fs.find(base, withdirs=False) if p.startswith(prefix))


def _json(fs, path: str) -> dict | None:
    try:
        doc = json.loads(fs.cat_file(path))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _zarr_attrs(fs, path: str) -> dict:
    doc = _json(fs, path) or {}
    attrs = doc.get("attributes")
    return attrs if isinstance(attrs, dict) else {}


def _foreign_zarr_videos(fs, base: str) -> list[str]:
    files = _files(fs, base)
    names = set(files)
    own_groups = {p.split("/")[0] for p in files
                  if p.count("/") == 1 and p.endswith("/zarr.json")
                  and COMMIT_ATTR in _zarr_attrs(fs, f"{base}/{p}")}
    foreign = []
    for rel in files:
        parts = rel.split("/")
        if parts == ["zarr.json"] or (_ZARR_TEMP.match(parts[-1]) and (len(parts) == 1 or parts[0] in own_groups)):
            continue
        if parts[0] not in own_groups:
            foreign.append(rel)
        elif len(parts) == 2 and parts[1] == "zarr.json":
            continue
        elif len(parts) == 3 and parts[2] == "zarr.json":
            continue
        elif (len(parts) >= 4 and parts[2] == "c" and all(_INT.match(p) for p in parts[3:])
              and f"{parts[0]}/{parts[1]}/zarr.json" in names):
            continue
        else:
            foreign.append(rel)
    return foreign


def _foreign_zarr_failures(fs, base: str) -> list[str]:
    foreign = []
    for rel in _files(fs, base):
        parts = rel.split("/")
        if parts == ["zarr.json"] or (len(parts) <= 2 and _ZARR_TEMP.match(parts[-1])):
            continue
        if len(parts) == 2 and parts[1] == "zarr.json" and "reason" in _zarr_attrs(fs, f"{base}/{rel}"):
            continue
        foreign.append(rel)
    return foreign


def _is_set_hdf5(fs, path: str) -> bool:
    try:
        with fs.open(path, "rb") as raw, h5py.File(raw, "r") as f:
            return ROOT_KEY in f.attrs
    except (OSError, ValueError):
        return False


def _foreign_hdf5_videos(fs, base: str) -> list[str]:
    foreign = []
    for rel in _files(fs, base):
        if "/" not in rel and (_HDF5_TMP.match(rel) or (rel.endswith(".h5") and _is_set_hdf5(fs, f"{base}/{rel}"))):
            continue
        foreign.append(rel)
    return foreign


def _foreign_hdf5_failures(fs, base: str) -> list[str]:
    foreign = []
    for rel in _files(fs, base):
        if "/" not in rel and rel.endswith(".json") and "reason" in (_json(fs, f"{base}/{rel}") or {}):
            continue
        foreign.append(rel)
    return foreign


_CHECKS = {"zarr": {"videos": _foreign_zarr_videos, "failures": _foreign_zarr_failures},
           "hdf5": {"videos": _foreign_hdf5_videos, "failures": _foreign_hdf5_failures}}


def foreign_files(fs, root: str, format: str) -> list[str]:
    """Paths (relative to the set's folder `root`) under its `videos/` and `failures/` that
    the `format` set did not write: a source video, a user's folder, a file of another tool."""
    return [f"{sub}/{rel}" for sub, check in _CHECKS[format].items()
            for rel in check(fs, f"{root.rstrip('/')}/{sub}")]


def shown(paths: list[str]) -> str:
    """The first few `paths`, and how many more, for a one-line message."""
    return ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
