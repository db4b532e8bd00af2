"""Zarr 3 backend: one root group, one group per video, one file per video array.

Layout (see docs/shards.md):
    zarr.json                 root attrs {"motion_mae": SchemaInfo, "config": {...}, "index": ...}
    videos/<id>/zarr.json     video attrs (+ "complete": True written last) and, once committed,
                              the consolidated metadata of its arrays (one read opens a video)
    videos/<id>/<array>/      one sharded array: chunks of `frame_chunk` frames, one shard file
    failures/<id>/zarr.json   attrs {source, reason, stage}

Concurrency: each video group has exactly one writer; writers never touch the root after
opening it. `finalize` (once, at the end) records the index of committed ids, with their
label, split and frame count, in the root attrs so readers open a large corpus, and pick a
split, without listing it. We do not consolidate the whole tree into the root: for K400
that is ~2.4M array nodes, a multi-GB zarr.json every reader would parse; per-video
consolidation plus the id index gives the same one-read opens.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from .errors import DamagedMetadata, MissingChunkError
from .hdf5_store import is_hdf5_root
from .index import INDEX_BASE_KEY, INDEX_KEY, build_index, incremental_index, merge_config
from .lazy_group import open_video
from .metadata import damaged, object_field, parse_json, zarr_group_json
from .schema import ARRAYS, COMMIT_ATTR, root_attrs, root_version
from .shard_file import read_selection
from .video_writer import shard_layout

# zstd inside Blosc with byte shuffle: shuffle groups the bytes of int16/float16/float32
# values, which compresses them ~1.5x better; it is a no-op for 1-byte dtypes. Level 1:
# the write of a 250-frame 340x256 video took 1.45 ms/frame of CPU against 1.8-2.2 at level 3,
# for 1 % more bytes (8.71 vs 8.63 MB); lz4 was faster still (1.19) but 39 % bigger. That was
# with hog and traj stored; frames are JPEG (nothing left to squeeze) and keep level 1. The
# motion arrays of schema 3 are a small part of the write: level 5 makes flow 9 % and mv 16 %
# smaller than level 1 on the K400-like corpus; level 9 gains another 8 % for ~60 ms/frame
# (docs/benchmarks.md).
FRAMES_COMPRESSOR = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
# Every chunk carries a crc32c of its compressed bytes (schema 2): flipped bits fail the read
# instead of decompressing to other numbers (the shard index has its own crc32c in zarr's
# sharding codec).
CHECKSUM = Crc32cCodec()


def codecs_for(name: str) -> list:
    """The compressors (and checksum) of array `name`: every writer path uses these."""
    return [FRAMES_COMPRESSOR if name == "frames" else COMPRESSOR, CHECKSUM]
# Every chunk is written, even all fill value: a chunk file that is absent is then always
# damage (ChunkCheckingStore), never an "empty" chunk that zarr would read back as zeros.
ARRAY_CONFIG = {"write_empty_chunks": True}


class ChunkCheckingStore(zarr.storage.WrapperStore):
    """Reads that raise instead of returning "no such key" for chunk keys.

    Writers store every chunk (ARRAY_CONFIG), so an absent `videos/<id>/<array>/c/...` key
    means a deleted or lost file; zarr itself would return fill values (zeros) for it.
    """

    async def get(self, key, prototype, byte_range=None):
        buf = await self._store.get(key, prototype, byte_range)
        parts = key.split("/")
        if buf is None and len(parts) > 4 and parts[0] == "videos" and parts[3] == "c":
            raise MissingChunkError(f"video {parts[1]!r} array {parts[2]!r}: chunk file {key} is missing")
        return buf


def _quiet_consolidate(store, path: str = "") -> None:
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not yet part of the v3 spec; we know.
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(store, path=path or None)


def make_store(path: str, read_only: bool):
    """A zarr store for a local directory or any fsspec URL."""
    path = os.fspath(path)
    if "://" in path and not path.startswith("file://"):
        return zarr.storage.FsspecStore.from_url(path, read_only=read_only)
    local = path[len("file://"):] if path.startswith("file://") else path
    return zarr.storage.LocalStore(local, read_only=read_only)


def is_zarr_root(path: str) -> bool:
    fs, root = fsspec.core.url_to_fs(os.fspath(path))
    return fs.exists(f"{root.rstrip('/')}/zarr.json")


# zarr's local store writes every document through `<stem>.<32 hex>.partial` and a rename: a
# process killed mid-write (a kill -9 of an extraction) leaves one behind, never a video.
ZARR_TEMP = re.compile(r"^[^/]*\.[0-9a-f]{32}\.partial$")


def _members(names) -> set[str]:
    """Listing names that are members of a group: not its zarr.json, a hidden file, or a temporary."""
    return {n for n in names if n != "zarr.json" and not n.startswith(".") and not ZARR_TEMP.match(n)}


def video_group_names(fs, fs_root: str) -> set[str]:
    """Names of the video groups, from a listing (no metadata read per group, so a video
    whose zarr.json is damaged is still listed, and reported by verify)."""
    root = f"{fs_root.rstrip('/')}/videos"
    if not fs.exists(root):
        return set()
    return _members(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))


# what zarr raises for a group document that is not JSON or not of a group's shape
BAD_DOCUMENT = (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, KeyError, AttributeError)


def open_root(store, path: str, mode: str):
    """The root group; DamagedMetadata (one line) when its zarr.json does not parse, or is
    JSON of another shape than a zarr group's."""
    try:
        return zarr.open_group(store, mode=mode, use_consolidated=False)
    except FileNotFoundError:
        raise
    except BAD_DOCUMENT as err:
        raise damaged(path, "the root zarr.json", err) from err


