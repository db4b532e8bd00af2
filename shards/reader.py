"""Read a shard set: lazy, dequantized arrays that fetch only the frames asked for.

    with open_shards("out/shards") as ds:          # zarr or hdf5, detected
        v = ds[ds.ids()[0]]
        clip = v["frames"][t:t + 16]                # (16, H, W, 3) uint8, reads 16 chunks
        traj = v["traj"][t:t + 16]                  # float32 px, tracked on the stored flow
        hog = v["hog"][t:t + 16]                    # float32, of the stored frames' luma

traj, traj_valid and hog are derived when read (schema 3, shards/derived.py); a schema-2 set's
stored ones are read as stored. A set extracted with `--frames none` stores no frames:
`v["frames"]` decodes them from the source video (shards/source_frames.py);
`open_shards(path, source_root=DIR)`, or `open_shards(ShardRef(path, DIR))`, finds the sources
under DIR when they moved.
"""
from __future__ import annotations

import operator
import os
from collections import OrderedDict

import cv2
import numpy as np

from .derived import cell_hog, cell_hog_box, decode_gray, track
from .errors import ShardReadError, SourceMissing
from .hdf5_store import Hdf5Reader, is_hdf5_root
from .index import INDEX_ATTRS
from .packed_store import PackedReader, is_packed_root
from .ref import ShardRef
from .schema import ARRAYS, COMMIT_ATTR, arrays_for, check_version, decode, dims_from_attrs, frames_storage
from .source_frames import SourceFrames
from .tracks import positions
from .zarr_store import ZarrReader, is_zarr_root


def detect_format(path: str) -> str:
    if is_zarr_root(path):
        return "zarr"
    if is_packed_root(path):  # before hdf5: its test lists videos/*.h5, a listing on S3
        return "packed"
    if is_hdf5_root(path):
        return "hdf5"
    raise FileNotFoundError(
        f"{path}: not a shard set (no zarr.json at the root for zarr, no motion_mae.json or "
        f"videos/*.h5 for hdf5, no motion_mae_pack.json for a packed set). Write one with shards.open_writer or preprocess/extract.py.")


def open_shards(path, source_root=None) -> "ShardSet":
    """Open a shard set (directory or fsspec URL, or a `ShardRef`) for reading; checks the schema version.

    source_root: where the source videos are now, for a set extracted with `--frames none`
    (its frames are decoded from them); None: where extraction found them (attrs `source`),
    or the `ShardRef`'s own.
    """
    if isinstance(path, ShardRef):
        if source_root is not None:
            raise TypeError(f"open_shards({path!r}, source_root={source_root!r}): the reference carries its source root")
        path, source_root = path.path, path.source_root
    path = os.fspath(path)
    fmt = detect_format(path)
    backend = {"zarr": ZarrReader, "packed": PackedReader, "hdf5": Hdf5Reader}[fmt]
    return ShardSet(backend(path), source_root)


