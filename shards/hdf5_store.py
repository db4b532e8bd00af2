"""HDF5 backend: one self-describing file per video, committed by an atomic rename.

Layout (see docs/shards.md):
    motion_mae.json           root attrs {"motion_mae": SchemaInfo, "config": {...}, "index": ...}
    videos/<id>.h5            datasets named as schema.ARRAYS; file attrs "motion_mae" (the root
                              attrs, JSON) and "attrs" (the video attrs, JSON, "complete": True)
    videos/.<id>.<rand>.tmp   a write in progress (never listed; `finalize` removes leftovers)
    failures/<id>.json        {source, reason, stage}

HDF5 allows one writer per file, so every video is its own file: parallel workers never
share a file, and a crash leaves only a .tmp that no reader lists.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
import weakref

import fsspec
import h5py
import numpy as np

from .errors import CliError, DamagedMetadata
from .index import INDEX_BASE_KEY, INDEX_KEY, incremental_index, merge_config
from .metadata import parse_json
from .schema import ARRAYS, COMMIT_ATTR, ROOT_KEY, root_attrs, root_version

ROOT_FILE = "motion_mae.json"
# gzip 4 + shuffle: the best ratio h5py ships everywhere; lzf reads faster, compresses less.
# fletcher32 (schema 2): a checksum per chunk, so a flipped byte fails the read instead of
# decoding to other numbers.
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}


def _fs(path: str):
    fs, root = fsspec.core.url_to_fs(os.fspath(path))
    return fs, root.rstrip("/")


def _is_local(fs) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


def _put_atomic(fs, data: bytes | None, final: str, local_file: str | None = None) -> None:
    """Write bytes (or a local file) to `final` through a temp name and a rename."""
    parent, name = final.rsplit("/", 1)
    tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    if local_file is not None:
        fs.put_file(local_file, tmp)
    else:
        with fs.open(tmp, "wb") as f:
            f.write(data)
    if _is_local(fs):
        os.replace(tmp, final)
    else:
        fs.mv(tmp, final)


def is_hdf5_root(path: str) -> bool:
    fs, root = _fs(path)
    return fs.exists(f"{root}/{ROOT_FILE}") or bool(fs.glob(f"{root}/videos/*.h5"))


def _stem_list(fs, pattern: str, suffix: str) -> list[str]:
    return sorted(p.rsplit("/", 1)[-1][: -len(suffix)] for p in fs.glob(pattern))


def _dataset_kwargs(name: str, shape: tuple[int, ...]) -> dict:
    if 0 in shape:
        return {}  # HDF5 cannot chunk an empty extent; nothing to compress anyway
    chunks = (min(ARRAYS[name].frame_chunk, shape[0]),) + tuple(shape[1:])
    return {"chunks": chunks, **COMPRESSION}


class Hdf5Writer:
    format = "hdf5"

    def __init__(self, path: str, config: dict | None):
        self.path = os.fspath(path)
        self.fs, self.root = _fs(self.path)
        root_file = f"{self.root}/{ROOT_FILE}"
        if self.fs.exists(root_file):
            attrs = parse_json(self.fs.cat_file(root_file), self.path, f"the root {ROOT_FILE}")
            root_version(attrs, self.path, writing=True)
            update = merge_config(attrs, config, self.path)
            if attrs.get(INDEX_KEY) is not None:
                # new writes would make the index stale; kept as the next finalize's base
                update[INDEX_KEY] = None
                update[INDEX_BASE_KEY] = attrs[INDEX_KEY]
            if update:
                _put_atomic(self.fs, json.dumps({**attrs, **update}).encode(), root_file)
                attrs.update(update)
        else:
            if self.fs.exists(f"{self.root}/zarr.json"):
                raise ValueError(f"{self.path} is a zarr shard set; open it with format='zarr'")
            attrs = root_attrs(config)
            self.fs.makedirs(self.root, exist_ok=True)
            _put_atomic(self.fs, json.dumps(attrs).encode(), root_file)
        self.attrs = {k: v for k, v in attrs.items() if k not in (INDEX_KEY, INDEX_BASE_KEY)}
        for sub in ("videos", "failures"):
            self.fs.makedirs(f"{self.root}/{sub}", exist_ok=True)
        self._streams: dict[str, tuple[h5py.File, str]] = {}  # videos begun, not committed

    def config(self) -> dict:
        return self.attrs.get("config") or {}

    def done_ids(self) -> set[str]:
        return set(_stem_list(self.fs, f"{self.root}/videos/*.h5", ".h5"))

    def failed_ids(self) -> set[str]:
        return set(_stem_list(self.fs, f"{self.root}/failures/*.json", ".json"))

    def committed(self, video_id: str) -> tuple[dict, int] | None:
        """(attrs, bytes) of a committed video (its .h5 exists: the rename is the commit)."""
        path = f"{self.root}/videos/{video_id}.h5"
        if not self.fs.exists(path):
            return None
        return _video_attrs(self.fs, path), int(self.fs.size(path))

    def drop_damaged_failures(self) -> list[str]:
        """Delete failure records that do not parse (their videos are redone by this run)."""
        dropped = []
        for vid in sorted(self.failed_ids()):
            path = f"{self.root}/failures/{vid}.json"
            try:
                parse_json(self.fs.cat_file(path), path, "failure record")
            except DamagedMetadata:
                self.fs.rm(path)
                dropped.append(vid)
        return dropped

    def write_video(self, video_id: str, stored: dict[str, np.ndarray], attrs: dict) -> int:
        f, tmp = self._tmp_file(video_id)
        try:
            for name, data in stored.items():
                f.create_dataset(name, data=data, **_dataset_kwargs(name, data.shape))
        except BaseException:
            f.close()
            os.unlink(tmp)
            raise
        return self._commit(video_id, f, tmp, attrs)

    # A video written as it is computed (shards.video_writer): begin, rows, commit or abort.

    def begin_video(self, video_id: str, attrs: dict) -> None:
        self._streams[video_id] = self._tmp_file(video_id)

    def write_rows(self, video_id: str, name: str, start: int, rows: np.ndarray, shard_frames: int) -> None:
        """Rows start .. start + len(rows) - 1 of dataset `name`, which grows to end there."""
        f, _ = self._streams[video_id]
        if name not in f:
            rest = rows.shape[1:]
            f.create_dataset(name, shape=(0,) + rest, maxshape=(None,) + rest, dtype=rows.dtype,
                             chunks=(ARRAYS[name].frame_chunk,) + rest, **COMPRESSION)
        f[name].resize(start + len(rows), axis=0)
        if rows.size:
            f[name][start:start + len(rows)] = rows

    def commit_video(self, video_id: str, attrs: dict) -> int:
        return self._commit(video_id, *self._streams.pop(video_id), attrs)

    def abort_video(self, video_id: str) -> None:
        stream = self._streams.pop(video_id, None)
        if stream is not None:
            stream[0].close()
            os.unlink(stream[1])

    def _tmp_file(self, video_id: str) -> tuple[h5py.File, str]:
        """A new HDF5 file under a temporary name no reader lists (local: next to the set)."""
        local_dir = f"{self.root}/videos" if _is_local(self.fs) else None
        fd, tmp = tempfile.mkstemp(prefix=f".{video_id}.", suffix=".tmp", dir=local_dir)
        os.close(fd)
        return h5py.File(tmp, "w"), tmp

    def _commit(self, video_id: str, f: h5py.File, tmp: str, attrs: dict) -> int:
        """Attrs with the commit marker, then the rename to <id>.h5 (the commit)."""
        final = f"{self.root}/videos/{video_id}.h5"
        try:
            with f:
                f.attrs[ROOT_KEY] = json.dumps(self.attrs)
                f.attrs["attrs"] = json.dumps({**attrs, COMMIT_ATTR: True})
            nbytes = os.path.getsize(tmp)
            if _is_local(self.fs):
                os.replace(tmp, final)  # the commit
            else:
                _put_atomic(self.fs, None, final, local_file=tmp)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        failure = f"{self.root}/failures/{video_id}.json"
        if self.fs.exists(failure):
            self.fs.rm(failure)
        return nbytes

    def write_failure(self, video_id: str, record: dict) -> None:
        _put_atomic(self.fs, json.dumps(record).encode(), f"{self.root}/failures/{video_id}.json")

    def finalize(self) -> None:
        for tmp in self.fs.glob(f"{self.root}/videos/.*.tmp") + self.fs.glob(f"{self.root}/failures/.*.tmp"):
            self.fs.rm(tmp)  # leftovers of crashed writers; finalize runs after all writers
        root_file = f"{self.root}/{ROOT_FILE}"
        attrs = parse_json(self.fs.cat_file(root_file), self.path, f"the root {ROOT_FILE}")
        # One attrs read per file not in the last index: the cost of a corpus index for a
        # format without a root group.
        index = incremental_index(attrs.pop(INDEX_BASE_KEY, None), self.done_ids(),
                                  lambda vid: _video_attrs(self.fs, f"{self.root}/videos/{vid}.h5"))
        _put_atomic(self.fs, json.dumps({**attrs, INDEX_KEY: index}).encode(), root_file)


def _video_attrs(fs, path: str) -> dict:
    """A committed video's attrs; DamagedVideoFile when the file is not a readable HDF5 video."""
    try:
        with h5py.File(path if _is_local(fs) else fs.open(path, "rb"), "r") as f:
            doc = json.loads(f.attrs["attrs"]) if "attrs" in f.attrs else {}
    except (OSError, ValueError) as err:  # not HDF5 (no signature), truncated, garbage attrs
        root = path.rsplit("/videos/", 1)[0]
        raise DamagedVideoFile(f"{path}: not a readable HDF5 video ({' '.join(str(err).split())[:120]}); "
                               f"python -m shards verify {root} --repair deletes and re-extracts it") from err
    if not isinstance(doc, dict):
        raise DamagedVideoFile(f"{path}: its attrs are a JSON {type(doc).__name__}, not an object; "
                               f"python -m shards verify {path.rsplit('/videos/', 1)[0]} --repair re-extracts it")
    return doc


