"""Extraction speed of two (or more) motion-mae checkouts on the same files, side by side.

    git worktree add /tmp/before 0476a45
    python -m bench.natural --sizes 456x256 --write-corpus /tmp/nat456 --videos 2
    python -m bench.extract_compare /tmp/before . --root /tmp/nat456

Each checkout runs in its own interpreter (its own `preprocess` and `shards` on the path),
all at the same time, each pinned to its own core (`--cores`, Linux), so that whatever
else the machine does weighs on every checkout alike. Every video is extracted and written
to a temporary zarr set `--best-of` times and the fastest run counts. Prints frames per
CPU-second per checkout, extraction alone and with the write.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shards.cli import ArgumentParser, run_main

# Runs inside each checkout's interpreter: only the API every revision since the first has.
_CHILD = r"""
import json, shutil, sys, tempfile, time
from pathlib import Path
import cv2
cv2.setNumThreads(1)
from preprocess.config import ExtractConfig
from preprocess.video import extract_video
from shards.writer import open_writer
root, best_of = sys.argv[1], int(sys.argv[2])
frames, cpu, cpu_write = 0, 0.0, 0.0
tmp = tempfile.mkdtemp()
try:
    writer = open_writer(tmp, format="zarr", config={})
    for i, path in enumerate(sorted(p for p in Path(root).iterdir() if p.is_file())):
        best = None
        for r in range(best_of):
            tic = time.process_time()
            arrays, attrs = extract_video(str(path), ExtractConfig())
            c = time.process_time() - tic
            tic = time.process_time()
            writer.write_video(f"v{i}_{r}", arrays, attrs)
            w = time.process_time() - tic
            if best is None or c + w < sum(best):
                best = (c, w)
        frames += attrs["num_frames"]
        cpu += best[0]
        cpu_write += best[1]
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print(json.dumps({"frames": frames, "frames_per_cpu_s": round(frames / cpu, 1),
                  "with_write": round(frames / (cpu + cpu_write), 1)}))
"""


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.extract_compare", description=__doc__)
    p.add_argument("trees", nargs="+", help="motion-mae checkouts (directories holding preprocess/ and shards/)")
    p.add_argument("--root", required=True, help="folder of videos, the same for every checkout")
    p.add_argument("--best-of", type=int, default=3)
    p.add_argument("--cores", default=None, help="comma-separated core per checkout (default 0, 1, ...)")
    a = p.parse_args(argv)
    cores = [int(c) for c in a.cores.split(",")] if a.cores else list(range(len(a.trees)))
    procs = []
    for tree, core in zip(a.trees, cores):
        env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
        pin = (lambda c=core: os.sched_setaffinity(0, {c})) if hasattr(os, "sched_setaffinity") else None
        procs.append(subprocess.Popen([sys.executable, "-c", _CHILD, a.root, str(a.best_of)], env=env,
                                      cwd=str(Path(tree).resolve()), stdout=subprocess.PIPE, preexec_fn=pin))
    print("| checkout | frames | frames per CPU-s | with the zarr write |\n|---|---|---|---|")
    for tree, proc in zip(a.trees, procs):
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"error: {tree} failed (exit {proc.returncode})")
        r = json.loads(out.decode().strip().splitlines()[-1])
        print(f"| {tree} | {r['frames']} | {r['frames_per_cpu_s']} | {r['with_write']} |")


if __name__ == "__main__":
    run_main(main, "python -m bench.extract_compare")
