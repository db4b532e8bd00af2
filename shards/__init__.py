"""Shards: the one on-disk format between preprocess (writer) and train (reader).

See docs/shards.md for the layout and the meaning of every array.
"""
from .reader import LazyArray, ShardSet, Video, open_shards
from .schema import ARRAYS, SCHEMA_VERSION, SchemaVersionError
from .writer import ShardWriter, open_writer

__all__ = ["open_shards", "open_writer", "ShardSet", "ShardWriter", "Video", "LazyArray",
           "ARRAYS", "SCHEMA_VERSION", "SchemaVersionError"]
