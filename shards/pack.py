"""`python -m shards pack SRC DST`: a finished shard set into a few large files.

Videos (sorted by id) go `videos_per_file` to a pack file, each video as the keys of its zarr
group copied byte for byte from a zarr (or packed) source: chunks keep their crc32c, nothing
is re-encoded. An HDF5 source is re-encoded once into the zarr codecs (the HDF5 filters,
gzip + fletcher32, are not zarr codecs). Layout and reader: shards/packed_store.py, shards/pack_file.py.

Atomic and resumable: the root document is removed first and written last, so a killed run
leaves no set a reader opens; each pack file is written under a temporary name and renamed
when its footer is written, and a re-run keeps every pack file whose footer lists exactly the
videos it should hold (same ids, same source bytes) and writes the rest.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import uuid
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import fsspec
import numpy as np
import zarr

from .errors import ForeignDestination, PackDamaged
from .index import build_index
from .lock import LOCK_NAME, writer_lock
from .pack_file import FOOTER_MAGIC, FOOTER_TAIL, PACK_VERSION, ROW_KEYS, PackFile, is_local, read_footer
from .packed_store import PACK_DIR, PACK_SUFFIX, ROOT_FILE
from .reader import open_shards
from .schema import ARRAYS
from .zarr_store import ARRAY_CONFIG, _quiet_consolidate, chunking, codecs_for

DEFAULT_VIDEOS_PER_FILE = 1000


def video_keys(ds, video_id: str) -> dict[str, bytes]:
    """The stored keys of one video's zarr group, relative to it ("zarr.json", "mv/c/0/0/0/0"),
    with their bytes: copied from a zarr or packed source, encoded from an HDF5 one."""
    backend = ds._backend
    if ds.format == "zarr":
        fs, root = fsspec.core.url_to_fs(ds.path)
        base = f"{root.rstrip('/')}/videos/{video_id}/"
        paths = sorted(fs.find(base))
        # one batch: concurrent GETs on object stores (19 round trips per video otherwise)
        data = fs.cat(paths, on_error="raise") if paths else {}
        return {p[len(base):]: data[p] for p in paths}
    if ds.format == "packed":
        store = backend.store(video_id)
        return {key: store._read(key, None) for key in store._dir}
    return _hdf5_as_zarr(ds, video_id)


def _hdf5_as_zarr(ds, video_id: str) -> dict[str, bytes]:
    """One HDF5 video written as the zarr backend writes it (same chunks, codecs, checksums)."""
    attrs, raws = ds._backend.video(video_id)
    mem: dict = {}
    store = zarr.storage.MemoryStore(mem)
    group = zarr.open_group(store, mode="w", attributes=attrs)
    for name, raw in raws.items():
        data = np.asarray(raw[...])
        frame_chunk = ARRAYS[name].frame_chunk if name in ARRAYS else 1
        chunks, shards = chunking(frame_chunk, data.shape)
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shards,
                                 compressors=codecs_for(name), fill_value=0, config=ARRAY_CONFIG)
        if data.size:
            arr[...] = data
    _quiet_consolidate(store)
    return {key: buf.to_bytes() for key, buf in mem.items()}


def layout_video(keys: dict[str, bytes], start: int) -> tuple[list[bytes], dict]:
    """The bytes of one video in a pack file starting at offset `start`, and its row.

    Chunk data first, then the zarr.json documents and the directory: the metadata range
    (what opening the video reads) is contiguous, one read."""
    data = sorted(k for k in keys if not k.endswith("zarr.json"))
    meta = sorted(k for k in keys if k.endswith("zarr.json"))
    parts, directory, pos = [], {}, start
    for key in data + meta:
        directory[key] = [pos, len(keys[key])]
        parts.append(keys[key])
        pos += len(keys[key])
    meta_start = directory[meta[0]][0] if meta else pos
    dir_blob = json.dumps(directory, separators=(",", ":")).encode()
    parts.append(dir_blob)
    meta_blob = b"".join(keys[k] for k in meta) + dir_blob
    row = {"offset": meta_start, "length": len(meta_blob), "dir_length": len(dir_blob),
           "crc32": zlib.crc32(meta_blob)}
    return parts, row


def write_pack(fs, final: str, ds, video_ids: list[str], number: int) -> dict[str, dict]:
    """Write one pack file (temporary name, then a rename); returns {id: row}."""
    local = is_local(fs)
    parent = final.rsplit("/", 1)[0]
    name = final.rsplit("/", 1)[1]
    # a unique temporary name, never listed by readers (they read names from the root only)
    tmp = (f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if local
           else os.path.join(tempfile.gettempdir(), f".{name}.{uuid.uuid4().hex}.tmp"))
    rows: dict[str, dict] = {}
    try:
        with open(tmp, "xb") as f:
            pos = 0
            for vid in video_ids:
                parts, row = layout_video(video_keys(ds, vid), pos)
                for part in parts:
                    f.write(part)
                    pos += len(part)
                rows[vid] = {"file": number, **row, "source_bytes": ds.video_bytes(vid)}
            footer = json.dumps({"version": PACK_VERSION, "videos": rows}).encode()
            f.write(footer + FOOTER_TAIL.pack(len(footer), FOOTER_MAGIC))
            f.flush()
            os.fsync(f.fileno())
        if local:
            os.replace(tmp, final)  # the commit of this pack file
        else:
            remote_tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
            fs.put_file(tmp, remote_tmp)
            fs.mv(remote_tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def _finished(fs, path: str, video_ids: list[str], ds) -> dict[str, dict] | None:
    """The rows of an existing pack file if it holds exactly `video_ids` as the source
    stores them now (ids and bytes per video), else None (it is rewritten)."""
    if not fs.exists(path):
        return None
    try:
        rows = read_footer(PackFile(fs, path))["videos"]
    except (PackDamaged, KeyError, TypeError):
        return None
    if sorted(rows) != sorted(video_ids):
        return None
    for vid in video_ids:
        if rows[vid].get("source_bytes") != ds.video_bytes(vid):
            return None
    return rows


def check_destination(fs, root: str, dst: str) -> None:
    """DST is absent, empty or a packed set (possibly half written): nothing else is touched."""
    if not fs.exists(root):
        return
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    foreign = [n for n in names if n not in (ROOT_FILE, PACK_DIR, LOCK_NAME) and not n.startswith(f".{ROOT_FILE}.")]
    if foreign:
        raise ForeignDestination(f"pack: {dst} holds files that are not part of a packed set "
                                 f"({', '.join(foreign[:5])}); wrote nothing. Choose an empty or new directory.")


def _pack_job(src: str, dst: str, final: str, video_ids: list[str], number: int) -> dict[str, dict]:
    """One pack file in a worker process, with its own handles on both sets."""
    fs, _ = fsspec.core.url_to_fs(dst)
    with open_shards(src) as ds:
        return write_pack(fs, final, ds, video_ids, number)


def pack(src: str, dst: str, videos_per_file: int = DEFAULT_VIDEOS_PER_FILE,
         log: Callable[[str], None] = print, workers: int = 1) -> dict:
    """Pack the committed videos of shard set `src` into `dst`; returns a summary.

    `workers` > 1 writes that many pack files at once, in spawned processes (zarr's and
    fsspec's threads and h5py handles do not survive a fork): on an object store a video
    costs a few round trips, so one process leaves the network idle most of the time."""
    if videos_per_file < 1:
        raise ValueError(f"videos_per_file must be >= 1, got {videos_per_file}")
    fs, root = fsspec.core.url_to_fs(os.fspath(dst))
    root = root.rstrip("/")
    check_destination(fs, root, os.fspath(dst))
    with writer_lock(dst), open_shards(src) as ds:
        ids = ds.ids()
        incomplete = sorted(set(ds.all_ids()) - set(ids))
        groups = [ids[i:i + videos_per_file] for i in range(0, len(ids), videos_per_file)]
        names = [f"{n:05d}{PACK_SUFFIX}" for n in range(len(groups))]
        if fs.exists(f"{root}/{ROOT_FILE}"):
            fs.rm(f"{root}/{ROOT_FILE}")  # readers stop trusting the set while packs change
        fs.makedirs(f"{root}/{PACK_DIR}", exist_ok=True)
        for leftover in fs.glob(f"{root}/{PACK_DIR}/.*.tmp"):
            fs.rm(leftover)
        rows: dict[str, dict] = {}
        todo = []
        for number, (name, group) in enumerate(zip(names, groups)):
            done = _finished(fs, f"{root}/{PACK_DIR}/{name}", group, ds)
            if done is None:
                todo.append((number, name, group))
            else:
                log(f"pack {number + 1}/{len(groups)} {name}: {len(group)} videos already packed")
                rows.update(done)
        kept, written = len(groups) - len(todo), len(todo)
        for number, name, group, done in _write_all(todo, fs, root, ds, src, dst, workers):
            log(f"pack {number + 1}/{len(groups)} {name}: {len(group)} videos written")
            rows.update(done)
        stale = sorted(p for p in fs.glob(f"{root}/{PACK_DIR}/*{PACK_SUFFIX}") if p.rsplit("/", 1)[1] not in names)
        for path in stale:  # a re-pack with fewer files
            fs.rm(path)
        attrs = dict(ds.attrs)
        index = getattr(ds._backend, "index", None)
        if not index or list(index.get("videos", [])) != ids:
            index = build_index((vid, ds.video(vid).attrs) for vid in ids)
        columns = {"id": ids, **{k: [rows[vid][k] for vid in ids] for k in ROW_KEYS}}
        doc = {**attrs, "index": index,
               "failures": {f["id"]: {k: v for k, v in f.items() if k != "id"} for f in ds.failures()},
               "packed": {"version": PACK_VERSION, "source_format": ds.format, "videos_per_file": videos_per_file,
                          "files": names, "videos": columns}}
        _put_root(fs, root, json.dumps(doc).encode())
        source_format = ds.format
    return {"videos": len(ids), "files": len(names), "written": written, "kept": kept,
            "incomplete_skipped": incomplete, "source_format": source_format}


def _write_all(todo: list, fs, root: str, ds, src: str, dst: str, workers: int):
    """Yield (number, name, ids, rows) as the pack files of `todo` are written."""
    if workers <= 1 or len(todo) <= 1:
        for number, name, group in todo:
            yield number, name, group, write_pack(fs, f"{root}/{PACK_DIR}/{name}", ds, group, number)
        return
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn")) as pool:
        jobs = {pool.submit(_pack_job, os.fspath(src), os.fspath(dst), f"{root}/{PACK_DIR}/{name}", group, number):
                (number, name, group) for number, name, group in todo}
        for job in as_completed(jobs):
            yield (*jobs[job], job.result())


def _put_root(fs, root: str, data: bytes) -> None:
    """The root document, written last through a temporary name: the commit of the set."""
    final = f"{root}/{ROOT_FILE}"
    tmp = f"{root}/.{ROOT_FILE}.{uuid.uuid4().hex}.tmp"
    fs.pipe_file(tmp, data)
    if is_local(fs):
        os.replace(tmp, final)
    else:
        fs.mv(tmp, final)