class ShardSet:
    """The committed videos of one shard set, by id."""

    def __init__(self, backend, source_root: str | None = None):
        self._backend = backend
        self._source_index: OrderedDict = OrderedDict()  # source path -> FrameIndex, shared by videos
        self.path = backend.path
        self.format = backend.format
        self.ref = ShardRef(self.path, source_root)  # how a worker process reopens it
        self.attrs: dict = backend.attrs
        self._id_set = set(backend.ids())
        self._meta: dict[str, dict] | None = None

    def ids(self, split: str | None = None) -> list[str]:
        """Sorted ids of committed videos (interrupted writes are not listed), optionally
        only those of one split ("train", "val", ...: the dataset adapter's names)."""
        if split is None:
            return list(self._backend.ids())
        return [vid for vid, m in self.meta().items() if m["split"] == split]

    def labels(self, split: str | None = None) -> dict[str, int | None]:
        """id -> class id (None when unlabelled) of committed videos, optionally of one split."""
        return {vid: m["label"] for vid, m in self.meta().items() if split is None or m["split"] == split}

    def meta(self) -> dict[str, dict]:
        """id -> {label, split, num_frames} of every committed video, in id order.

        Read from the corpus index that `finalize` writes into the root attrs (one read for
        the whole corpus); videos the index lacks (a shard set not finalized, or written by
        an older motion-mae) fall back to their own attrs, one read each."""
        if self._meta is None:
            index = getattr(self._backend, "index", None) or {}
            known = {}
            if all(k in index for k in ("videos", *INDEX_ATTRS)):
                known = {vid: {k: index[k][i] for k in INDEX_ATTRS} for i, vid in enumerate(index["videos"])}
            meta = {}
            for vid in self._backend.ids():
                if vid not in known:
                    attrs = self._backend.video(vid)[0]
                    known[vid] = {k: attrs.get(k) for k in INDEX_ATTRS}
                meta[vid] = known[vid]
            self._meta = meta
        return self._meta

    def __len__(self) -> int:
        return len(self._id_set)

    def __contains__(self, video_id) -> bool:
        return video_id in self._id_set

    def __iter__(self):
        return iter(self.ids())

    def __getitem__(self, video_id: str) -> "Video":
        if video_id not in self._id_set:
            ids = self._backend.ids()
            raise KeyError(f"no committed video {video_id!r} in {self.path} ({len(ids)} videos, "
                           f"e.g. {ids[:5]}); see ds.failures() for videos that failed")
        return self.video(video_id)

    def video(self, video_id: str, require_complete: bool = True, fresh: bool = False) -> "Video":
        """A video by id. For verify: require_complete=False also opens interrupted writes,
        fresh=True reads every node instead of trusting consolidated metadata."""
        try:
            attrs, raws = self._backend.video(video_id, fresh=fresh)
        except KeyError:
            raise
        except Exception as e:  # a truncated HDF5 file, a garbage zarr.json: name the video
            raise ShardReadError(f"{self.path}: video {video_id!r}: cannot open: {type(e).__name__}: {str(e).rstrip('.')}. "
                                 f"Re-extract it: python -m shards verify {self.path} --repair (every damaged video).") from e
        if require_complete and attrs.get(COMMIT_ATTR) is not True:
            raise KeyError(f"video {video_id!r} in {self.path} is not committed")
        check_version(attrs.get("schema_version"), f"{self.path} video {video_id!r}")
        source = None
        if frames_storage(attrs) == "none":
            source = SourceFrames(video_id, attrs, self.ref.source_root, self._source_index)
        return Video(video_id, attrs, raws, self._backend.read, where=self.path, source=source)

    def all_ids(self) -> list[str]:
        """Every video present, committed or not."""
        return self._backend.all_ids()

    def failures(self) -> list[dict]:
        """Failure records {source, reason, stage} (plus "id"), sorted by id."""
        return self._backend.failures()

    def nbytes(self, video_id: str) -> dict[str, int]:
        """Bytes on disk per array of one video."""
        return self._backend.nbytes(video_id)

    def video_bytes(self, video_id: str) -> int:
        """Bytes of everything one video takes in the store: its arrays plus metadata (zarr)
        or container overhead (hdf5); what `ShardWriter.write_video` returns."""
        return self._backend.video_bytes(video_id)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __reduce__(self):
        # DataLoader workers get a fresh handle (h5py/zarr handles do not cross processes).
        return open_shards, (self.ref,)

    def __repr__(self) -> str:
        return f"ShardSet({self.path!r}, format={self.format!r}, videos={len(self)})"