def require_child(root, name: str, fs, fs_root: str):
    """The `videos` or `failures` group, its zarr.json rewritten when damaged: the document of
    a group with no attrs, so nothing is lost (its members keep their own documents)."""
    try:
        return root.require_group(name)
    except BAD_DOCUMENT:
        fs.pipe_file(f"{fs_root.rstrip('/')}/{name}/zarr.json", zarr_group_json({}))
        return root.require_group(name)


def child(root, name: str, path: str):
    """The `videos` or `failures` group for reading (None when absent); DamagedMetadata when
    its document is damaged (a writer's next run rewrites it)."""
    try:
        return root.get(name)
    except BAD_DOCUMENT as err:
        raise damaged(path, f"{name}/zarr.json", err) from err


def failure_names(fs, fs_root: str) -> list[str]:
    """Ids of the failure records, from a listing (no record read)."""
    base = f"{fs_root.rstrip('/')}/failures"
    if not fs.exists(base):
        return []
    return sorted(_members(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)))


def read_failure(fs, fs_root: str, path: str, name: str) -> dict | None:
    """One failure record's attrs (None if it vanished); DamagedMetadata if it is garbage."""
    try:
        data = fs.cat_file(f"{fs_root.rstrip('/')}/failures/{name}/zarr.json")
    except FileNotFoundError:
        return None
    doc = parse_json(data, f"{path} failures/{name}", "the failure record zarr.json")
    return dict(object_field(doc, "attributes", f"{path} failures/{name}", "the failure record zarr.json"))


