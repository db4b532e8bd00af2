"""Packed shard sets: thousands of videos per file, read through zarr exactly as unpacked.

A zarr set stores one group per video, 19 files each (a zarr.json per group and per array, one
shard file per array): K400 would be ~4.6 million files, and each is an object on S3.
`python -m shards pack` (shards/pack.py) concatenates the stored keys of many videos into
one file, byte for byte, so chunks keep their crc32c and the shard index its own; this
module serves those bytes back to zarr as a read-only store per video.

Layout (docs/shards.md, "Packed sets"):
    motion_mae_pack.json   root: {"motion_mae": SchemaInfo, "config", "index" (the corpus index),
                           "failures": {id: record}, "packed": {"version", "source_format",
                           "videos_per_file", "files": [name], "videos": {column: [...]}}}
    packs/<n>.mmpack       per video: its zarr keys as stored (shard files, then the zarr.json
                           documents), then its directory (JSON {key: [offset, length]}, offsets
                           in the file); after the last video a footer (the rows of its videos,
                           JSON) and 16 bytes: footer length (uint64 LE) + FOOTER_MAGIC.

A video's row in the root ("file", "offset", "length", "dir_length", "crc32") locates its
metadata range: zarr.json documents plus directory, contiguous, so one read (one GET on S3)
opens a video, as a consolidated zarr group does; a crc32 over that range catches damage the
JSON parser would not. Chunk reads are ranged reads at the same offsets zarr would use.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from typing import AsyncIterator, Iterable

import fsspec
import zarr
from zarr.abc.store import (ByteRequest, OffsetByteRequest, RangeByteRequest, Store,
                            SuffixByteRequest)
from zarr.core.buffer import Buffer, BufferPrototype

from .errors import MissingChunkError, PackDamaged
from .lazy_group import open_video
from .metadata import parse_json
from .schema import ARRAYS, root_version
from .zarr_store import ZarrReader

ROOT_FILE = "motion_mae_pack.json"
PACK_DIR = "packs"
PACK_SUFFIX = ".mmpack"
PACK_VERSION = 1
FOOTER_MAGIC = b"MMPACK01"
FOOTER_TAIL = struct.Struct("<Q8s")  # footer length, magic: the last 16 bytes of a pack file
ROW_KEYS = ("file", "offset", "length", "dir_length", "crc32")  # a video's row, root and footer


def is_packed_root(path: str) -> bool:
    fs, root = fsspec.core.url_to_fs(os.fspath(path))
    return fs.exists(f"{root.rstrip('/')}/{ROOT_FILE}")


def is_local(fs) -> bool:
    return "file" in fs.protocol or "local" in fs.protocol


class PackFile:
    """Ranged reads of one pack file: os.pread locally (no shared file offset, so a forked
    DataLoader worker may use an inherited handle), one ranged GET per read on fsspec stores."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path
        self._local = is_local(fs)
        self._fd: int | None = None
        self._pid = 0

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset`, fewer only where the file ends."""
        if length <= 0:
            return b""
        if not self._local:
            return self.fs.cat_file(self.path, start=offset, end=offset + length)
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        parts, done = [], 0
        while done < length:
            part = os.pread(self._fd, length - done, offset + done)
            if not part:
                break
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def read_footer(pack: PackFile) -> dict:
    """The footer of a finished pack file: {"videos": {id: row}} (PackDamaged if absent)."""
    size = pack.size()
    if size < FOOTER_TAIL.size:
        raise PackDamaged(f"{pack.path}: {size} bytes, no footer (an unfinished pack)")
    length, magic = FOOTER_TAIL.unpack(pack.read(size - FOOTER_TAIL.size, FOOTER_TAIL.size))
    if magic != FOOTER_MAGIC or length > size - FOOTER_TAIL.size:
        raise PackDamaged(f"{pack.path}: no pack footer at its end (an unfinished or damaged pack)")
    data = pack.read(size - FOOTER_TAIL.size - length, length)
    try:
        return json.loads(data)
    except ValueError as e:
        raise PackDamaged(f"{pack.path}: the footer does not parse: {e}") from e


def _is_chunk_key(key: str) -> bool:
    # zarr v3's default chunk key encoding: <array>/c/<i>/<j>/...
    parts = key.split("/")
    return len(parts) >= 3 and parts[1] == "c"


class PackedVideoStore(Store):
    """One video's zarr group, read-only, from its byte ranges in a pack file.

    `directory` maps each key (relative to the video group: "zarr.json", "mv/zarr.json",
    "mv/c/0/0/0/0") to (offset in the file, length); `cached` holds keys already read (the
    metadata range). A chunk key the directory lacks, or a range the file no longer holds,
    raises: zarr would otherwise return fill values (zeros) for it."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(self, pack: PackFile, directory: dict[str, tuple[int, int]], cached: dict[str, bytes],
                 video_id: str):
        super().__init__(read_only=True)
        self._pack, self._dir, self._cached, self._video = pack, directory, cached, video_id

    def __eq__(self, other: object) -> bool:
        return other is self

    def cached(self, key: str) -> bytes | None:
        """The metadata bytes of `key` read at open, if they are still held (None otherwise)."""
        return self._cached.get(key)

    def drop_cached(self) -> None:
        """Forget the metadata bytes read at open (later reads of them go to the file)."""
        self._cached = {}

    def _read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        entry = self._dir.get(key)
        if entry is None:
            if _is_chunk_key(key):
                array = key.split("/", 1)[0]
                raise MissingChunkError(f"video {self._video!r} array {array!r}: chunk {key} is not in "
                                        f"{self._pack.path}")
            return None
        offset, length = entry
        if byte_range is None:
            start, stop = 0, length
        elif isinstance(byte_range, RangeByteRequest):
            start, stop = byte_range.start, min(byte_range.end, length)
        elif isinstance(byte_range, OffsetByteRequest):
            start, stop = byte_range.offset, length
        elif isinstance(byte_range, SuffixByteRequest):
            start, stop = max(0, length - byte_range.suffix), length
        else:
            raise TypeError(f"unexpected byte range {byte_range!r}")
        if key in self._cached:
            return self._cached[key][start:stop]
        data = self._pack.read(offset + start, stop - start)
        if len(data) != stop - start:
            raise PackDamaged(f"video {self._video!r} key {key}: {self._pack.path} ends {stop - start - len(data)} "
                              f"bytes short (a truncated pack file)")
        return data

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        data = self._read(key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return key in self._dir

    async def set(self, key: str, value: Buffer) -> None:
        raise PermissionError("a packed shard set is read-only")

    async def delete(self, key: str) -> None:
        raise PermissionError("a packed shard set is read-only")

    async def list(self) -> AsyncIterator[str]:
        for key in self._dir:
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._dir:
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        base = prefix + "/" if prefix else ""
        for name in sorted({k[len(base):].split("/", 1)[0] for k in self._dir if k.startswith(base)}):
            yield name


def unpack_metadata(blob: bytes, row: dict) -> tuple[dict[str, tuple[int, int]], dict[str, bytes]]:
    """(directory, cached keys) from a video's metadata range as read from its pack file."""
    if len(blob) != row["length"]:
        raise PackDamaged(f"the metadata range ends {row['length'] - len(blob)} bytes short (a truncated pack file)")
    if zlib.crc32(blob) != row["crc32"]:
        raise PackDamaged("crc32 mismatch in the video's metadata range (flipped bytes)")
    directory = {k: (int(o), int(n)) for k, (o, n) in json.loads(blob[len(blob) - row["dir_length"]:]).items()}
    start = row["offset"]
    cached = {k: blob[o - start:o - start + n] for k, (o, n) in directory.items()
              if start <= o and o + n <= start + len(blob) - row["dir_length"]}
    return directory, cached


class PackedReader:
    """The reader backend (shards.reader.ShardSet) of a packed set."""

    format = "packed"

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.fs, root = fsspec.core.url_to_fs(self.path)
        self.root = root.rstrip("/")
        attrs = parse_json(self.fs.cat_file(f"{self.root}/{ROOT_FILE}"), self.path, f"the root {ROOT_FILE}")
        root_version(attrs, self.path)
        packed = attrs.pop("packed", None) or {}
        if packed.get("version") != PACK_VERSION:
            raise ValueError(f"{self.path}: pack layout version {packed.get('version')!r}; this motion-mae "
                             f"reads {PACK_VERSION}. Re-pack the set with python -m shards pack.")
        self.index: dict = attrs.pop("index", None) or {"videos": []}
        self._failures: dict = attrs.pop("failures", None) or {}
        self.attrs = attrs
        self.packed = packed
        # columns and a position per id, rows built on demand: K400's 240k rows as dicts took
        # 0.9 s more per open (and per DataLoader worker) than the 0.3 s JSON parse of the root
        self._cols = packed["videos"]
        self._pos = {vid: i for i, vid in enumerate(self._cols["id"])}
        self._files = packed["files"]
        self._packs: dict[int, PackFile] = {}
        self._ids = list(self.index["videos"])

    def _pack(self, number: int) -> PackFile:
        if number not in self._packs:
            self._packs[number] = PackFile(self.fs, f"{self.root}/{PACK_DIR}/{self._files[number]}")
        return self._packs[number]

    def ids(self) -> list[str]:
        return self._ids

    def all_ids(self) -> list[str]:
        return sorted(self._pos)

    def _row(self, video_id: str) -> dict:
        i = self._pos[video_id]
        return {k: self._cols[k][i] for k in ROW_KEYS}

    def store(self, video_id: str) -> PackedVideoStore:
        """The video's zarr store: one read of its metadata range (PackDamaged if damaged)."""
        row = self._row(video_id)
        pack = self._pack(row["file"])
        try:
            directory, cached = unpack_metadata(pack.read(row["offset"], row["length"]), row)
        except PackDamaged as e:
            raise PackDamaged(f"{pack.path}: video {video_id!r}: {e}") from None
        return PackedVideoStore(pack, directory, cached, video_id)

    def video(self, video_id: str, fresh: bool = False) -> tuple[dict, dict]:
        if video_id not in self._pos:
            raise KeyError(video_id)
        store = self.store(video_id)
        doc = store.cached("zarr.json")
        opened = open_video(doc, store, "") if doc is not None and not fresh else None
        if opened is not None:  # as ZarrReader.video: arrays built when first read (`lazy_group`)
            store.drop_cached()
            return opened
        group = zarr.open_group(store, mode="r", use_consolidated=False if fresh else None)
        attrs, arrays = dict(group.attrs), dict(group.arrays())
        # zarr has parsed the metadata: the loader keeps every video it opened (one per
        # worker per video), so the raw documents would cost ~30 kB each for nothing
        store.drop_cached()
        return attrs, arrays

    @staticmethod
    def read(raw, sel):
        """As `ZarrReader.read`: a local pack's shard bytes are read straight from the pack file
        (`shard_file`), anything else through zarr."""
        return ZarrReader.read(raw, sel)

    def failures(self) -> list[dict]:
        return [{**rec, "id": vid} for vid, rec in sorted(self._failures.items())]

    def _sizes(self, video_id: str) -> tuple[dict[str, tuple[int, int]], int]:
        row = self._row(video_id)
        directory, _ = unpack_metadata(self._pack(row["file"]).read(row["offset"], row["length"]), row)
        return directory, row["dir_length"]

    def video_bytes(self, video_id: str) -> int:
        """Bytes of the video's keys in its pack file plus its directory (what the unpacked
        zarr video took, plus the directory)."""
        directory, dir_length = self._sizes(video_id)
        return sum(n for _, n in directory.values()) + dir_length

    def nbytes(self, video_id: str) -> dict[str, int]:
        """Bytes per array (shard and zarr.json, as the zarr reader counts them)."""
        directory, _ = self._sizes(video_id)
        out = dict.fromkeys(ARRAYS, 0)
        for key, (_, n) in directory.items():
            name = key.split("/", 1)[0]
            if name in out and "/" in key:
                out[name] += n
        return out

    def close(self) -> None:
        for pack in self._packs.values():
            pack.close()
        self._packs = {}
