"""Video file -> stored frames and codec motion field (the I/O edge of preprocessing).

PyAV decodes single-threaded with `flags2=+export_mvs`: frame-threaded decoding makes
the exported B-frame vectors non-deterministic, so parallelism belongs across videos.
Codecs whose decoder exports no vectors (HEVC, VP9, ...) are re-encoded on the fly to
H.264 from the stored frames; intra-only codecs give an all-invalid field. The pure
vector -> field arithmetic lives in `preprocess.motion_vectors`.
"""
from __future__ import annotations

import errno
import io
import itertools
import math
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from preprocess.errors import ExtractionError
from preprocess.motion_vectors import (drop_unused_lists, frame_field, mirror_vectors, recover_distances,
                                      rotate_vectors)
# shared with the reader, which decodes the same frames from the source for `--frames none` sets
from shards.source_frames import compose, keep_indices, orient, stored_rgb, stored_size  # noqa: F401

MV_STREAM = "stream"
MV_TRANSCODED = "transcoded-h264"
MV_NONE = "none: intra-only codec"

# Decoders (FFmpeg's h264 and mpegvideo family) that honour export_mvs; a stream of
# theirs without vectors (all intra) is still "stream", not a reason to transcode.
_MV_DECODERS = frozenset({
    "h264", "mpeg1video", "mpeg2video", "mpeg4", "h263", "h263p", "flv1",
    "msmpeg4v1", "msmpeg4v2", "msmpeg4v3", "wmv1", "wmv2",
})


# H.264 settings of the fallback: one past reference and no B-frames, so every vector
# spans exactly one frame and needs no distance recovery. No macroblock-tree rate control:
# libx264's assembly for it (as PyAV's wheels ship it) reads memory it did not write, so the
# same frames gave other quantizers, modes and vectors from one call to the next; the
# vectors are all we keep of the transcode, and the quantizer tree adds nothing to them.
TRANSCODE_OPTIONS = {
    "crf": "18", "preset": "veryfast", "bf": "0", "refs": "1", "g": "250",
    "x264-params": "bframes=0:ref=1:scenecut=0:threads=1:mbtree=0:log-level=error",
}


@dataclass(frozen=True)
class DecodedVideo:
    """One decoded video at the stored resolution.

    frames: (T, H, W, 3) uint8 RGB. mv: (T, Hc, Wc, 2) float32 forward px/frame in stored
    pixels, mv[t] = motion from frame t-1 to t (schema `mv`). mv_valid: (T, Hc, Wc) bool.
    mv_distance: (T, Hc, Wc) uint8 reference distance the cell's vectors were divided
    by (0 where invalid). attrs: source, fps, height, width, source_height, source_width,
    num_frames, codec, mv_source, native_fps, native_num_frames, timings (seconds per
    stage: decode, motion_vectors, ref_distance).
    """

    frames: np.ndarray
    mv: np.ndarray
    mv_valid: np.ndarray
    mv_distance: np.ndarray
    attrs: dict


