"""The JSON documents of a shard set (root attrs, failure records, manifest): attrs made plain
JSON, read with one clear message when they are damaged, and the repairs an extraction re-run
makes.

A garbage root `zarr.json` used to surface as a json/zarr traceback, a garbage failure
record made `ds.failures()` crash, a garbage `manifest.json` a UnicodeDecodeError on re-run.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .errors import DamagedMetadata

# What a reader is told to do: the extraction re-run rewrites what the set owns.
REPAIR = "re-run the extraction into this set to repair it (it rewrites what it owns)"


def damaged(where: str, what: str, err: BaseException, repair: str = REPAIR) -> DamagedMetadata:
    """The one line for a document that is not JSON, or JSON of the wrong shape (a TypeError,
    or a ValueError from zarr's own check of its metadata)."""
    if isinstance(err, UnicodeDecodeError):
        reason = "not valid JSON: binary data, not text"
    elif isinstance(err, json.JSONDecodeError):
        reason = f"not valid JSON: {type(err).__name__}: {' '.join(str(err).split())[:120]}"
    else:
        reason = f"valid JSON of the wrong shape: {' '.join(str(err).split())[:120]}"
    return DamagedMetadata(f"{where}: {what} is damaged ({reason}); {repair}")


def parse_json(data: bytes | str, where: str, what: str) -> dict:
    """A JSON object, or DamagedMetadata naming the file and what it holds."""
    try:
        doc = json.loads(data)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both
        raise damaged(where, what, err) from err
    if not isinstance(doc, dict):
        raise damaged(where, what, TypeError(f"a JSON {type(doc).__name__}, not an object"))
    return doc


def object_field(doc: dict, key: str, where: str, what: str) -> dict:
    """doc[key], which must be a JSON object when present ({} when absent or null)."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise damaged(where, what, TypeError(f"{key!r} is a JSON {type(value).__name__}, not an object"))
    return value


def zarr_group_json(attrs: dict) -> bytes:
    """The zarr v3 metadata document of a group with these attrs (to rewrite a damaged root
    in place: zarr.open_group(mode="w") would delete every video under it)."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attrs}).encode()


def jsonable(obj):
    """attrs as plain JSON types (numpy scalars and arrays, tuples -> lists)."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"attr value {o!r} of type {type(o).__name__} is not JSON-serializable")
    return json.loads(json.dumps(obj, default=default))