def chunking(spec_frame_chunk: int, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunk shape, shard shape): chunks of frame_chunk frames x full other dims, one shard
    holding the whole array (a shard must be a whole number of chunks)."""
    rest = tuple(max(1, s) for s in shape[1:])
    chunks = (spec_frame_chunk,) + rest
    shards = (max(1, math.ceil(shape[0] / spec_frame_chunk)) * spec_frame_chunk,) + rest
    return chunks, shards


class ZarrWriter:
    format = "zarr"

    def __init__(self, path: str, config: dict | None):
        self.path = os.fspath(path)
        self.store = make_store(self.path, read_only=False)
        if is_zarr_root(self.path):
            root = open_root(self.store, self.path, "r+")
            attrs = dict(root.attrs)
            root_version(attrs, self.path, writing=True)
            update = merge_config(attrs, config, self.path)
            if attrs.get(INDEX_KEY) is not None:
                # New writes would make the index stale. Checked for a value, not the key, so
                # that workers reopening the root after the driver never rewrite it. It is
                # kept as the base of the next finalize (only new videos are read then).
                update[INDEX_KEY] = None
                update[INDEX_BASE_KEY] = attrs[INDEX_KEY]
            if update:
                root.update_attributes(update)
        else:
            if is_hdf5_root(self.path):
                raise ValueError(f"{self.path} is an HDF5 shard set; open it with format='hdf5'")
            root = zarr.open_group(self.store, mode="a", attributes=root_attrs(config))
        self.root = root
        self.fs, self.fs_root = fsspec.core.url_to_fs(self.path)
        self.videos = require_child(root, "videos", self.fs, self.fs_root)
        self.failures = require_child(root, "failures", self.fs, self.fs_root)
        self._streams: dict[str, tuple] = {}  # videos begun, not committed: (group, {name: array})

    def config(self) -> dict:
        return zarr.open_group(self.store, mode="r", use_consolidated=False).attrs.get("config") or {}

    def done_ids(self) -> set[str]:
        return self._scan()[1]

    def _scan(self) -> tuple[dict | None, set[str], dict[str, dict]]:
        """(index base, committed ids, attrs of the groups the base does not list).

        Videos of the last finalized index are committed (committed groups are never
        rewritten), so only the other groups' attrs are read, once each.
        """
        base = zarr.open_group(self.store, mode="r", use_consolidated=False).attrs.get(INDEX_BASE_KEY)
        known = set(base.get("videos", [])) if base else set()
        names = self._group_names()
        fresh = {n: attrs for n in names - known if (attrs := self._attrs(n)) is not None}
        return base, (names & known) | {n for n, a in fresh.items() if a.get(COMMIT_ATTR) is True}, fresh

    def _group_names(self) -> set[str]:
        return video_group_names(self.fs, self.fs_root)

    def _attrs(self, name: str) -> dict | None:
        try:
            return dict(self.videos[name].attrs)
        except KeyError:
            return None

    def failed_ids(self) -> set[str]:
        return set(failure_names(self.fs, self.fs_root))

    def committed(self, video_id: str) -> tuple[dict, int] | None:
        """(attrs, bytes) of a committed video, None if it is absent or half-written."""
        attrs = self._attrs(video_id)
        if attrs is None or attrs.get(COMMIT_ATTR) is not True:
            return None
        return attrs, int(self.fs.du(f"{self.fs_root.rstrip('/')}/videos/{video_id}", total=True))

    def drop_damaged_failures(self) -> list[str]:
        """Delete failure records that do not parse: their videos are not committed, so this
        run redoes them (or, gone from the corpus, they are simply forgotten)."""
        dropped = []
        for name in failure_names(self.fs, self.fs_root):
            try:
                read_failure(self.fs, self.fs_root, self.path, name)
            except DamagedMetadata:
                self.fs.rm(f"{self.fs_root.rstrip('/')}/failures/{name}", recursive=True)
                dropped.append(name)
        return dropped

    def write_video(self, video_id: str, stored: dict[str, np.ndarray], attrs: dict) -> int:
        # overwrite=True clears a half-written group left by a crashed attempt.
        group = self.videos.create_group(video_id, attributes={**attrs, COMMIT_ATTR: False},
                                         overwrite=True)
        for name, data in stored.items():
            chunks, shards = chunking(ARRAYS[name].frame_chunk, data.shape)
            arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                     shards=shards, fill_value=0,
                                     compressors=codecs_for(name),
                                     config=ARRAY_CONFIG)
            if data.size:
                arr[...] = data
        return self._commit(video_id, group, {COMMIT_ATTR: True})  # everything above is on disk

    # A video written as it is computed (shards.video_writer): begin, rows, commit or abort.

    def begin_video(self, video_id: str, attrs: dict) -> None:
        self._streams[video_id] = (self.videos.create_group(
            video_id, attributes={**attrs, COMMIT_ATTR: False}, overwrite=True), {})

    def write_rows(self, video_id: str, name: str, start: int, rows: np.ndarray, shard_frames: int) -> None:
        """Rows start .. start + len(rows) - 1 of array `name`; the array grows to end there.
        Each call covers whole shards (but the last), so no shard file is read back."""
        group, arrays = self._streams[video_id]
        end = (start + len(rows),) + rows.shape[1:]
        if name not in arrays:
            chunks, shards = shard_layout(ARRAYS[name].frame_chunk, shard_frames, rows.shape[1:])
            arrays[name] = group.create_array(name, shape=end, dtype=rows.dtype, chunks=chunks, shards=shards,
                                              compressors=codecs_for(name), fill_value=0,
                                              config=ARRAY_CONFIG)
        else:
            arrays[name].resize(end)
        if rows.size:
            arrays[name][start:end[0]] = rows

    def commit_video(self, video_id: str, attrs: dict) -> int:
        group, _ = self._streams.pop(video_id)
        # the final attrs and the marker in one zarr.json write, after every chunk
        return self._commit(video_id, group, {**attrs, COMMIT_ATTR: True})

    def abort_video(self, video_id: str) -> None:
        if self._streams.pop(video_id, None) is not None and video_id in self.videos:
            del self.videos[video_id]

    def _commit(self, video_id: str, group, attrs: dict) -> int:
        group.update_attributes(attrs)  # the commit
        _quiet_consolidate(self.store, f"videos/{video_id}")
        if video_id in self.failures:
            del self.failures[video_id]
        return int(self.fs.du(f"{self.fs_root.rstrip('/')}/videos/{video_id}", total=True))

    def write_failure(self, video_id: str, record: dict) -> None:
        self.failures.create_group(video_id, attributes=record, overwrite=True)

    def finalize(self) -> None:
        for sub in ("videos", "failures"):  # temporaries of writers killed mid-write (ZARR_TEMP)
            for path in self.fs.glob(f"{self.fs_root.rstrip('/')}/{sub}/*.partial"):
                if ZARR_TEMP.match(path.rsplit("/", 1)[-1]):
                    self.fs.rm(path)
        base, committed, fresh = self._scan()
        index = incremental_index(base, committed, fresh.__getitem__)
        root = zarr.open_group(self.store, mode="r+", use_consolidated=False)
        root.update_attributes({INDEX_KEY: index, INDEX_BASE_KEY: None})


class ZarrReader:
    format = "zarr"

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.store = ChunkCheckingStore(make_store(self.path, read_only=True))
        self.fs, fs_root = fsspec.core.url_to_fs(self.path)
        self.fs_root = fs_root.rstrip("/")
        self.root = open_root(self.store, self.path, "r")
        attrs = dict(self.root.attrs)
        root_version(attrs, self.path)
        index = attrs.pop(INDEX_KEY, None)
        attrs.pop(INDEX_BASE_KEY, None)  # a writer's bookkeeping
        self.attrs = attrs
        self._videos = child(self.root, "videos", self.path)
        self._failures = child(self.root, "failures", self.path)
        if not index:  # not finalized yet: list the groups, whose attrs give the index anyway
            index = build_index((n, dict(g.attrs)) for n, g in self._groups(self._videos)
                                if g.attrs.get(COMMIT_ATTR) is True)
        self.index: dict = index
        self._ids = list(index["videos"])

    @staticmethod
    def _groups(group):
        return group.groups() if group is not None else iter(())

    def ids(self) -> list[str]:
        return self._ids

    def all_ids(self) -> list[str]:
        """Every video group, committed or not (for verify)."""
        return sorted(video_group_names(self.fs, self.fs_root))

    def video(self, video_id: str, fresh: bool = False) -> tuple[dict, dict]:
        """(attrs, {name: stored array}) of one video; KeyError if absent.

        fresh=True ignores the consolidated metadata and reads every node (verify). Otherwise
        a committed video is opened from its zarr.json alone, its arrays built when first read
        (`lazy_group`: ~0.6 ms against ~6 ms for zarr.open_group)."""
        if not fresh:
            try:
                data = self.fs.cat_file(f"{self.fs_root}/videos/{video_id}/zarr.json")
            except FileNotFoundError as e:
                raise KeyError(video_id) from e
            opened = open_video(data, self.store, f"videos/{video_id}")
            if opened is not None:
                return opened
        try:
            group = zarr.open_group(self.store, path=f"videos/{video_id}", mode="r",
                                    use_consolidated=False if fresh else None)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
            raise KeyError(video_id) from e
        return dict(group.attrs), dict(group.arrays())

    @staticmethod
    def read(raw, sel):
        """Stored values of the frames `sel` (a positive-step slice or sorted unique ints).
        A local shard is read from its file (`shard_file`: zarr's per-chunk pipeline cost a
        clip's 62-frame read ~50 ms, the file read ~1-3 ms); zarr reads everything else."""
        return read_selection(raw, sel)

    def failures(self) -> list[dict]:
        records = ((n, read_failure(self.fs, self.fs_root, self.path, n)) for n in failure_names(self.fs, self.fs_root))
        return [{**attrs, "id": n} for n, attrs in records if attrs is not None]

    def video_bytes(self, video_id: str) -> int:
        """Bytes of everything one video takes in the store (arrays and metadata)."""
        return int(self.fs.du(f"{self.fs_root}/videos/{video_id}", total=True))

    def nbytes(self, video_id: str) -> dict[str, int]:
        """Bytes on disk per array of one video (shard files, index included)."""
        base = f"{self.fs_root}/videos/{video_id}"
        out = {}
        for name in ARRAYS:
            try:
                out[name] = int(self.fs.du(f"{base}/{name}", total=True))
            except FileNotFoundError:
                out[name] = 0
        return out

    def close(self) -> None:
        self.root = self._videos = self._failures = None
