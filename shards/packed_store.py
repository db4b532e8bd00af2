"""Packed shard sets: thousands of videos per file, read through zarr exactly as unpacked.

A zarr set stores one group per video, 19 files each (a zarr.json per group and per array, one
shard file per array): K400 would be ~4.6 million files, and each is an object on S3.
`python -m shards pack` (shards/pack.py) concatenates the stored keys of many videos into
one file, byte for byte, so chunks keep their crc32c and the shard index its own; this
module reads such a set, its pack files' bytes served back to zarr as a read-only store per
video (shards/pack_file.py).

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

import os

import fsspec
import zarr

from .errors import PackDamaged
from .lazy_group import open_video
from .metadata import parse_json
from .pack_file import PACK_VERSION, ROW_KEYS, PackedVideoStore, PackFile, unpack_metadata
from .schema import ARRAYS, root_version
from .shard_file import read_selection

ROOT_FILE = "motion_mae_pack.json"
PACK_DIR = "packs"
PACK_SUFFIX = ".mmpack"


def is_packed_root(path: str) -> bool:
    fs, root = fsspec.core.url_to_fs(os.fspath(path))
    return fs.exists(f"{root.rstrip('/')}/{ROOT_FILE}")


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
        return read_selection(raw, sel)

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
