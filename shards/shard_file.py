"""Frames of a local zarr shard read straight from its file: one read of the byte range,
then each inner chunk decoded (Blosc) and checked (crc32c) in this thread.

Why: zarr 3 serves a selection through its asyncio pipeline, one task and one ranged file
read per inner chunk, run on its event-loop thread. For the 62 one-frame JPEG chunks a
clip's trajectories visit that cost ~50 ms on a busy 2-core machine (~0.8 ms a chunk);
reading the byte range once and decoding here cost ~1 ms, the same bytes
(tests/shards/test_shard_file.py). The layout read is zarr's sharding codec as this
project writes it (`zarr_store.codecs_for`, `video_writer.shard_layout`): shards and inner
chunks split the time axis only, the index (offset, nbytes) uint64 little-endian per inner
chunk at the end of the file followed by its crc32c, each chunk Bytes -> Blosc -> crc32c.
The same bytes are read from a local packed set (`shards pack` copies each shard file byte
for byte into a pack file: `PackedVideoStore` knows its offset and length there).
Anything else (a remote store, another codec chain, an absent file or empty chunk, which
zarr reports or fills its own way) returns None, and the caller reads through zarr
(`read_selection` does both: what the zarr and packed readers read frames with).
"""
from __future__ import annotations

import os

import google_crc32c
import numpy as np
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.storage import LocalStore

from .pack_file import PackedVideoStore

_EMPTY = np.uint64(2 ** 64 - 1)  # an index entry of a chunk that was never written


