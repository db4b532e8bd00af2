"""Write videos into a shard set: validate against the schema, quantize, commit atomically.

    w = open_writer("out/shards", config=asdict(cfg))       # once, in the driver
    todo = [v for v in videos if v.id not in w.done_ids() | w.failed_ids()]
    # in each worker: open_writer(path) again, then per video
    w.write_video(video_id, arrays, attrs)   or   w.write_failure(video_id, record)
    w.finalize()                                            # once, after all workers

A video is visible to readers only after its commit (zarr: the "complete" attr written
last; HDF5: the rename of the finished file), so a crash never leaves a video that looks done
and a resumed run simply redoes everything not in `done_ids()`.
"""
from __future__ import annotations

import json
import os
import re

import fsspec
import numpy as np

from . import video_writer
from .errors import ForeignFiles
from .hdf5_store import ROOT_FILE, Hdf5Writer
from .lock import LOCK_NAME
from .metadata import jsonable, zarr_group_json
from .owned import foreign_files, shown
from .schema import (ARRAYS, DERIVED, REQUIRED_VIDEO_ATTRS, SCHEMA_VERSION, SHAPE_ATTRS, dims_from_attrs,
                     encode, root_attrs, stored_arrays, video_id_problem)
from .video_writer import VideoWriter, check_values
from .zarr_store import ZarrWriter

FORMATS = ("zarr", "hdf5")
FAILURE_KEYS = ("source", "reason", "stage")


def check_video_id(video_id: str) -> None:
    problem = video_id_problem(video_id)
    if problem:
        raise ValueError(problem)


def check_attrs(attrs: dict) -> dict:
    """Video attrs as stored: plain JSON types, the schema version, every required key."""
    attrs = jsonable(dict(attrs))
    attrs["schema_version"] = SCHEMA_VERSION
    missing_attrs = [k for k in (*REQUIRED_VIDEO_ATTRS, *SHAPE_ATTRS) if k not in attrs]
    if missing_attrs:
        raise ValueError(f"video attrs lack {missing_attrs}")
    return attrs


def prepare(arrays: dict[str, np.ndarray], attrs: dict) -> tuple[dict[str, np.ndarray], dict]:
    """Validate reader-dtype arrays against the schema and quantize them to stored dtypes.

    Only stored arrays are taken: a derived one (schema 3: traj, traj_valid, hog) is computed
    when read, and passing it is an error rather than a silent drop."""
    attrs = check_attrs(attrs)
    names = stored_arrays(attrs)  # frames_storage "none": no frames array
    missing = sorted(set(names) - set(arrays))
    unknown = sorted(set(arrays) - set(names))
    if missing or unknown:
        derived = sorted(set(unknown) & set(DERIVED))
        raise ValueError(f"arrays do not match the schema: missing {missing}, unknown {unknown}"
                         f" (frames_storage {attrs.get('frames_storage', 'jpeg')!r})"
                         + (f" ({derived} are derived when read, never stored)" if derived else ""))
    dims = dims_from_attrs(attrs)
    stored = {}
    for name in names:
        spec = ARRAYS[name]
        values = np.asarray(arrays[name])
        want = spec.shape(dims)
        if values.shape != want:
            raise ValueError(f"{name}: shape {values.shape}, schema {spec.dims} with these attrs "
                             f"gives {want}")
        check_values(name, spec, values)
        stored[name] = np.ascontiguousarray(encode(name, values))
    return stored, attrs


