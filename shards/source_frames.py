"""Frames decoded from the source video at read time, for sets extracted with `--frames none`.

Such a set stores no frames array; `video["frames"][idx]` decodes the clip from the video file
recorded in the video's attrs (`source`), and must return exactly what extraction would have
stored before the JPEG step: the same native frames (the fps resampling of `keep_indices`), the
same swscale area scaling to the stored size in the YUV -> RGB pass (`stored_rgb`), the same
upright turn and mirror (attrs `display_transform`, else `rotation`; `orientation`).

The frame geometry (`keep_indices`, `stored_size`, `stored_rgb`, `quarter_turns`) is defined
here and imported by preprocess/decode.py. Decoding is single-threaded PyAV (one core per
loader worker, as for the shards). A clip is read by one seek to the keyframe at or before its
first frame and a forward decode; a later frame behind another keyframe seeks again. Native frame n is the n-th frame in presentation order,
as extraction counts them; its timestamp comes from the container's packet index, read once
per video (`FrameIndex`). Unwanted non-reference frames (most B-frames) are not decoded. Streams without timestamps on every packet, or whose packet count
differs from the frames extraction decoded, are decoded from the start instead of seeking.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import av
import numpy as np

from .errors import SourceMissing


# ---- pure helpers shared with extraction (preprocess/decode.py imports them) ----------------

def stored_size(source_hw: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(H, W) with the short side = short_side, the long side rounded half up; never upscales.

    320x240 at short_side=128 -> 171x128 (170.67 rounds up): rounding keeps the aspect
    ratio closest, odd sizes are fine since cells simply drop the last W % 8 columns.
    """
    hs, ws = source_hw
    if min(hs, ws) <= short_side:
        return hs, ws
    s = short_side / min(hs, ws)
    return (short_side, int(np.floor(ws * s + 0.5))) if hs <= ws else (int(np.floor(hs * s + 0.5)), short_side)


def keep_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Native frame indices nearest to the timestamps times[0] + j / fps (unique, ascending)."""
    targets = times[0] + np.arange(0.0, times[-1] - times[0] + 0.5 / fps, 1.0 / fps)
    right = np.clip(np.searchsorted(times, targets), 0, len(times) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    return np.unique(nearest)


def frame_times(pts: list[int | None], time_base, native_fps: float) -> np.ndarray:
    """Seconds of each frame as PyAV's `frame.time` gives them (float(pts) * num / den); every
    frame at n / native_fps when any timestamp is missing (what extraction resamples by)."""
    if any(p is None for p in pts):
        return np.arange(len(pts)) / native_fps
    return np.asarray(pts, np.float64) * time_base.numerator / time_base.denominator


def stored_rgb(frame: av.VideoFrame, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB at the stored size: one swscale pass, area-averaged when shrinking.

    Converting and scaling in one pass from the decoder's YUV costs 1.7 ms at 720p -> 455x256
    against 6 ms for RGB at the source size + cv2.resize(INTER_AREA) (mean difference 1.2 grey
    levels: swscale averages chroma at its own resolution; docs/benchmarks.md).
    """
    if (frame.height, frame.width) == hw:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=hw[1], height=hw[0], format="rgb24", interpolation="AREA").to_ndarray()


def quarter_turns(rotation_degrees) -> int:
    """Counterclockwise quarter turns (np.rot90's k) of a display-matrix rotation in degrees."""
    return round(int(round(rotation_degrees or 0)) / 90) % 4


# FFmpeg's transpose filter directions as (np.rot90 quarter turns, then a left-right mirror):
# cclock_flip is the transpose proper (out[y, x] = in[x, y]), clock_flip the anti-transpose.
TRANSFORMS = {"transpose=clock": (3, False), "transpose=cclock": (1, False),
              "transpose=cclock_flip": (3, True), "transpose=clock_flip": (1, True),
              "hflip": (0, True), "vflip": (2, True)}


def compose(filters: list[str]) -> tuple[int, bool]:
    """(quarter turns, mirror) of FFmpeg's autorotate filters applied in order (see TRANSFORMS)."""
    turns, mirror = 0, False
    for name in filters:  # compose: rot90 then mirror, followed by rot90(k) then mirror(m)
        k, m = TRANSFORMS[name]
        turns, mirror = (turns - k) % 4 if mirror else (turns + k) % 4, mirror != m
    return turns, mirror