class Video:
    """One video: `attrs` and lazy arrays by schema name (stored or derived)."""

    def __init__(self, video_id: str, attrs: dict, raws: dict, read, where: str = "", source=None):
        self.id = video_id
        self.attrs = attrs
        self._raws = raws
        self._read = read
        self.where = where  # the shard set's path, for error messages
        self._source = source  # SourceFrames of a --frames none video: frames decoded from the video file
        self.specs = arrays_for(attrs.get("schema_version"))
        self._tracks = None

    def _has(self, name) -> bool:
        if name == "frames" and self._source is not None:
            return True
        spec = self.specs.get(name)
        if spec is not None and spec.derived:
            return all(self._has(src) for src in spec.source)
        return name in self._raws

    def keys(self) -> list[str]:
        return [n for n in self.specs if self._has(n)]

    def __contains__(self, name) -> bool:
        return self._has(name)

    @property
    def frames_source(self) -> str | None:
        """The video file a --frames none video decodes its frames from (None: frames stored)."""
        return None if self._source is None else self._source.path

    def read_frames(self, idx) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB of frames `idx` (sorted unique ints), whichever way the set
        keeps them (stored JPEG or decoded from the source video): what derived arrays read."""
        return self["frames"][np.asarray(idx, np.int64)]

    def stored_names(self) -> list[str]:
        """Every array the store holds for this video, in the schema or not (for verify)."""
        return list(self._raws)

    def __getitem__(self, name: str) -> "LazyArray":
        if name == "frames" and self._source is not None:
            shape = ARRAYS[name].shape(dims_from_attrs(self.attrs))
            return SourceFramesArray(self._source, shape, owner=self)
        if not self._has(name):
            raise KeyError(f"video {self.id!r} has no array {name!r} (has {self.keys()})")
        spec = self.specs.get(name)
        if spec is not None and spec.derived:
            return DerivedArray(name, self)
        raw = self._raws[name]
        shape = None
        if spec is not None and spec.transform == "jpeg":  # stored (T, bytes): decodes to (T, H, W, 3)
            shape = (raw.shape[0],) + spec.shape(dims_from_attrs(self.attrs))[1:]
        return LazyArray(name, raw, self._read, shape, owner=self)

    def read_stored(self, name: str, sel) -> np.ndarray:
        """Stored values of frames `sel` (slice or sorted unique ints) of array `name`;
        ShardReadError naming the video and the array when the store cannot deliver them."""
        try:
            return np.asarray(self._read(self._raws[name], sel))
        except ShardReadError:
            raise
        except Exception as e:  # zarr, blosc, crc32c and h5py each raise their own types
            raise ShardReadError(f"{self.where}: video {self.id!r} array {name!r}: cannot read "
                                 f"frames {_describe(sel)}: {type(e).__name__}: {str(e).rstrip('.')}. The shard "
                                 f"is damaged: re-extract it with python -m shards verify {self.where} "
                                 f"--repair (every damaged video).") from e

    # ---- what derived arrays are computed from -------------------------------------------

    def gray(self, idx: np.ndarray) -> np.ndarray:
        """(n, H, W) uint8 luma of frames idx (sorted unique ints): the input of the derived
        `hog`. Stored JPEG frames are decoded grey (their Y plane); any other frames source
        (`self["frames"]`) is converted from RGB."""
        idx = np.asarray(idx, np.intp)
        spec = self.specs["frames"]
        if "frames" not in self._raws or spec.transform != "jpeg":
            rgb = self["frames"][idx]
            return np.stack([cv2_gray(f) for f in rgb]) if len(rgb) else np.zeros(rgb.shape[:3], np.uint8)
        rows = self["frames"]._frames(idx)
        try:
            return decode_gray(rows)
        except ValueError as e:
            raise ShardReadError(f"{self.where}: video {self.id!r} array 'frames': {e}") from e

    def stores_jpeg(self) -> bool:
        """Whether the frames are stored as JPEG rows (`jpeg_rows` can read them)."""
        return "frames" in self._raws and self.specs["frames"].transform == "jpeg"

    def jpeg_rows(self, idx: np.ndarray) -> np.ndarray:
        """(n, N) uint8: the stored JPEG of frames `idx` (sorted unique ints), one per row,
        zero-padded to the longest: the bytes a device decodes (train/clips/assemble.py). A set that
        keeps no frames (--frames none) has none: ValueError."""
        if not self.stores_jpeg():
            raise ValueError(f"video {self.id!r} keeps no JPEG frames (frames_storage "
                             f"{frames_storage(self.attrs)!r}): its frames are decoded from the source video")
        return self["frames"]._frames(np.asarray(idx, np.intp))

    def frames_and_gray(self, color: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(color), H, W, 3) RGB of frames `color` and (len(gray), H, W) luma of frames
        `gray` (each sorted unique ints) in one read of the frames source: a clip needs its own
        frames in colour and, for the HOG along its trajectories, the frames between them in
        grey only. Stored JPEG: one read of the union (each zarr read pays per call and per
        chunk), each frame decoded once, in colour or grey (the Y plane, ~25 % cheaper)."""
        color, gray = np.asarray(color, np.intp), np.asarray(gray, np.intp)
        if "frames" not in self._raws or self.specs["frames"].transform != "jpeg" or not len(gray):
            rgb = self["frames"][np.union1d(color, gray)]
            union = np.union1d(color, gray)
            g = np.stack([cv2_gray(f) for f in rgb[np.searchsorted(union, gray)]]) if len(gray) else \
                np.zeros((0,) + rgb.shape[1:3], np.uint8)
            return rgb[np.searchsorted(union, color)], g
        union = np.union1d(color, gray)
        lazy = self["frames"]
        rows = lazy._frames(union)
        try:
            rgb = lazy._decode(rows[np.searchsorted(union, color)])
            return rgb, decode_gray(rows[np.searchsorted(union, gray)])
        except ValueError as e:
            raise ShardReadError(f"{self.where}: video {self.id!r} array 'frames': {e}") from e

    def hog_box(self, idx: np.ndarray, rows: tuple[int, int], cols: tuple[int, int],
                gray: np.ndarray | None = None) -> np.ndarray:
        """`self["hog"][idx][:, r0:r1, c0:c1]` computing only those cells (a clip's crop);
        `gray` (len(idx), H, W), or a list of (H, W): the frames' luma when the caller has it already."""
        if not self.specs["hog"].derived:
            return self["hog"][idx][:, rows[0]:rows[1], cols[0]:cols[1]]
        return cell_hog_box(self.gray(idx) if gray is None else gray, rows, cols)

    def tracks(self, starts: np.ndarray, rows: tuple[int, int] | None = None,
               cols: tuple[int, int] | None = None, traj_len: int = 0,
               cells: tuple[np.ndarray, np.ndarray] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(traj, traj_valid, positions) of the points starting at frames `starts` (sorted
        unique ints) on cells rows x cols (default all), or on the outer product of `cells` =
        (row indices, column indices): `shards.derived.track` on the stored flow. `traj_len`
        steps (0 = attrs["traj_len"]): schema 3 tracks any length; a schema-2 set stores
        attrs["traj_len"] steps, so a shorter length is its stored steps cut, and a longer one a
        ValueError. A loader asks for traj and traj_valid of the same starts: the
        last result is kept."""
        a = self.attrs
        n, stored_len, height, width = (int(a[k]) for k in ("num_frames", "traj_len", "height", "width"))
        traj_len = int(traj_len) or stored_len
        if cells is not None:
            cells = tuple(np.asarray(c, np.intp) for c in cells)
        key = (tuple(int(s) for s in starts), rows, cols, traj_len,
               None if cells is None else tuple(tuple(c.tolist()) for c in cells))
        if self._tracks is not None and self._tracks[0] == key:
            return self._tracks[1]
        starts = np.asarray(key[0], np.intp)
        if not self.specs["traj"].derived:  # a schema-2 set: stored steps, positions rebuilt
            if traj_len > stored_len:
                raise ValueError(f"{self.where}: video {self.id!r} stores {stored_len} trajectory steps, "
                                 f"{traj_len} asked")
            traj, valid = self["traj"][starts][..., :traj_len, :], self["traj_valid"][starts][..., :traj_len]
            hom = self["homography"][:] if len(starts) else np.zeros((0, 3, 3), np.float32)
            pos = np.concatenate([positions(traj[k:k + 1], valid[k:k + 1], hom[s:s + traj_len])
                                  for k, s in enumerate(starts)]) if len(starts) else \
                np.zeros(traj.shape[:-2] + (traj_len + 1, 2), np.float32)
            if cells is not None:
                out = tuple(a[:, cells[0]][:, :, cells[1]] for a in (traj, valid, pos))
            else:
                r = rows or (0, traj.shape[1])
                c = cols or (0, traj.shape[2])
                box = (slice(None), slice(*r), slice(*c))
                out = traj[box], valid[box], pos[box]
        else:
            lo = int(starts.min()) if len(starts) else 0
            hi = min(int(starts.max()) + traj_len, n - 1) if len(starts) else 0
            flow = self["flow"][lo:hi] if hi > lo else np.zeros((0, 1, 1, 2), np.float32)
            hom = self["homography"][lo:hi] if hi > lo else np.zeros((0, 3, 3), np.float32)
            out = track(flow, hom, lo, starts, n, height, width, traj_len, int(a["flow_stride"]), rows, cols, cells)
        self._tracks = (key, out)
        return out

    def derive(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Values of derived array `name` at frames idx (sorted unique ints)."""
        if name == "hog":
            return cell_hog(self.gray(idx))
        traj, valid, _ = self.tracks(idx)
        return traj if name == "traj" else valid

    def __repr__(self) -> str:
        return f"Video({self.id!r}, T={self.attrs.get('num_frames')}, arrays={self.keys()})"


def cv2_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class LazyArray:
    """A stored array seen in reader dtype and units; indexing reads only the frames used.

    The first axis is time for every schema array; chunks hold whole frames, so a selection
    is served by reading the selected frames (all other dims) and indexing the rest in numpy.
    """

    def __init__(self, name: str, raw, read, shape: tuple[int, ...] | None = None,
                 owner: Video | None = None):
        self.name = name
        self._raw = raw
        self._read = read
        self._owner = owner
        self.spec = (owner.specs if owner is not None else ARRAYS).get(name)
        self.shape: tuple[int, ...] = tuple(raw.shape) if shape is None else tuple(shape)
        self.dtype = np.dtype(self.spec.dtype) if self.spec is not None else np.dtype(raw.dtype)
        self.stored_dtype = np.dtype(raw.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _frames(self, sel) -> np.ndarray:
        """Stored values of frames `sel`: a positive-step slice or sorted unique int array."""
        pick = None
        if not isinstance(sel, slice) and len(sel) and _evenly_spaced(sel):
            # A clip at a fixed stride: a strided slice is ~6x cheaper than a point selection in zarr.
            step = int(sel[1] - sel[0]) if len(sel) > 1 else 1
            sel = slice(int(sel[0]), int(sel[-1]) + 1, step)
        elif not isinstance(sel, slice) and len(sel) and 2 * len(sel) >= int(sel[-1]) - int(sel[0]) + 1:
            # Dense but irregular (the frames trajectories visit): one range read and a pick cost
            # ~half of zarr's point selection, though it reads up to twice the chunks.
            sel, pick = slice(int(sel[0]), int(sel[-1]) + 1), np.asarray(sel) - int(sel[0])
        count = len(range(*sel.indices(self.shape[0]))) if isinstance(sel, slice) else len(sel)
        if count == 0:
            return np.empty((0,) + tuple(self._raw.shape[1:]), self.stored_dtype)
        out = self._owner.read_stored(self.name, sel) if self._owner is not None else \
            np.asarray(self._read(self._raw, sel))
        return out if pick is None else out[pick]

    def _decode(self, stored: np.ndarray) -> np.ndarray:
        if self.spec is None:
            return stored
        if len(stored) == 0:
            return np.empty((0,) + self.shape[1:], self.dtype)
        try:
            return decode(self.name, stored, self.spec)
        except ValueError as e:  # a JPEG row that does not decode
            owner = self._owner
            raise ShardReadError(f"{owner.where if owner else ''}: video {owner.id if owner else '?'!r} "
                                 f"array {self.name!r}: {e}") from e

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is None for k in key):  # np.newaxis: rare, keep it simple and read everything
            return self._decode(self._frames(slice(None)))[key]
        ellipsis = [i for i, k in enumerate(key) if k is Ellipsis]
        if len(ellipsis) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if ellipsis:
            i = ellipsis[0]
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for {self.name} with shape {self.shape}")
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = self.shape[0]
        if isinstance(first, slice):
            start, stop, step = first.indices(n)
            if step > 0:
                data, post = self._frames(slice(start, stop, step)), slice(None)
            else:
                idx = np.arange(start, stop, step)[::-1]
                data, post = self._frames(idx), slice(None, None, -1)
        elif isinstance(first, (bool, np.bool_)):
            raise IndexError("a scalar bool index is not supported")
        elif isinstance(first, (int, np.integer)):
            t = operator.index(first)
            t = t + n if t < 0 else t
            if not 0 <= t < n:
                raise IndexError(f"index {first} is out of bounds for {self.name} with {n} frames")
            data, post = self._frames(slice(t, t + 1)), 0
        else:
            idx = np.asarray(first)
            if idx.dtype == np.bool_:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index of shape {idx.shape} for {n} frames")
                idx = np.flatnonzero(idx)
            elif idx.dtype.kind not in "iu":
                raise IndexError(f"unsupported index {first!r}")
            idx = np.where(idx < 0, idx + n, idx)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise IndexError(f"frame index out of bounds for {self.name} with {n} frames")
            uniq, inverse = np.unique(idx, return_inverse=True)
            data, post = self._frames(uniq), inverse.reshape(idx.shape)
        return self._decode(data)[(post,) + rest]

    def __repr__(self) -> str:
        return f"LazyArray({self.name!r}, shape={self.shape}, dtype={self.dtype})"


class SourceFramesArray(LazyArray):
    """`frames` of a --frames none video: the same shape, dtype and indexing as the stored
    array, each read decoded from the source video (one seek per clip, single-threaded)."""

    def __init__(self, source, shape: tuple[int, ...], owner: Video):
        self.name = "frames"
        self._source = source
        self._owner = owner
        self.shape = tuple(shape)
        self.dtype = self.stored_dtype = np.dtype(np.uint8)

    def _frames(self, sel) -> np.ndarray:
        idx = np.arange(*sel.indices(self.shape[0])) if isinstance(sel, slice) else np.asarray(sel, np.int64)
        try:
            return self._source.read(idx)
        except SourceMissing as e:
            raise SourceMissing(f"{self._owner.where}: {e}") from None
        except Exception as e:  # PyAV and the decoder raise their own types: name the video
            raise ShardReadError(f"{self._owner.where}: video {self._owner.id!r} frames {_describe(idx)}: "
                                 f"cannot decode them from its source {self._source.path}: "
                                 f"{type(e).__name__}: {str(e).rstrip('.')}") from e

    def _decode(self, stored: np.ndarray) -> np.ndarray:
        return stored


class DerivedArray(LazyArray):
    """A derived array (schema transform "derived") seen like a stored one: indexing computes
    the selected frames from the stored arrays they derive from (`Video.derive`)."""

    def __init__(self, name: str, video: Video):
        self.name = name
        self._owner = video
        self.spec = video.specs[name]
        self.shape = self.spec.shape(dims_from_attrs(video.attrs))
        self.dtype = self.stored_dtype = np.dtype(self.spec.dtype)

    def _frames(self, sel) -> np.ndarray:
        idx = np.arange(*sel.indices(self.shape[0])) if isinstance(sel, slice) else np.asarray(sel, np.intp)
        if len(idx) == 0:
            return np.empty((0,) + tuple(self.shape[1:]), self.dtype)
        return self._owner.derive(self.name, idx)

    def _decode(self, values: np.ndarray) -> np.ndarray:
        return values


def _describe(sel) -> str:
    if isinstance(sel, slice):
        return f"{sel.start}:{sel.stop}" + (f":{sel.step}" if sel.step not in (None, 1) else "")
    sel = np.asarray(sel)
    return f"{sel[:4].tolist()}{'...' if len(sel) > 4 else ''}"


def _evenly_spaced(idx: np.ndarray) -> bool:
    """Sorted unique indices with one constant step (a single index counts)."""
    return len(idx) < 2 or bool((np.diff(idx) == idx[1] - idx[0]).all())
