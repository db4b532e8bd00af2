"""A committed video opened from its one zarr.json document, its arrays built when first read.

Why: `zarr.open_group` on a video group took ~5-7 ms (four round trips through zarr's
event-loop thread, then parsing the consolidated metadata of all six arrays). A training
loader opens a video for nearly every clip it reads (it keeps 1024 open; K400 has 240k), so
on the small study corpus opening was 80 % of a clip's read (6.7 of 8.2 ms) and the loader,
not the model, set the step time. Parsing the document here and building only the arrays a
clip reads (one for a pixel target) takes ~0.6 ms (tests/shards/test_lazy_group.py checks
the arrays are the ones zarr opens).

Only for a committed video whose zarr.json carries consolidated metadata (what the writer
leaves); anything else, and `verify`'s fresh reads, go through `zarr.open_group`.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import zarr
from zarr.core.array import AsyncArray
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import StorePath


def consolidated_children(doc: dict) -> dict[str, dict] | None:
    """{array name: its metadata document} from a group's zarr.json, or None when the document
    has no consolidated metadata (an unfinished video: open it through zarr)."""
    meta = (doc.get("consolidated_metadata") or {}).get("metadata")
    if not isinstance(meta, dict):
        return None
    return {name: m for name, m in meta.items()
            if "/" not in name and isinstance(m, dict) and m.get("node_type") == "array"}


_PARSED: OrderedDict[str, ArrayV3Metadata] = OrderedDict()
PARSED_KEPT = 256  # distinct array documents kept parsed: a corpus's videos mostly share a few shapes


def parsed_metadata(doc: str) -> ArrayV3Metadata:
    """The zarr metadata of one array's JSON document, parsed once per process for every video
    whose array has the same document (same shape, chunks, codecs: on a corpus of equal-length
    clips, every video). Parsing took 0.3-1 ms per array, ~10x building the array from it, and
    a 64 px training clip opens a new video for most clips it reads. ArrayV3Metadata is a frozen
    dataclass, so sharing it between arrays is safe."""
    meta = _PARSED.get(doc)
    if meta is None:
        meta = ArrayV3Metadata.from_dict(json.loads(doc))
        _PARSED[doc] = meta
        if len(_PARSED) > PARSED_KEPT:
            _PARSED.popitem(last=False)
    return meta


class LazyArrays(Mapping):
    """{name: zarr.Array} of one video group, each built from its metadata on first access.

    The metadata waits as one JSON string per array, not parsed: a loader worker keeps 1024
    videos open, and ~600 parsed objects each made every full garbage collection walk ~600k
    objects (20 % of a 64 px clip's read on the study corpus)."""

    def __init__(self, store, prefix: str, children: dict[str, dict]):
        self._store, self._prefix = store, prefix.rstrip("/")
        self._docs = {name: json.dumps(doc) for name, doc in children.items()}
        self._built: dict[str, zarr.Array] = {}

    def __getitem__(self, name: str) -> zarr.Array:
        array = self._built.get(name)
        if array is None:
            meta = parsed_metadata(self._docs[name])  # KeyError for an array the video lacks, as a dict would
            array = zarr.Array(AsyncArray(meta, StorePath(self._store, f"{self._prefix}/{name}" if self._prefix else name)))
            self._built[name] = array
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, name) -> bool:
        return name in self._docs


def open_video(data: bytes, store, prefix: str) -> tuple[dict, LazyArrays] | None:
    """(attrs, lazy arrays) of the video group whose zarr.json is `data`, at `prefix` of `store`;
    None when the document has no consolidated metadata. A document that does not parse raises
    json.JSONDecodeError / UnicodeDecodeError (the reader names the video)."""
    doc = json.loads(data)
    children = consolidated_children(doc)
    if children is None:
        return None
    return dict(doc.get("attributes") or {}), LazyArrays(store, prefix, children)