class ShardWriter:
    """Schema validation and quantization in front of one storage backend."""

    def __init__(self, backend):
        self._backend = backend
        self.path = backend.path
        self.format = backend.format

    def config(self) -> dict:
        """The extraction config stored in the root attrs ({} if none was given)."""
        return dict(self._backend.config())

    def done_ids(self) -> set[str]:
        """Committed videos."""
        return self._backend.done_ids()

    def failed_ids(self) -> set[str]:
        return self._backend.failed_ids()

    def committed(self, video_id: str) -> tuple[dict, int] | None:
        """(attrs, bytes in the store) of `video_id` if it is committed, else None: one
        metadata read, for a retried task to skip what its killed attempt already committed."""
        return self._backend.committed(video_id)

    def drop_damaged_failures(self) -> list[str]:
        """Delete failure records that are not valid JSON (a reader would refuse the set);
        their videos are not committed, so the run redoes them. Returns their ids."""
        return self._backend.drop_damaged_failures()

    def write_video(self, video_id: str, arrays: dict[str, np.ndarray], attrs: dict) -> int:
        """Validate, quantize (schema.encode) and commit one video; clears its failure record.

        Returns the bytes the committed video takes in the store."""
        check_video_id(video_id)
        stored, attrs = prepare(arrays, attrs)
        return self._backend.write_video(video_id, stored, attrs)

    def begin_video(self, video_id: str, attrs: dict | None = None,
                    shard_frames: int | None = None) -> VideoWriter:
        """A video to write while it is computed (shards/video_writer.py): `append` rows per
        array, then `commit(attrs)`; the same checks, quantization and commit guarantees as
        `write_video`. `attrs` (height, width, traj_len, flow_stride) may instead be given
        later with `start`."""
        check_video_id(video_id)
        video = VideoWriter(self._backend, video_id, check_attrs,
                            video_writer.STREAM_SHARD_FRAMES if shard_frames is None else shard_frames)
        if attrs is not None:
            video.start(attrs)
        return video

    def write_failure(self, video_id: str, record: dict) -> None:
        """Record why a video could not be extracted: {source, reason, stage}."""
        check_video_id(video_id)
        missing = [k for k in FAILURE_KEYS if k not in record]
        if missing:
            raise ValueError(f"failure record for {video_id!r} lacks {missing}")
        self._backend.write_failure(video_id, jsonable(dict(record)))

    def finalize(self) -> None:
        """Once, after every writer is done: write the corpus index (`index.build_index`) into the
        root attrs and remove leftovers of crashed writers (hdf5)."""
        self._backend.finalize()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self) -> str:
        return f"ShardWriter({self.path!r}, format={self.format!r})"


# What a shard set owns at its root: all that `remove_set` may delete. A new top-level file of
# a backend belongs here, or --overwrite refuses sets that hold it.
OWNED = {"zarr": ("zarr.json", "videos", "failures"),
         "hdf5": ("motion_mae.json", "videos", "failures")}
OWNED_BY_ANY = ("manifest.json", LOCK_NAME)  # preprocess.manifest.MANIFEST, the writer lock
# temporaries of atomic writes (manifest, hdf5 root attrs, lock heartbeat) a crash left behind
OWNED_TMP = re.compile(r"^\.(manifest\.json|motion_mae\.json|\.motion_mae\.lock)\.[0-9a-f]+\.tmp$")


def remove_set(out: str, format: str, keep: tuple[str, ...] = (LOCK_NAME,)) -> list[str]:
    """Delete the shard set at `out` (directory or fsspec URL): only what it owns (`OWNED` at
    the top, `owned.foreign_files` below it), never the directory itself, and nothing at all
    when the directory holds anything else at any depth (ForeignFiles: the user's videos or
    notes next to or inside the set's folders). Returns the names removed."""
    fs, root = fsspec.core.url_to_fs(os.fspath(out))
    root = root.rstrip("/")
    if not fs.exists(root):
        return []
    owned = set(OWNED[format]) | set(OWNED_BY_ANY)
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    foreign = [n for n in names if n not in owned and not OWNED_TMP.match(n)]
    # below the top level too: a corpus kept in <out>/videos/ shares the set's folder name
    foreign += foreign_files(fs, root, format)
    if foreign:
        raise ForeignFiles(f"--overwrite: {out} holds files that are not part of the {format} shard set "
                           f"({shown(foreign)}); deleted nothing. Move them away or choose another --out.")
    removed = [n for n in names if n not in keep]
    for name in removed:
        fs.rm(f"{root}/{name}", recursive=True)
    return removed


def restore_root(out: str, format: str, config: dict) -> None:
    """Rewrite a damaged root document (zarr.json / motion_mae.json) in place with the schema
    info and `config`, keeping every video: committed videos carry their own attrs, and the
    next `finalize` rebuilds the corpus index from them."""
    fs, root = fsspec.core.url_to_fs(os.fspath(out))
    attrs = root_attrs(jsonable(config))
    if format == "zarr":
        fs.pipe_file(f"{root.rstrip('/')}/zarr.json", zarr_group_json(attrs))
    else:
        fs.pipe_file(f"{root.rstrip('/')}/{ROOT_FILE}", json.dumps(attrs).encode())


def open_writer(path, format: str = "zarr", config: dict | None = None) -> ShardWriter:
    """Create a shard set at `path` (directory or fsspec URL) or reopen it to resume.

    Refuses a root of an unknown schema version (SchemaVersionError). `config` is stored
    only when the root has none yet; compare `config()` to decide whether resuming is safe.
    Workers reopen with config=None.
    """
    if format == "zarr":
        backend = ZarrWriter
    elif format == "hdf5":
        backend = Hdf5Writer
    else:
        raise ValueError(f"unknown shard format {format!r}; choose one of {FORMATS}")
    return ShardWriter(backend(os.fspath(path), None if config is None else jsonable(config)))