def orientation(attrs: dict) -> tuple[int, bool]:
    """(quarter turns, mirror) that took a video's coded frames to its stored ones: from attrs
    `display_transform` (the filters), or `rotation` alone where the filters are not quarter
    turns and flips (a `rotate=` angle, stored as the nearest quarter turn) or not recorded."""
    filters = attrs.get("display_transform")
    if not isinstance(filters, list) or any(f not in TRANSFORMS for f in filters):
        return quarter_turns(attrs.get("rotation")), False
    return compose(filters)


def orient(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """(H, W, ...) coded picture -> as displayed: np.rot90 by `turns`, then mirrored left-right."""
    out = np.rot90(image, turns)
    return np.ascontiguousarray(out[:, ::-1] if mirror else out)


# ---- read-time decoding ---------------------------------------------------------------------

@dataclass(frozen=True)
class FrameIndex:
    """Where each native frame of a video is: presentation timestamps and keyframes.

    pts: (N,) int64 in stream time base, ascending (presentation order) or None when the
    stream lacks them (then decode sequentially). keyframe: (N,) bool, in the same order.
    """

    pts: np.ndarray | None
    keyframe: np.ndarray | None
    time_base: object
    native_fps: float

    @property
    def seekable(self) -> bool:
        return self.pts is not None

    def native_of_stored(self, attrs: dict) -> np.ndarray | None:
        """Native frame index of each stored frame (None: the identity, no resampling)."""
        fps, native = attrs.get("fps"), attrs.get("native_fps")
        if not fps or not native or not float(fps) < float(native):
            return None
        if self.pts is None:
            times = np.arange(int(attrs["native_num_frames"])) / float(native)
        else:
            times = frame_times(self.pts.tolist(), self.time_base, float(native))
        return keep_indices(times, float(fps))


def _open(path: str):
    try:
        container = av.open(path)
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as e:
        raise OSError(f"{path}: not a readable video: {getattr(e, 'strerror', None) or type(e).__name__}") from e
    stream = container.streams.video[0]
    stream.thread_type = "NONE"  # one core per loader worker, as the shards' own reads
    stream.thread_count = 1
    return container, stream


def build_index(path: str, native_num_frames: int | None) -> FrameIndex:
    """The packet index of `path` (demux only, no decoding: a few ms for a 10 s file)."""
    container, stream = _open(path)
    with container:
        rows = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if not rows or any(pts is None for pts, _ in rows) or (
                native_num_frames is not None and len(rows) != native_num_frames):
            return FrameIndex(None, None, stream.time_base, fps)
        rows.sort(key=lambda r: r[0])
        pts = np.array([r[0] for r in rows], np.int64)
        if len(np.unique(pts)) != len(pts):
            return FrameIndex(None, None, stream.time_base, fps)
        return FrameIndex(pts, np.array([r[1] for r in rows], bool), stream.time_base, fps)


def decode_native(path: str, index: FrameIndex, native: np.ndarray, hw: tuple[int, int],
                  turns: int, mirror: bool = False) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB of native frames `native` (sorted unique), scaled to `hw` (coded
    orientation) then turned upright by `turns` quarter turns."""
    out_hw = hw[::-1] if turns % 2 else hw
    out = np.empty((len(native),) + tuple(out_hw) + (3,), np.uint8)
    if not len(native):
        return out
    if not index.seekable:
        _sequential(path, native, hw, turns, mirror, out)
        return out
    container, stream = _open(path)
    with container:
        key_at = np.maximum.accumulate(np.where(index.keyframe, np.arange(len(index.pts)), 0))
        wanted = set(index.pts[native].tolist())
        i, position = 0, -1  # next wanted; display index of the last decoded frame (-1: none)
        while i < len(native):
            start = int(key_at[native[i]])
            if position < start or position >= native[i]:
                if not _seek(container, stream, int(index.pts[start])):
                    _sequential(path, native[i:], hw, turns, mirror, out[i:])
                    return out
                position = -1
            for frame in _decoded(container, stream, wanted):
                if frame.pts is None:
                    continue
                n = int(np.searchsorted(index.pts, frame.pts))
                if n >= len(index.pts) or index.pts[n] != frame.pts:
                    continue
                if position == -1 and n > native[i]:  # the seek landed after the frame: go from the start
                    _sequential(path, native[i:], hw, turns, mirror, out[i:])
                    return out
                position = n
                if n == native[i]:
                    out[i] = orient(stored_rgb(frame, hw), turns, mirror)
                    i += 1
                    if i == len(native) or key_at[native[i]] > n:
                        break  # done, or a keyframe closer than here: seek to it
            else:
                raise OSError(f"{path}: the decoder ended before native frame {int(native[i])}")
    return out


def _decoded(container, stream, wanted: set[int]):
    """Frames decoded from the container's position on. A packet whose frame is not wanted is
    decoded only if other frames reference it: the decoder drops non-reference frames under
    skip_frame NONREF, which by definition changes no other frame (bit-identical clips, ~20 %
    less CPU on x264's B-frames: docs/benchmarks.md)."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in wanted else "NONREF"
        yield from codec.decode(packet)


def _seek(container, stream, pts: int) -> bool:
    try:
        container.seek(pts, stream=stream, backward=True, any_frame=False)
        return True
    except av.error.FFmpegError:
        return False


def _sequential(path: str, native: np.ndarray, hw, turns: int, mirror: bool, out: np.ndarray) -> None:
    """Decode from the first frame, counting frames as extraction does: streams the index
    cannot seek in (no timestamps), or a seek that landed past the frame."""
    container, stream = _open(path)
    with container:
        i = 0
        for n, frame in enumerate(container.decode(stream)):
            if n == native[i]:
                out[i] = orient(stored_rgb(frame, hw), turns, mirror)
                i += 1
                if i == len(native):
                    return
    raise OSError(f"{path}: the decoder ended before native frame {int(native[i])}")


def decode_all(path: str, short_side: int) -> np.ndarray:
    """(T, H, W, 3) uint8 every native frame at the stored size, coded orientation (for benchmarks)."""
    container, stream = _open(path)
    with container:
        frames, hw = [], None
        for frame in container.decode(stream):
            hw = hw or stored_size((frame.height, frame.width), short_side)
            frames.append(stored_rgb(frame, hw))
    return np.stack(frames)


class SourceFrames:
    """Decodes the frames of one video of a `--frames none` set from its source file.

    attrs: the video's attrs (source, height, width, rotation, fps, native_fps,
    native_num_frames); source_root: the folder the sources moved to (None: the recorded
    path). Indices are cached per source path (`cache`, shared by the set's videos).
    """

    def __init__(self, video_id: str, attrs: dict, source_root: str | None = None,
                 cache: "OrderedDict | None" = None, cache_size: int = 256):
        self.video_id = video_id
        self.attrs = attrs
        self.path = resolve_source(attrs, source_root)
        self.turns, self.mirror = orientation(attrs)
        h, w = int(attrs["height"]), int(attrs["width"])
        self.hw = (w, h) if self.turns % 2 else (h, w)  # coded orientation, before the turn
        self._cache = cache if cache is not None else OrderedDict()
        self._cache_size = cache_size

    def index(self) -> FrameIndex:
        found = self._cache.get(self.path)
        if found is None:
            native = self.attrs.get("native_num_frames")
            found = build_index(self.path, None if native is None else int(native))
            self._cache[self.path] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(self.path)
        return found

    def read(self, stored: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB of stored frames `stored` (sorted unique ints)."""
        if not os.path.isfile(self.path):
            raise SourceMissing(f"video {self.video_id!r}: its source {self.path} is missing (a set "
                                f"extracted with --frames none decodes frames from its videos; "
                                f"point the set at them with source_root / --source-root)")
        index = self.index()
        mapping = index.native_of_stored(self.attrs)
        native = np.asarray(stored, np.int64) if mapping is None else mapping[np.asarray(stored, np.int64)]
        return decode_native(self.path, index, native, self.hw, self.turns, self.mirror)


def resolve_source(attrs: dict, source_root: str | None) -> str:
    """Where a video's source is at read time: the recorded path, or under `source_root`.

    With `source_root`, the path relative to the extraction's corpus root (attrs
    `source_relpath`, else the file name) is joined to it: a corpus moved as a whole keeps
    its layout.
    """
    source = str(attrs["source"])
    if not source_root:
        return source
    rel = attrs.get("source_relpath") or os.path.basename(source)
    return os.path.join(os.fspath(source_root), rel)