def subsample_field(mv: np.ndarray, valid: np.ndarray, distance: np.ndarray,
                    keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The field of the kept native frames: mv[n_i] * (n_i - n_{i-1}), the first invalid.

    Assumes constant velocity across the native frames a kept frame spans.
    """
    span = np.diff(keep, prepend=keep[0]).astype(np.float32)
    mv, valid, distance = mv[keep] * span[:, None, None, None], valid[keep], distance[keep]
    valid[0] = False  # its predecessor is no longer in the video
    mv[0] = 0
    distance[0] = 0
    return mv, valid, distance


def decode_video(path: str | Path, short_side: int = 256, fps: float | None = None,
                 max_ref_distance: int = 4, recover_distance: bool = True,
                 allow_images: bool = False) -> DecodedVideo:
    """Decode a video file, resize it and extract its codec motion field.

    Frames are area-averaged by swscale (in the same pass as the YUV -> RGB conversion)
    so the short side is `short_side` (never upscaled). With `fps` below the native rate, the frames nearest to the timestamps
    first + j / fps are kept and mv[i] becomes mv_native[n_i] * (n_i - n_{i-1}): the
    motion into the kept frame scaled by the native frames it spans, i.e. constant
    velocity is assumed across the skipped frames (an approximation: accelerations and
    occlusions inside the span are not seen). `fps` at or above the native rate keeps
    the native frames. With `recover_distance`, vectors pointing up to
    `max_ref_distance` frames away are normalized to one frame (see
    `motion_vectors.recover_distances`); otherwise every vector is read as spanning one.
    A still image (a PNG or JPEG renamed .mp4) is refused unless `allow_images`, which
    stores it as a one-frame video.

    The whole video is held in memory; `stream_video` gives the same frames and fields
    one at a time. Raises ExtractionError("open" | "decode" | "motion_vectors", reason).
    """
    window = max_ref_distance if recover_distance and max_ref_distance > 1 else 0
    info: dict = {}
    frames: list[np.ndarray] = []
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for rgb, field in _decode_frames(Path(path), short_side, window, allow_images, info):
        frames.append(rgb)
        fields.append(field)
    timings = info["timings"]
    stored = np.stack(frames)
    del frames
    codec = info["codec"]
    if info["saw_vectors"] or codec in _MV_DECODERS:
        mv_source = MV_STREAM
    elif av.codec.Codec(codec, "r").intra_only or (info["all_intra"] and len(stored) > 1):
        mv_source = MV_NONE
    else:
        tic = time.perf_counter()
        fields = _transcoded_fields(stored)
        timings["motion_vectors"] += time.perf_counter() - tic
        mv_source = MV_TRANSCODED
    mv, valid, distance = (np.stack(a) for a in zip(*fields))

    native_fps = _native_fps(info["native_rate"], info["times"])
    out_fps = native_fps
    if fps is not None and 0 < fps < native_fps:
        stamps = np.asarray([np.nan if x is None else x for x in info["times"]], np.float64)
        if np.isnan(stamps).any():
            stamps = np.arange(len(stored)) / native_fps
        keep = keep_indices(stamps, fps)
        stored = stored[keep]
        mv, valid, distance = subsample_field(mv, valid, distance, keep)
        out_fps = float(fps)
    attrs = _video_attrs(path, info, num_frames=len(stored), fps=out_fps, native_fps=native_fps,
                         mv_source=mv_source, max_ref_distance=max_ref_distance if window else 1)
    return DecodedVideo(stored, mv.astype(np.float32), valid, distance, attrs)


class FrameStream:
    """The frames and motion field of `decode_video`, one stored frame at a time.

    Iterating yields (rgb (H, W, 3) uint8, mv (Hc, Wc, 2) float32, mv_valid (Hc, Wc) bool,
    mv_distance (Hc, Wc) uint8) per stored frame, the same values `decode_video` stacks;
    `attrs` (decode_video's) is set once the iteration is exhausted. Only the frames the
    reference-distance recovery looks back and ahead at (`max_ref_distance` each way) are
    held, so memory does not grow with the video's length.

    Codecs whose decoder exports no vectors (HEVC, VP9, ...) are decoded twice: once to
    re-encode the stored frames to H.264 in a local temporary file, once beside that file's
    vectors. `fps` below the native rate chooses the kept frames from every timestamp: a
    decode-only first pass reads them.
    """

    def __init__(self, path: str | Path, short_side: int = 256, fps: float | None = None,
                 max_ref_distance: int = 4, recover_distance: bool = True, allow_images: bool = False):
        self.path = Path(path)
        self._args = (short_side, fps, max_ref_distance, recover_distance, allow_images)
        self._window = max_ref_distance if recover_distance and max_ref_distance > 1 else 0
        self.attrs: dict | None = None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        short_side, fps, max_ref_distance, recover_distance, allow_images = self._args
        info: dict = {}
        frames = _decode_frames(self.path, short_side, self._window, allow_images, info)
        first = next(frames)  # opens the file: codec and rate are known now
        rate, codec = info["native_rate"], info["codec"]
        keep = None
        if fps is not None and 0 < fps and not (rate and fps >= float(rate)):
            keep = self._kept_frames(rate, fps)  # None: fps is not below the native rate after all
        mv_source = MV_STREAM if codec in _MV_DECODERS else MV_NONE if av.codec.Codec(codec, "r").intra_only else None
        if mv_source is None:  # a decoder without vectors: transcode in a first pass (`_two_passes`)
            frames.close()
            info = {}
            frames, mv_source = self._two_passes(info)
        else:
            frames = itertools.chain([first], frames)
        n = 0
        if keep is None:
            for rgb, (mv, valid, distance) in frames:
                yield rgb, mv.astype(np.float32), valid, distance
                n += 1
        else:
            for rgb, mv, valid, distance in _subsampled(frames, keep):
                yield rgb, mv, valid, distance
                n += 1
        native_fps = _native_fps(rate, info["times"])
        self.attrs = _video_attrs(self.path, info, num_frames=n, fps=native_fps if keep is None else float(fps),
                                  native_fps=native_fps, mv_source=mv_source,
                                  max_ref_distance=max_ref_distance if self._window else 1)

    def _kept_frames(self, rate, fps: float) -> np.ndarray | None:
        """The native frames `decode_video` keeps at `fps` (None when fps is not below the
        native rate), from the timestamps of a decode-only first pass (no conversion: a few
        per cent of the extraction's time)."""
        times = []
        with _open(self.path) as (container, stream):
            for _, frame in _decode(container, stream, "decode"):
                times.append(frame.time)
        native_fps = _native_fps(rate, times)
        if not fps < native_fps:
            return None
        stamps = np.asarray([np.nan if x is None else x for x in times], np.float64)
        if np.isnan(stamps).any():
            stamps = np.arange(len(times)) / native_fps
        return keep_indices(stamps, fps)

    def _two_passes(self, info: dict):
        """(frames with their fields, mv_source) for a codec whose decoder exports no vectors,
        as `decode_video` gives them, in bounded memory: a first pass re-encodes the stored
        frames to H.264 in a local temporary file, a second decodes the source again beside
        that file's vectors. All-intra streams (and decoders that export vectors after all)
        take the second pass alone, as decode_video decides."""
        short_side, _, _, _, allow_images = self._args
        probe: dict = {}
        tmp = tempfile.NamedTemporaryFile(suffix=".mkv")
        frames = (rgb for rgb, _ in _decode_frames(self.path, short_side, 0, allow_images, probe))
        first = next(frames)
        tic = time.perf_counter()
        count = _encode_h264(itertools.chain([first], frames), first.shape[:2], tmp.name)
        encode_seconds = time.perf_counter() - tic - probe["timings"]["decode"]
        if probe["saw_vectors"]:
            tmp.close()
            return _decode_frames(self.path, short_side, self._window, allow_images, info), MV_STREAM
        if probe["all_intra"] and count > 1:
            tmp.close()
            return _decode_frames(self.path, short_side, self._window, allow_images, info), MV_NONE

        def paired():
            with tmp:
                fields = _h264_fields(tmp.name, first.shape[:2])
                for rgb, _ in _decode_frames(self.path, short_side, 0, allow_images, info):
                    tic = time.perf_counter()
                    field = next(fields, None)
                    info["timings"]["motion_vectors"] += time.perf_counter() - tic
                    if field is None:
                        raise ExtractionError("motion_vectors", f"H.264 transcode gave fewer frames than the "
                                                                f"{count} decoded")
                    yield rgb, field
                info["timings"]["motion_vectors"] += encode_seconds
                info["timings"]["decode"] += probe["timings"]["decode"]

        return paired(), MV_TRANSCODED


def _subsampled(frames, keep: np.ndarray):
    """The kept native frames with `subsample_field`'s fields, one at a time."""
    kept = iter(keep)
    target, previous = next(kept, None), None
    for n, (rgb, (mv, valid, distance)) in enumerate(frames):
        if n != target:
            continue
        if previous is None:  # its predecessor is no longer in the video
            mv, valid, distance = np.zeros_like(mv, np.float32), np.zeros_like(valid), np.zeros_like(distance)
        else:
            mv = (mv * np.float32(n - previous)).astype(np.float32)
        yield rgb, mv, valid, distance
        previous, target = n, next(kept, None)


def _video_attrs(path, info: dict, num_frames: int, fps: float, native_fps: float, mv_source: str,
                 max_ref_distance: int) -> dict:
    h, w = info["stored_hw"]
    source_h, source_w = info["source_hw"]
    return {
        "source": str(path), "fps": fps, "native_fps": native_fps,
        "height": h, "width": w, "source_height": source_h, "source_width": source_w,
        "rotation": info["rotation"], "display_transform": info["display_transform"],
        "num_frames": num_frames, "native_num_frames": len(info["times"]), "codec": info["codec"],
        "mv_source": mv_source, "max_ref_distance": max_ref_distance,
        "timings": info["timings"],
    }


def _decode_frames(path: Path, short_side: int, window: int, allow_images: bool, info: dict,
                   ) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """(stored upright RGB frame, its (mv, valid, distance) field) per native frame, in order.

    A frame's field is final once the `window` frames after it are decoded (vectors may
    point that far ahead), so frames leave `window` frames behind the decoder. `info` gets
    codec, native_rate and rotation when the file is open, and times, stored_hw,
    source_hw (upright), saw_vectors, all_intra and timings as decoding goes on (complete
    at the end).
    """
    timings = info["timings"] = {"decode": 0.0, "motion_vectors": 0.0, "ref_distance": 0.0}
    _check_file(path)
    rgb: dict[int, np.ndarray] = {}  # frames whose field waits for later frames
    times: list[float | None] = []
    info["times"] = times
    pending: dict[int, np.ndarray | None] = {}  # frame index -> vectors, waiting for future references
    source_hws: list[tuple[int, int]] = []
    # source-resolution grey frames still needed: uint8 (the block's own frame) and float32 (references)
    grey: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    info["all_intra"] = True  # every frame an I-frame (FFV1 marks them I but not key)
    info["saw_vectors"] = False
    stored_hw = None  # in coded orientation, like source_hws
    turns, mirror = 0, False  # display_transform: quarter turns, then a left-right mirror

    def upright(hw: tuple[int, int]) -> tuple[int, int]:
        return hw[::-1] if turns % 2 else hw

    def finish(t: int):
        vectors = pending.pop(t)
        tic = time.perf_counter()
        distances = None
        if window and vectors is not None and len(vectors):
            refs = {d: grey[t + d][1] for d in range(-window, window + 1) if d != 0 and t + d in grey}
            distances = recover_distances(vectors, grey[t][0], refs, window, current_float=grey[t][1])
        grey.pop(t - window, None)  # no later frame reaches back this far
        timings["ref_distance"] += time.perf_counter() - tic
        tic = time.perf_counter()
        # distances were matched in coded orientation; the field is painted upright
        shown = rotate_vectors(vectors, source_hws[t], turns)
        if mirror:
            shown = mirror_vectors(shown, upright(source_hws[t]))
        field = frame_field(shown, upright(source_hws[t]), upright(stored_hw), distances)
        timings["motion_vectors"] += time.perf_counter() - tic
        return rgb.pop(t), field

    with _open(path) as (container, stream):
        codec = info["codec"] = stream.codec_context.name
        if not allow_images and is_image(container.format.name):
            raise ExtractionError("open", f"image, not a video ({codec} read by FFmpeg's "
                                          f"{container.format.name} demuxer); --allow-images stores "
                                          f"images as one-frame videos")
        info["native_rate"] = stream.average_rate or stream.guessed_rate
        for n, frame in _timed(_decode(container, stream, "decode"), timings, "decode"):
            tic = time.perf_counter()
            source_hw = (frame.height, frame.width)
            if stored_hw is None:
                stored_hw = stored_size(source_hw, short_side)
                info["rotation"], info["display_transform"], turns, mirror = display_transform(frame)
                info["stored_hw"], info["source_hw"] = upright(stored_hw), upright(source_hw)
            # grey and every pix_fmt -> 3 channels; upright as ffmpeg shows it by default
            rgb[n] = orient(stored_rgb(frame, stored_hw), turns, mirror)
            times.append(frame.time)
            info["all_intra"] &= frame.pict_type == av.video.frame.PictureType.I
            timings["decode"] += time.perf_counter() - tic
            tic = time.perf_counter()
            side = frame.side_data.get("MOTION_VECTORS")
            info["saw_vectors"] |= side is not None
            # FFmpeg's MPEG-4 part 2 decoder exports all-zero vectors on B-frames
            # (measured on a +1.5 px/frame pan): no vectors beat wrong ones.
            unusable = codec == "mpeg4" and frame.pict_type == av.video.frame.PictureType.B
            pending[n] = None if side is None or unusable else drop_unused_lists(side.to_ndarray())
            source_hws.append(source_hw)
            timings["motion_vectors"] += time.perf_counter() - tic
            if window:
                tic = time.perf_counter()
                # float once here, read by up to 2 * window later frames; uint8 for the
                # frame's own gradients (an exact integer path)
                g = _source_luma(frame)
                grey[n] = (g, g.astype(np.float32))
                timings["ref_distance"] += time.perf_counter() - tic
            if n - window >= 0:
                yield finish(n - window)
    if not times:
        raise ExtractionError("decode", f"zero decodable frames in {codec} stream")
    for t in sorted(pending):
        yield finish(t)


def is_image(demuxer: str) -> bool:
    """FFmpeg reads still images with `image2` (by file name) or a `<codec>_pipe` demuxer
    (by content: png_pipe, jpeg_pipe, webp_pipe, ...); no video container is named so."""
    return demuxer == "image2" or demuxer.endswith("_pipe")


def display_transform(frame: av.VideoFrame) -> tuple[int, list[str], int, bool]:
    """How FFmpeg shows the frame by default (`-autorotate`): (degrees, filters, quarter turns,
    mirror). Stored frames are np.rot90(coded, turns), mirrored left-right when `mirror`.

    degrees: the display matrix's counterclockwise rotation (0 without one). filters: what
    FFmpeg's autorotate inserts for the matrix (fftools' `get_rotation` and its choice of
    transpose / hflip / vflip): a phone held upright codes landscape frames with a -90 degree
    matrix, shown rotated clockwise to portrait (["transpose=clock"]); a matrix with a mirror
    (EXIF orientations 2, 4, 5, 7) adds the flip. Angles that are not a multiple of 90 (FFmpeg
    rotates by the angle and fills the corners) go to the nearest quarter turn, unmirrored:
    cameras write none (docs/reliability.md)."""
    side = frame.side_data.get("DISPLAYMATRIX")
    matrix = np.frombuffer(bytes(side), np.int32) if side is not None else None
    if matrix is None or len(matrix) != 9:
        return 0, [], 0, False
    degrees = int(round(frame.rotation or 0))
    theta = -degrees  # FFmpeg's clockwise angle in [0, 360)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        filters = ["transpose=cclock_flip" if matrix[3] > 0 else "transpose=clock"]
    elif abs(theta - 180) < 1:
        filters = ["hflip"] * bool(matrix[0] < 0) + ["vflip"] * bool(matrix[4] < 0)
    elif abs(theta - 270) < 1:
        filters = ["transpose=clock_flip" if matrix[3] < 0 else "transpose=cclock"]
    elif abs(theta) > 1:
        return degrees, [f"rotate={theta:g} (stored as the nearest quarter turn)"], round(degrees / 90) % 4, False
    else:
        filters = ["vflip"] * bool(matrix[4] < 0)
    turns, mirror = compose(filters)
    return degrees, filters, turns, mirror


def _check_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ExtractionError("open", f"broken symlink: {path} -> {os.readlink(path)} does not exist") from None
        raise ExtractionError("open", f"file not found: {path}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ExtractionError("open", f"symlink loop: {path} leads back to itself through symlinks "
                                          f"(-> {os.readlink(path)})") from None
        raise ExtractionError("open", f"cannot open {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExtractionError("open", f"not a regular file: {path}")
    if st.st_size == 0:
        raise ExtractionError("open", "empty file (0 bytes)")


@contextmanager
def _open(source: Path | io.BytesIO) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """(container, first video stream) set up for single-threaded MV export."""
    try:
        container = av.open(source if isinstance(source, io.BytesIO) else str(source))
    except av.error.FFmpegError as e:
        raise ExtractionError("open", f"not a readable video: {_ffmpeg_reason(e)}") from e
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise ExtractionError("open", f"no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # frame threads make B-frame MV export non-deterministic
        stream.thread_count = 1
        stream.codec_context.options = {"flags2": "+export_mvs"}
        yield container, stream


def _decode(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
            stage: str) -> Iterator[tuple[int, av.VideoFrame]]:
    """(display index, frame) pairs; FFmpeg errors become ExtractionError(stage)."""
    frames = container.decode(stream)
    n = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            raise ExtractionError(stage, f"decoder error after {n} frames: {_ffmpeg_reason(e)}") from e
        yield n, frame
        n += 1


def _timed(items: Iterator, timings: dict, key: str) -> Iterator:
    """Adds the time spent producing each item to timings[key]."""
    while True:
        tic = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            timings[key] += time.perf_counter() - tic
            return
        timings[key] += time.perf_counter() - tic
        yield item


def _ffmpeg_reason(e: av.error.FFmpegError) -> str:
    return getattr(e, "strerror", None) or type(e).__name__


# 8-bit pixel formats whose first plane is the luma (Y) of the frame, full or limited range
_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                         "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "nv12", "nv21", "gray"})


def _source_luma(frame: av.VideoFrame) -> np.ndarray:
    """(Hs, Ws) uint8 grey frame at the source size, for the reference-distance block matching.

    The Y plane itself when the pixel format has an 8-bit one (no conversion: limited-range
    luma is a linear map of full-range grey, which the matching's tolerances absorb); other
    formats go through RGB.
    """
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        return np.ascontiguousarray(rows[:frame.height, :frame.width])
    return cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)


def _native_fps(rate, times: list[float | None]) -> float:
    """Stream frame rate, else the median timestamp step, else 0 (unknown)."""
    if rate:
        return float(rate)
    t = np.asarray([x for x in times if x is not None], np.float64)
    steps = np.diff(t)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if len(steps) else 0.0


def _transcoded_fields(stored: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-frame fields from an in-memory H.264 re-encode of the stored frames."""
    t, h, w = stored.shape[:3]
    buf = io.BytesIO()
    _encode_h264(iter(stored), (h, w), buf)
    buf.seek(0)
    fields = list(_h264_fields(buf, (h, w)))
    if len(fields) != t:
        raise ExtractionError("motion_vectors", f"H.264 transcode gave {len(fields)} frames, expected {t}")
    return fields


def _encode_h264(frames: Iterator[np.ndarray], hw: tuple[int, int], out) -> int:
    """Encode (H, W, 3) RGB frames with TRANSCODE_OPTIONS into `out` (a file path or BytesIO,
    matroska); returns the number of frames.

    libx264 needs even sizes: frames are edge-padded right/bottom, and the padding is
    never painted because the vectors are read in the unpadded stored pixel space.
    """
    h, w = hw
    n = 0
    try:
        with av.open(out if isinstance(out, io.BytesIO) else str(out), "w", format="matroska") as container:
            st = container.add_stream("libx264", rate=25, options=TRANSCODE_OPTIONS)
            st.width, st.height, st.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            st.thread_count = 1
            for img in frames:
                padded = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                for packet in st.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                    container.mux(packet)
                n += 1
            for packet in st.encode():
                container.mux(packet)
    except av.error.FFmpegError as e:
        raise ExtractionError("motion_vectors", f"H.264 transcode failed: {_ffmpeg_reason(e)}") from e
    return n


def _h264_fields(source, hw: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The (mv, valid, distance) field of each frame of an `_encode_h264` transcode."""
    with _open(source) as (container, stream):
        for _, frame in _decode(container, stream, "motion_vectors"):
            side = frame.side_data.get("MOTION_VECTORS")
            vectors = None if side is None else side.to_ndarray()
            yield frame_field(vectors, hw, hw)  # one reference, one frame back
