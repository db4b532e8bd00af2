"""Per-stage costs on one thread: H.264 decode with and without motion-vector export, DIS flow
presets (time and bias on a fractional pan), the reference tracker's kin in the reader (HOG
cells), each printed; nothing is asserted (shared machines are too noisy for thresholds).

    python -m bench.micro                 # 640x360 decode, 340x256 flow and HOG (about a minute)
    python -m bench.micro --tiny          # tiny sizes, seconds (what the test runs)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from preprocess.decode import decode_video
from preprocess.flow import FlowConfig, forward_flow, warped_flow
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards.cli import ArgumentParser, run_main
from shards.derived import cell_hog

# (preset, finest_scale, patch_stride, gd_iterations): the DIS settings weighed for extraction
DIS_SETTINGS = (("ultrafast", None, None, None), ("ultrafast", 1, None, None), ("fast", 1, None, None),
                ("medium", None, None, None), ("ultrafast", 0, None, None), ("ultrafast", 0, 6, None),
                ("ultrafast", 0, 6, 6), ("ultrafast", 0, 8, 6))


def decode_rates(folder: Path, height: int, width: int, frames: int) -> dict:
    """Frames/s of a plain decode and of one that exports motion vectors (best of 3, one thread),
    and `decode_video`'s stage seconds, on an H.264 clip with B-frames."""
    scene = Scene(height=height, width=width, num_frames=frames, bg_velocity=(2, 1),
                  objects=(MovingObject(min(64, height // 4), (height // 4, height // 4), (3, -2)),))
    path = encode(folder / f"decode_{width}x{height}", render(scene), bframes=2)

    def fps(export_mvs: bool) -> float:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "NONE", 1
            if export_mvs:
                stream.codec_context.options = {"flags2": "+export_mvs"}
            tic, n = time.perf_counter(), 0
            for frame in container.decode(stream):
                if export_mvs:
                    side = frame.side_data.get("MOTION_VECTORS")
                    if side is not None:
                        side.to_ndarray()
                n += 1
            return n / (time.perf_counter() - tic)

    plain, with_mvs = max(fps(False) for _ in range(3)), max(fps(True) for _ in range(3))
    stages = decode_video(path, short_side=height).attrs["timings"]
    return {"plain_fps": plain, "mv_export_fps": with_mvs,
            "stages_s": {k: stages[k] for k in ("decode", "motion_vectors", "ref_distance")}}


def flow_costs(height: int, width: int, frames: int) -> list[dict]:
    """ms per frame pair and the median bias on a (1.5, -0.75) px pan for each DIS setting, then
    the default `warped_flow` (flow and homography ms per frame)."""
    pan = (1.5, -0.75)
    rgb = render(Scene(height=height, width=width, num_frames=frames, bg_velocity=pan, seed=3))
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])
    rows, inner = [], slice(16, -16)
    for preset, scale, stride, gd in DIS_SETTINGS:
        cfg = FlowConfig(dis_preset=preset, finest_scale=scale, patch_stride=stride, gd_iterations=gd)
        start = time.perf_counter()
        raw = np.stack([forward_flow(gray[t], gray[t + 1], cfg) for t in range(len(gray) - 1)])
        ms = (time.perf_counter() - start) / (len(gray) - 1) * 1e3
        bias = np.median(raw[:, inner, inner].reshape(-1, 2), axis=0) - pan
        rows.append({"setting": f"DIS {preset} finest={scale} stride={stride} gd={gd}", "ms_per_pair": ms,
                     "bias_px": [float(bias[0]), float(bias[1])]})
    _, _, _, timings = warped_flow(gray)
    pairs = len(gray) - 1
    rows.append({"setting": "warped_flow default", "ms_per_pair": timings["flow"] / pairs * 1e3,
                 "homography_ms": timings["homography"] / pairs * 1e3})
    return rows


def hog_cost(height: int, width: int, frames: int) -> float:
    """ms per frame of the reader's 8x8-cell HOG."""
    gray = np.random.default_rng(0).integers(0, 255, (frames, height, width), dtype=np.uint8)
    start = time.perf_counter()
    cell_hog(gray)
    return (time.perf_counter() - start) / frames * 1e3


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m bench.micro", description=__doc__)
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds): checks that every stage runs")
    a = p.parse_args(argv)
    dec, flo, hog = ((64, 96, 8), (48, 64, 3), (48, 64, 4)) if a.tiny else ((360, 640, 60), (256, 340, 6),
                                                                           (256, 340, 32))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = {"decode": decode_rates(Path(tmp), *dec), "flow": flow_costs(*flo), "hog_ms": hog_cost(*hog)}
    finally:
        cv2.setNumThreads(threads)
    d = result["decode"]
    print(f"{dec[1]}x{dec[0]} H.264 bframes=2, {dec[2]} frames, 1 thread: plain decode {d['plain_fps']:.0f} fps, "
          f"decode + MV export {d['mv_export_fps']:.0f} fps ({d['mv_export_fps'] / d['plain_fps']:.2f}x); "
          + ", ".join(f"{k} {v:.3f} s" for k, v in d["stages_s"].items()))
    for r in result["flow"]:
        extra = (f"median bias ({r['bias_px'][0]:+.3f}, {r['bias_px'][1]:+.3f}) px" if "bias_px" in r
                 else f"homography {r['homography_ms']:.1f} ms")
        print(f"{r['setting']:<40s} {r['ms_per_pair']:6.1f} ms/pair, {extra}  ({flo[1]}x{flo[0]})")
    print(f"cell_hog: {result['hog_ms']:.2f} ms/frame ({hog[1]}x{hog[0]})")
    return result


if __name__ == "__main__":
    run_main(main, "python -m bench.micro")