class _ShardFile:
    """Ranged reads of one shard: its local file, opened once (`with`), or its key in a local
    pack, read by the pack's own store (`PackedVideoStore._read`: offsets, bounds, short reads)."""

    def __init__(self, path: str | None = None, store=None, key: str = ""):
        self.path, self.store, self.key, self._f = path, store, key, None

    def __enter__(self) -> "_ShardFile":
        if self.path is not None:
            self._f = open(self.path, "rb")
        return self

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()

    def tail(self, n: int) -> bytes:
        """The shard's last n bytes (its index and the index's checksum)."""
        if self.store is not None:
            return self.store._read(self.key, SuffixByteRequest(n))
        self._f.seek(-n, os.SEEK_END)
        return self._f.read(n)

    def range(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the shard."""
        if self.store is not None:
            return self.store._read(self.key, RangeByteRequest(start, stop))
        self._f.seek(start)
        return self._f.read(stop - start)


def _local_pack(store):
    """The PackedVideoStore of a local pack file, else None."""
    return store if isinstance(store, PackedVideoStore) and store._pack._local else None


def shard_source(raw, folder: str | None, k: int) -> _ShardFile | None:
    """Where shard k of `raw` lies: its local file (absent: FileNotFoundError when opened), its
    key in a local pack, or None (not in the pack)."""
    tail = ("c", str(k), *("0" * (len(raw.shape) - 1)))
    if folder is not None:
        return _ShardFile(path=os.path.join(folder, *tail))
    store = _local_pack(raw.store_path.store)
    key = "/".join((raw.store_path.path, *tail))
    return _ShardFile(store=store, key=key) if key in store._dir else None


def layout(raw) -> tuple[str | None, int, int, np.dtype] | None:
    """(array directory, None for a local pack; frames per shard, frames per inner chunk,
    little-endian dtype) of a zarr array this module can read, else None."""
    codecs = raw.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    shard = codecs[0]
    inner = shard.codecs
    if (shard.index_location != ShardingCodecIndexLocation.end or len(inner) != 3
            or not isinstance(inner[0], BytesCodec) or not isinstance(inner[1], BloscCodec)
            or not isinstance(inner[2], Crc32cCodec)
            or [type(c) for c in shard.index_codecs] != [BytesCodec, Crc32cCodec]):
        return None
    outer = tuple(raw.metadata.chunk_grid.chunk_shape)
    if tuple(outer[1:]) != tuple(raw.shape[1:]) or tuple(shard.chunk_shape[1:]) != tuple(raw.shape[1:]):
        return None
    if getattr(raw.metadata.chunk_key_encoding, "separator", None) != "/":
        return None
    store = raw.store_path.store
    store = getattr(store, "_store", store)  # ChunkCheckingStore wraps the LocalStore
    if isinstance(store, LocalStore):
        folder = os.path.join(str(store.root), raw.store_path.path)
    elif _local_pack(store) is not None:
        folder = None
    else:
        return None
    return folder, int(outer[0]), int(shard.chunk_shape[0]), np.dtype(raw.dtype).newbyteorder("<")


def read_frames(raw, frames: np.ndarray) -> np.ndarray | None:
    """raw[frames] (sorted unique ints in range) read from the shard files: the byte span of
    each shard's needed chunks in one read, only those chunks decoded. None where `layout`
    does not apply or a file or chunk is absent (zarr then decides what that means). Raises
    ValueError on a checksum mismatch, as zarr does."""
    spec = layout(raw)
    frames = np.asarray(frames, np.int64)
    if spec is None or len(frames) == 0:
        return None
    folder, per_shard, per_chunk, dtype = spec
    chunks_per_shard = -(-per_shard // per_chunk)
    frame_shape = tuple(raw.shape[1:])
    out = np.empty((len(frames),) + frame_shape, dtype)
    tail_bytes = 16 * chunks_per_shard + 4
    shard_of = frames // per_shard
    for k in np.unique(shard_of).tolist():
        # frames are sorted: each shard's, and each chunk's, are a contiguous run of `out`
        p0, p1 = np.searchsorted(shard_of, [k, k + 1])
        local = frames[p0:p1] - k * per_shard
        chunk_of = local // per_chunk
        needed = np.unique(chunk_of)
        runs = np.searchsorted(chunk_of, np.append(needed, needed[-1] + 1)).tolist()
        source = shard_source(raw, folder, k)
        if source is None:
            return None
        where = folder or f"{raw.store_path.path} in {source.store._pack.path}"
        try:
            with source:
                tail = source.tail(tail_bytes)
                if len(tail) != tail_bytes or google_crc32c.value(tail[:-4]) != int.from_bytes(tail[-4:], "little"):
                    raise ValueError(f"{where} shard {k}: the shard index fails its checksum")
                index = np.frombuffer(tail[:-4], "<u8").reshape(-1, 2)[needed]
                if (index == _EMPTY).any():
                    return None
                first, end = int(index[:, 0].min()), int((index[:, 0] + index[:, 1]).max())
                buf = np.frombuffer(source.range(first, end), np.uint8)
        except FileNotFoundError:
            return None
        if len(buf) != end - first:
            raise ValueError(f"{where} shard {k}: {end - first - len(buf)} bytes short (a truncated file)")
        for j, (c, (offset, nbytes)) in enumerate(zip(needed.tolist(), index.tolist())):
            body = buf[offset - first:offset - first + nbytes - 4]
            stored = int(buf[offset - first + nbytes - 4:offset - first + nbytes].view("<u4")[0])
            if google_crc32c.value(body) != stored:
                raise ValueError(f"{where} shard {k} chunk {c}: stored and computed checksum do not match")
            values = np.frombuffer(blosc.decompress(body), dtype).reshape((-1,) + frame_shape)
            a, b = runs[j], runs[j + 1]
            out[p0 + a:p0 + b] = values[0] if per_chunk == 1 else values[local[a:b] - c * per_chunk]
    return out if dtype.isnative else out.astype(dtype.newbyteorder("="))


def read_selection(raw, sel) -> np.ndarray:
    """Stored values of frames `sel` (a positive-step slice or sorted unique ints) of a zarr
    array: from its local shard files or pack by `read_frames` where it can, else through zarr."""
    frames = np.arange(*sel.indices(raw.shape[0])) if isinstance(sel, slice) else np.asarray(sel)
    fast = read_frames(raw, frames) if len(frames) else None
    if fast is not None:
        return fast
    if isinstance(sel, slice):
        return raw[sel]
    return raw.get_orthogonal_selection((sel,))
