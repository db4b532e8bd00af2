"""One pack file of a packed set (layout: shards/packed_store.py): ranged reads of its
bytes, its footer, and each video's zarr store served from its byte ranges.

Kept apart from the packed set's reader backend because shards/shard_file.py reads a local
pack's shard bytes through `PackedVideoStore`, and that backend reads through shard_file.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from typing import AsyncIterator, Iterable

from zarr.abc.store import (ByteRequest, OffsetByteRequest, RangeByteRequest, Store,
                            SuffixByteRequest)
from zarr.core.buffer import Buffer, BufferPrototype

from .errors import MissingChunkError, PackDamaged

PACK_VERSION = 1
FOOTER_MAGIC = b"MMPACK01"
FOOTER_TAIL = struct.Struct("<Q8s")  # footer length, magic: the last 16 bytes of a pack file
ROW_KEYS = ("file", "offset", "length", "dir_length", "crc32")  # a video's row, root and footer


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