class DamagedVideoFile(CliError):
    """A video file of an HDF5 set that cannot be read: its name, and the repair, in one line."""


class Hdf5Reader:
    format = "hdf5"

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.fs, self.root = _fs(self.path)
        self._ids = _stem_list(self.fs, f"{self.root}/videos/*.h5", ".h5")
        root_file = f"{self.root}/{ROOT_FILE}"
        if self.fs.exists(root_file):
            attrs = parse_json(self.fs.cat_file(root_file), self.path, f"the root {ROOT_FILE}")
        elif self._ids:  # every file carries the root attrs: a lone copied file still reads
            with self._open(self._ids[0]) as f:
                attrs = json.loads(f.attrs[ROOT_KEY])
        else:
            attrs = {}
        root_version(attrs, self.path)
        self.index: dict | None = attrs.pop(INDEX_KEY, None)
        attrs.pop(INDEX_BASE_KEY, None)  # a writer's bookkeeping
        self.attrs = attrs
        self._files: weakref.WeakSet = weakref.WeakSet()

    def _open(self, video_id: str) -> h5py.File:
        path = f"{self.root}/videos/{video_id}.h5"
        if _is_local(self.fs):
            return h5py.File(path, "r")
        return h5py.File(self.fs.open(path, "rb"), "r")

    def ids(self) -> list[str]:
        return self._ids

    def all_ids(self) -> list[str]:
        return self._ids  # an uncommitted video is a .tmp file, never a .h5

    def video(self, video_id: str, fresh: bool = False) -> tuple[dict, dict]:
        if video_id not in self._ids and not self.fs.exists(f"{self.root}/videos/{video_id}.h5"):
            raise KeyError(video_id)
        f = self._open(video_id)
        self._files.add(f)
        attrs = json.loads(f.attrs["attrs"]) if "attrs" in f.attrs else {}
        return attrs, {k: v for k, v in f.items() if isinstance(v, h5py.Dataset)}

    @staticmethod
    def read(raw, sel):
        return raw[sel]  # h5py takes positive-step slices and increasing index arrays

    def failures(self) -> list[dict]:
        out = []
        for vid in _stem_list(self.fs, f"{self.root}/failures/*.json", ".json"):
            path = f"{self.root}/failures/{vid}.json"
            out.append({**parse_json(self.fs.cat_file(path), f"{self.path} failures/{vid}.json",
                                     "the failure record"), "id": vid})
        return out

    def video_bytes(self, video_id: str) -> int:
        """Bytes of the video's file (arrays, attrs and HDF5 overhead)."""
        return int(self.fs.size(f"{self.root}/videos/{video_id}.h5"))

    def nbytes(self, video_id: str) -> dict[str, int]:
        with self._open(video_id) as f:
            return {n: int(f[n].id.get_storage_size()) if n in f else 0 for n in ARRAYS}

    def close(self) -> None:
        for f in list(self._files):
            if f.id.valid:
                f.close()
