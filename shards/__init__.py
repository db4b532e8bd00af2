"""Shards: the one on-disk format between preprocess (writer) and train (reader).

See docs/shards.md for the layout and the meaning of every array.
"""
import fsspec as _fsspec

# A shard set is listed while other processes write it (resume, finalize, the manifest):
# fsspec's listing cache on object stores would answer from a listing made before those
# writes (on S3 a finished extraction finalized an empty index). Off, unless configured.
for _protocol in ("s3", "s3a", "gs", "gcs", "abfs", "az"):
    _fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)

from .errors import SchemaVersionError, ShardReadError
from .reader import LazyArray, ShardSet, Video, open_shards
from .ref import ShardRef
from .schema import ARRAYS, SCHEMA_VERSION
from .writer import ShardWriter, open_writer

__all__ = ["open_shards", "open_writer", "ShardRef", "ShardSet", "ShardWriter", "Video", "LazyArray",
           "ARRAYS", "SCHEMA_VERSION", "SchemaVersionError", "ShardReadError"]
