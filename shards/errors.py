"""The errors the shard layer raises on purpose, in one module that imports nothing.

A `CliError` is an expected failure whose message is the whole story (what is wrong, what to
do): an entry point prints it as one line and exits with its `exit_code` (shards/cli.py,
`run_main`); anything else escaping a command is a bug. The second base of an error (ValueError,
OSError, FileNotFoundError) is what callers that do not know these types catch it as.
"""
from __future__ import annotations


class CliError(Exception):
    """The command cannot run as given; the message says what to do (exit 1)."""

    exit_code = 1


class SchemaVersionError(CliError, ValueError):
    """A shard set written by a schema this code does not know."""


class DamagedMetadata(CliError, ValueError):
    """A JSON document of the shard set that does not parse (ValueError for callers that
    already treat a root caught mid-write as one)."""


class ShardReadError(CliError, OSError):
    """A stored array that cannot be read back as written (missing, truncated or damaged
    chunk, checksum mismatch, a video file that no longer opens); the message names the
    shard set, the video and the array."""


class SourceMissing(ShardReadError, FileNotFoundError):
    """The source video of a `--frames none` set is not where the set (or source_root) says."""


class MissingChunkError(FileNotFoundError):
    """A chunk (shard file) of a stored array is absent from the store."""


class PackDamaged(OSError):
    """Bytes of a pack file that are not what the root recorded (truncated file, flipped
    bytes in a video's metadata range, a footer that does not parse)."""


class SetLocked(CliError):
    """Another run holds the shard set's writer lock."""


class ForeignFiles(CliError):
    """The directory of a shard set holds files the set does not own."""


class ForeignDestination(CliError):
    """The DST of `python -m shards pack` holds files that are not a packed set's."""
