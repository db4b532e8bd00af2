"""Which shard set to read, and where its source videos are: one value a program passes around.

A set extracted with `--frames none` decodes its frames from the source videos; when they moved
since extraction, `source_root` is the folder they are under now. That location belongs with the
set, so it travels with the set's path instead of beside it through every reader:

    ref = ShardRef("out/shards", source_root="/data/k400")   # built once, from the config
    with open_shards(ref) as ds: ...                          # every reader opens it the same way
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardRef:
    """A shard set's path (directory or fsspec URL) and, for a `--frames none` set whose videos
    moved, the folder they are under now (None: where extraction found them)."""

    path: str
    source_root: str | None = None

    def __post_init__(self):  # Path objects as str; a config's "" (as extracted) as None
        object.__setattr__(self, "path", os.fspath(self.path))
        object.__setattr__(self, "source_root", os.fspath(self.source_root) if self.source_root else None)

    @classmethod
    def of(cls, shards) -> "ShardRef":
        """`shards` as a reference: a ShardRef as it is, a path with the sources where extraction found them."""
        return shards if isinstance(shards, ShardRef) else cls(shards)

    def __str__(self) -> str:
        return self.path
