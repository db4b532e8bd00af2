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
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from preprocess.errors import ExtractionError
from preprocess.motion_vectors import drop_unused_lists, frame_field, recover_distances, rotate_vectors
# shared with the reader, which decodes the same frames from the source for `--frames none` sets
from shards.source_frames import frame_times, keep_indices, quarter_turns, stored_rgb, stored_size  # noqa: F401

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
# spans exactly one frame and needs no distance recovery.
TRANSCODE_OPTIONS = {
    "crf": "18", "preset": "veryfast", "bf": "0", "refs": "1", "g": "250",
    "x264-params": "bframes=0:ref=1:scenecut=0:threads=1:log-level=error",
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

    Raises ExtractionError("open" | "decode" | "motion_vectors", reason).
    """
    path = Path(path)
    timings = {"decode": 0.0, "motion_vectors": 0.0, "ref_distance": 0.0}
    _check_file(path)
    window = max_ref_distance if recover_distance and max_ref_distance > 1 else 0
    frames: list[np.ndarray] = []
    times: list[float | None] = []
    pts: list[int | None] = []
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending: dict[int, np.ndarray | None] = {}  # frame index -> vectors, waiting for future references
    source_hws: list[tuple[int, int]] = []
    # source-resolution grey frames still needed: uint8 (the block's own frame) and float32 (references)
    grey: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    all_intra = True  # every frame an I-frame (FFV1 marks them I but not key)
    saw_vectors = False
    stored_hw = None  # in coded orientation, like source_hws
    rotation, turns = 0, 0  # the display matrix's counterclockwise degrees, in quarter turns

    def upright(hw: tuple[int, int]) -> tuple[int, int]:
        return hw[::-1] if turns % 2 else hw

    def finish(t: int) -> None:
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
        fields.append(frame_field(rotate_vectors(vectors, source_hws[t], turns), upright(source_hws[t]),
                                  upright(stored_hw), distances))
        timings["motion_vectors"] += time.perf_counter() - tic

    with _open(path) as (container, stream):
        codec = stream.codec_context.name
        if not allow_images and is_image(container.format.name):
            raise ExtractionError("open", f"image, not a video ({codec} read by FFmpeg's "
                                          f"{container.format.name} demuxer); --allow-images stores "
                                          f"images as one-frame videos")
        native_rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base
        for n, frame in _timed(_decode(container, stream, "decode"), timings, "decode"):
            tic = time.perf_counter()
            source_hw = (frame.height, frame.width)
            if stored_hw is None:
                stored_hw = stored_size(source_hw, short_side)
                rotation, turns = display_rotation(frame)
            # grey and every pix_fmt -> 3 channels; upright as ffmpeg shows it by default
            frames.append(np.rot90(stored_rgb(frame, stored_hw), turns))
            times.append(frame.time)
            pts.append(frame.pts)
            all_intra &= frame.pict_type == av.video.frame.PictureType.I
            timings["decode"] += time.perf_counter() - tic
            tic = time.perf_counter()
            side = frame.side_data.get("MOTION_VECTORS")
            saw_vectors |= side is not None
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
                finish(n - window)
    if not frames:
        raise ExtractionError("decode", f"zero decodable frames in {codec} stream")
    for t in sorted(pending):
        finish(t)

    stored = np.ascontiguousarray(np.stack(frames))
    if saw_vectors or codec in _MV_DECODERS:
        mv_source = MV_STREAM
    elif av.codec.Codec(codec, "r").intra_only or (all_intra and len(frames) > 1):
        mv_source = MV_NONE
    else:
        tic = time.perf_counter()
        fields = _transcoded_fields(stored)
        timings["motion_vectors"] += time.perf_counter() - tic
        mv_source = MV_TRANSCODED
    mv, valid, distance = (np.stack(a) for a in zip(*fields))

    native_fps = _native_fps(native_rate, times)
    out_fps = native_fps
    if fps is not None and 0 < fps < native_fps:
        # the reader of a --frames none set recomputes `keep` from the container's timestamps
        keep = keep_indices(frame_times(pts, time_base, native_fps), fps)
        stored = stored[keep]
        mv, valid, distance = subsample_field(mv, valid, distance, keep)
        out_fps = float(fps)
    h, w = stored.shape[1:3]
    source_h, source_w = upright(source_hws[0])
    attrs = {
        "source": str(path), "fps": out_fps, "native_fps": native_fps,
        "height": h, "width": w, "source_height": source_h, "source_width": source_w,
        "rotation": rotation,
        "num_frames": len(stored), "native_num_frames": len(frames), "codec": codec,
        "mv_source": mv_source, "max_ref_distance": max_ref_distance if window else 1,
        "timings": timings,
    }
    return DecodedVideo(stored, mv.astype(np.float32), valid, distance, attrs)


def is_image(demuxer: str) -> bool:
    """FFmpeg reads still images with `image2` (by file name) or a `<codec>_pipe` demuxer
    (by content: png_pipe, jpeg_pipe, webp_pipe, ...); no video container is named so."""
    return demuxer == "image2" or demuxer.endswith("_pipe")


def display_rotation(frame: av.VideoFrame) -> tuple[int, int]:
    """(degrees, quarter turns) the frame's display matrix rotates it counterclockwise.

    FFmpeg's default (`-autorotate`) shows such a video upright: a phone held upright
    codes landscape frames with a -90 degree matrix, shown rotated clockwise to portrait.
    We store frames upright the same way (np.rot90 turns counterclockwise). Angles that
    are not a multiple of 90 (never seen from cameras) go to the nearest quarter turn;
    mirroring flags of the matrix are not applied (docs/reliability.md)."""
    degrees = int(round(frame.rotation or 0))
    return degrees, quarter_turns(degrees)


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
    """Per-frame fields from an in-memory H.264 re-encode of the stored frames.

    libx264 needs even sizes: frames are edge-padded right/bottom, and the padding is
    never painted because the vectors are read in the unpadded stored pixel space.
    """
    t, h, w = stored.shape[:3]
    padded = np.pad(stored, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format="matroska") as out:
            st = out.add_stream("libx264", rate=25, options=TRANSCODE_OPTIONS)
            st.width, st.height, st.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
            st.thread_count = 1
            for img in padded:
                for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in st.encode():
                out.mux(packet)
    except av.error.FFmpegError as e:
        raise ExtractionError("motion_vectors", f"H.264 transcode failed: {_ffmpeg_reason(e)}") from e
    buf.seek(0)
    fields = []
    with _open(buf) as (container, stream):
        for _, frame in _decode(container, stream, "motion_vectors"):
            side = frame.side_data.get("MOTION_VECTORS")
            vectors = None if side is None else side.to_ndarray()
            fields.append(frame_field(vectors, (h, w), (h, w)))  # one reference, one frame back
    if len(fields) != t:
        raise ExtractionError("motion_vectors", f"H.264 transcode gave {len(fields)} frames, expected {t}")
    return fields
