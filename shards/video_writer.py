"""One video written while it is computed: rows appended per array, committed at the end.

    video = writer.begin_video(video_id, {"height": H, "width": W, "traj_len": L, "flow_stride": s})
    video.append("frames", block)      # any number of rows, in time order, per array
    ...
    nbytes = video.commit(attrs)       # the full video attrs; num_frames is the true count

The schema-2 guarantees of `ShardWriter.write_video` hold: every value is validated and
quantized as there (`prepare` per block), every chunk is written, chunks carry checksums, and
the commit attr is written last, so an interrupted video is never listed and a resumed run
redoes it. The frame count comes from `commit` (containers often state it wrongly).

Memory stays bounded by `shard_frames`: a video of at most that many frames is held (stored,
quantized) until `commit` and written in one go with exactly the layout `write_video` gives;
a longer one is written a whole shard of `shard_frames` frames at a time as rows arrive (a
whole shard, so zarr never reads back and rewrites a shard file), in arrays whose length
grows with each write. JPEG-transform arrays (frames) are padded to the longest row of the
whole video, known only at the end: their rows wait in a local temporary file and are
written at `commit`, a shard at a time.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np

from .schema import ARRAYS, SCHEMA_VERSION, dims_from_attrs, encode, stored_arrays

# Frames per shard file of a long video; a multiple of every ArraySpec.frame_chunk, so that a
# shard is a whole number of chunks. 1024 frames (34 s at 30 fps) keep every K400-length video
# in `write_video`'s layout (one shard per array), and buffer ~65 MB of quantized arrays at 256p.
STREAM_SHARD_FRAMES = 1024


class JpegSpool:
    """Variable-length rows (one JPEG each) in an unlinked local temporary file."""

    def __init__(self):
        self._file = tempfile.TemporaryFile()
        self.lengths: list[int] = []

    def add(self, padded: np.ndarray) -> None:
        """(n, N) zero-padded rows; a JPEG ends with its 0xFFD9 marker, so the zeros after
        the last non-zero byte are padding."""
        for row in padded:
            nonzero = np.flatnonzero(row)
            blob = row[:nonzero[-1] + 1] if len(nonzero) else row[:0]
            self._file.write(blob.tobytes())
            self.lengths.append(len(blob))

    def __len__(self) -> int:
        return len(self.lengths)

    def blocks(self, size: int):
        """(rows, N) uint8 blocks of `size` rows padded to the longest row of all."""
        width = max(self.lengths, default=0)
        self._file.seek(0)
        for start in range(0, len(self.lengths), size):
            lengths = self.lengths[start:start + size]
            out = np.zeros((len(lengths), width), np.uint8)
            for row, n in zip(out, lengths):
                row[:n] = np.frombuffer(self._file.read(n), np.uint8)
            yield out

    def close(self) -> None:
        self._file.close()


class VideoWriter:
    """Appends and commits one video through a storage backend (see the module docstring)."""

    def __init__(self, backend, video_id: str, check_attrs, shard_frames: int = STREAM_SHARD_FRAMES):
        chunks = [s.frame_chunk for s in ARRAYS.values()]
        if shard_frames < 1 or any(shard_frames % c for c in chunks):
            raise ValueError(f"shard_frames must be a multiple of every frame_chunk {sorted(set(chunks))}, "
                             f"got {shard_frames}")
        self._backend, self.video_id, self.shard_frames = backend, video_id, shard_frames
        self._check_attrs = check_attrs  # shards.writer.check_attrs: JSON types, required keys
        self._dims: dict | None = None
        self._begin_attrs: dict = {}
        self._names: list[str] = list(ARRAYS)  # what this video stores (start: frames_storage)
        self._pending: dict[str, list[np.ndarray]] = {n: [] for n in ARRAYS}
        self._pending_rows = dict.fromkeys(ARRAYS, 0)
        self._written = dict.fromkeys(ARRAYS, 0)
        self._spools = {n: JpegSpool() for n, s in ARRAYS.items() if s.transform == "jpeg"}
        self.streaming = False  # True once a shard was written before the commit
        self.seconds = 0.0      # spent validating, quantizing and writing
        self._closed = False

    def start(self, attrs: dict) -> None:
        """The attrs that fix every array's shape but its length: height, width, traj_len, flow_stride."""
        self._dims = dims_from_attrs({**attrs, "num_frames": 0})
        self._begin_attrs = dict(attrs)
        self._names = stored_arrays(attrs)  # frames_storage "none": no frames array

    def append(self, name: str, values: np.ndarray) -> None:
        """Rows t0 .. t0 + n - 1 of array `name` (reader dtype and units), after those appended before."""
        tic = time.perf_counter()
        if self._dims is None:
            raise RuntimeError("VideoWriter.start(attrs) first: the arrays' shapes depend on them")
        if self._closed:
            raise RuntimeError(f"video {self.video_id!r} is already committed or aborted")
        spec = ARRAYS[name] if name in ARRAYS else None
        if spec is None:
            raise ValueError(f"{name}: not an array of the schema")
        if name not in self._names:
            raise ValueError(f"{name}: not stored for this video (frames_storage "
                             f"{self._begin_attrs.get('frames_storage', 'jpeg')!r})")
        values = np.asarray(values)
        want = spec.shape(self._dims)[1:]
        if values.shape[1:] != want:
            raise ValueError(f"{name}: rows of shape {values.shape[1:]}, schema {spec.dims} with these "
                             f"attrs gives {want}")
        check_values(name, spec, values)
        if len(values):
            stored = np.ascontiguousarray(encode(name, values))
            if name in self._spools:
                self._spools[name].add(stored)
            else:
                self._pending[name].append(stored)
                self._pending_rows[name] += len(stored)
        if len(self._spools.get(name, ())) > self.shard_frames:
            self._go_streaming()
        while self._pending_rows[name] > self.shard_frames:
            self._go_streaming()
            self._write(name, self._take(name, self.shard_frames))
        self.seconds += time.perf_counter() - tic

    def commit(self, attrs: dict) -> int:
        """Check every array's length against attrs["num_frames"], write what is left, then
        the attrs and the commit marker. Returns the bytes the video takes in the store."""
        tic = time.perf_counter()
        attrs = self._check_attrs(attrs)
        dims = dims_from_attrs(attrs)
        if stored_arrays(attrs) != self._names:
            raise ValueError(f"frames_storage {attrs.get('frames_storage', 'jpeg')!r} at commit, "
                             f"{self._begin_attrs.get('frames_storage', 'jpeg')!r} at start")
        for name in self._names:
            spec = ARRAYS[name]
            rows = self._written[name] + self._pending_rows[name] + len(self._spools.get(name, ()))
            want = spec.shape(dims)
            if rows != want[0] or want[1:] != spec.shape(self._dims)[1:]:
                raise ValueError(f"{name}: {rows} rows of shape {spec.shape(self._dims)[1:]} appended, "
                                 f"schema {spec.dims} with these attrs gives {want}")
        try:
            if not self.streaming:  # short video: one write in the layout of write_video
                stored = {n: next(self._spools[n].blocks(max(1, len(self._spools[n]))), np.zeros((0, 0), np.uint8))
                          if n in self._spools else self._take(n, self._pending_rows[n]) for n in self._names}
                nbytes = self._backend.write_video(self.video_id, stored, attrs)
            else:
                for name in self._names:
                    if name in self._spools:
                        for block in self._spools[name].blocks(self.shard_frames):
                            self._write(name, block)
                    elif self._pending_rows[name] or not self._written[name]:
                        self._write(name, self._take(name, self._pending_rows[name]))
                nbytes = self._backend.commit_video(self.video_id, attrs)
        finally:
            self._close()
        self.seconds += time.perf_counter() - tic
        return nbytes

    def abort(self) -> None:
        """Drop what was written (an uncommitted video is never listed anyway)."""
        if self._closed:
            return
        self._close()
        if self.streaming:
            self._backend.abort_video(self.video_id)

    def _close(self) -> None:
        self._closed = True
        for spool in self._spools.values():
            spool.close()
        self._pending = {n: [] for n in ARRAYS}

    def _go_streaming(self) -> None:
        if not self.streaming:
            self._backend.begin_video(self.video_id, {**self._begin_attrs, "schema_version": SCHEMA_VERSION})
            self.streaming = True

    def _take(self, name: str, rows: int) -> np.ndarray:
        """The first `rows` pending rows of `name` as one stored array."""
        blocks, taken, out = self._pending[name], 0, []
        while taken < rows:
            block = blocks.pop(0)
            if taken + len(block) > rows:
                blocks.insert(0, block[rows - taken:])
                block = block[:rows - taken]
            out.append(block)
            taken += len(block)
        self._pending_rows[name] -= rows
        if not out:
            spec = ARRAYS[name]
            return np.zeros((0, *spec.shape(self._dims)[1:]), spec.stored_dtype)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _write(self, name: str, stored: np.ndarray) -> None:
        self._backend.write_rows(self.video_id, name, self._written[name], stored, self.shard_frames)
        self._written[name] += len(stored)


def check_values(name: str, spec, values: np.ndarray) -> None:
    """Dtypes the schema needs (bool, uint8) and finite floats; ValueError naming the array."""
    if spec.dtype == "bool" and values.dtype != np.bool_:
        raise ValueError(f"{name}: dtype {values.dtype}, expected bool")
    if spec.dtype == "uint8" and values.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {values.dtype}, expected uint8")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(f"{name}: {np.count_nonzero(~np.isfinite(values))} non-finite values")


def shard_layout(frame_chunk: int, shard_frames: int, rest: tuple[int, ...]) -> tuple[tuple, tuple]:
    """(chunk shape, shard shape) of a streamed array: chunks as `write_video`'s, shards of
    `shard_frames` frames (a whole number of chunks)."""
    rest = tuple(max(1, s) for s in rest)
    return (frame_chunk,) + rest, (shard_frames,) + rest
