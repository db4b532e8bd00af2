"""Every method's clip, side by side: ms per 16x224 clip on one core, and the cores one GPU needs.

    python -m bench.clips --shards /work/data/k400like/schema2                # this checkout
    python -m bench.clips --side before /tmp/main /work/data/k400like/schema2 \\
                          --side after . /work/data/k400like/schema2 --json run.json
    python -m bench.clips --from-json before.json after.json                  # reprint saved runs

What is timed: `train.clips.dataset.read_clip_at` (frames + the motion arrays the method's mask and
target need, crop, resize, normalize) for VideoMAE (tube+pixel), MGM (mgm+pixel), MGMAE
(mgmae+pixel; also as its K400 recipe reads, 4 crops per video read, ms per crop) and MME
(tube+mme), on the same clips (training's frame sampling; the centre square of the full short
side, as bench.loader, or with `--crops train` training's random boxes, 0.66-1 of the short
side: the largest box is the worst case, training's the average a loader worker pays; MME's
HOG is computed on the box, the other methods barely depend on it). Single-threaded: torch and OpenCV one
thread each. Methods run round-robin, `--rounds` rounds after one untimed warm-up round (it
opens every video once, as a training worker does), the method order rotated each round;
the table gives the median over rounds x clips of wall and CPU (process) ms per clip.
The mask column: the method's mask on a batch of 8 of those clips, CPU ms per clip. It runs in
the loader's workers with the batch (`train.clips.dataset.MaskCollate`), so what a worker spends
on a clip is the read plus the mask (what the cores-per-GPU columns count).

`--device-side NAME CHECKOUT SHARDS` is a side whose clips are assembled on the training
device (`assemble: device`, train/clips/assemble.py): what it times is the worker's share only (the
JPEG bytes read, the motion arrays, the grey frames MME's HOG needs); the decode, crop, resize
and normalize it leaves to the device are not in its numbers. `--uint8-side` likewise times
`assemble: uint8`: the whole clip but the normalize, which the device does.

Sides: each `--side NAME CHECKOUT SHARDS` runs in its own process that imports `shards` and
`train` from CHECKOUT (bench/clip_worker.py), so an older checkout (`git worktree add
/tmp/main main`, or `git archive main | tar -x -C /tmp/main`) is measured with its own
loader on its own shard set; sides alternate round by round, so the machine's load falls on
every side alike. The clip plan is drawn by the
first side and read by all (the sets must hold the same videos).

The budget, as cores per GPU: a GPU that trains R clips/s needs R x (ms a clip) / 1000 loader
cores (`bench.budget`), with the ms a clip here of each side, the read plus the mask (what a
worker spends on it), in that side's assembly mode. R is each method's measured ViT-B 16x224
rate on an H200 unless `--gpu-clips-per-s` gives one rate for all (docs/benchmarks.md, "GPU").
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from shards.cli import ArgumentParser, run_main
from train.methods import METHODS as PUBLISHED

from .budget import H200_CLIPS_PER_S, cores_per_gpu
from .clip_worker import CROPS

# name -> (mask, target, crops per video read, trajectory steps (0 = the shards')); MGMAE's K400
# recipe takes 4 crops of each video read (repeated_aug 4, train/configs/mgmae_k400.yaml) and
# MME's K400 recipe tracks 4 steps (traj_len 4, train/configs/mme_k400.yaml) where the shards
# hold the paper's 6, so both are timed both ways
METHODS = {**{m.name: (m.mask, m.target, 1, 0) for m in PUBLISHED.values()},
           "MGMAE x4 crops": (PUBLISHED["mgmae"].mask, PUBLISHED["mgmae"].target, 4, 0),
           "MME L=4": (PUBLISHED["mme"].mask, PUBLISHED["mme"].target, 1, 4)}
WORKER = Path(__file__).resolve().with_name("clip_worker.py")
OPEN = "_open"  # as bench.clip_worker.OPEN: the times of the videos a round opened first


class Side:
    """A worker process reading clips with one checkout's code."""

    def __init__(self, name: str, checkout: str, shards: str, assemble: str = "loader"):
        self.name, self.checkout, self.shards = name, str(Path(checkout).resolve()), shards
        self.assemble = assemble
        self.proc = subprocess.Popen([sys.executable, str(WORKER), self.checkout, shards, assemble], cwd=self.checkout,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"side {self.name!r} ({self.checkout}) stopped: see its messages above")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run(sides: list[tuple], clips: int, rounds: int, seed: int = 0, num_frames: int = 16,
        stride: int = 4, size: int = 224, crops: str = "full") -> dict:
    """-> {"sides": {name: {"checkout", "shards", "methods": {method: {"wall_ms", "cpu_ms", "mask_cpu_ms"}}}}, ...}"""
    workers = [Side(*s) for s in sides]
    try:
        plan = workers[0].ask(op="plan", clips=clips, seed=seed, num_frames=num_frames, stride=stride, crops=crops)
        names = list(METHODS)
        samples = {w.name: {m: {"wall": [], "cpu": [], "mask_cpu": []} for m in names} for w in workers}
        opens = {w.name: {"wall": [], "cpu": []} for w in workers}
        for r in range(rounds + 1):
            order = names[r % len(names):] + names[:r % len(names)]
            for w in (workers if r % 2 == 0 else workers[::-1]):
                got = w.ask(op="round", clips=plan, methods=[[m, *METHODS[m]] for m in order], size=size)
                if OPEN in got:  # the warm-up's first open of every video, timed apart from the clips
                    opens[w.name]["wall"] += got[OPEN]["wall"]
                    opens[w.name]["cpu"] += got[OPEN]["cpu"]
                if r == 0:
                    continue  # warm-up: first opening of every video
                for m in order:
                    if m not in got:
                        continue  # a method this side's checkout cannot read (e.g. no trainer traj_len)
                    g = got[m]
                    s = samples[w.name][m]
                    s["wall"] += g["wall"]
                    s["cpu"] += g["cpu"]
                    s["mask_cpu"].append(g["mask_cpu"])
    finally:
        for w in workers:
            w.close()

    def ms(x: list[float]) -> float | None:
        return round(1000 * float(np.median(x)), 1) if x else None

    return {"machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
            "clips": clips, "rounds": rounds, "seed": seed, "clip": f"{num_frames}x{size}x{size}, stride {stride}",
            "crops": crops,
            "sides": {w.name: {"checkout": w.checkout, "shards": w.shards, "assemble": w.assemble,
                               "methods": {m: {"wall_ms": ms(s["wall"]), "cpu_ms": ms(s["cpu"]),
                                               "mask_cpu_ms": ms(s["mask_cpu"])}
                                           for m, s in samples[w.name].items()},
                               "open": {"videos": len(opens[w.name]["wall"]), "wall_ms": ms(opens[w.name]["wall"]),
                                        "cpu_ms": ms(opens[w.name]["cpu"])}}
                      for w in workers}}


def gpu_rate(method: str, gpu_clips_per_s: float | None = None) -> float:
    """The clips/s one GPU trains of a row's method: the given rate, or the H200's for its method."""
    return gpu_clips_per_s or H200_CLIPS_PER_S[method.split()[0].lower()]


def table(result: dict, gpu_clips_per_s: float | None = None) -> str:
    """One Markdown table: a row per method, wall / CPU ms per side, the mask's CPU ms, and the
    loader cores per GPU each side's clip (read + mask, wall) needs at the GPU's clips/s."""
    sides = result["sides"]
    head = ["method (mask+target)"] + [f"{n} wall ms" for n in sides] + [f"{n} CPU ms" for n in sides] \
        + [f"{n} mask ms" for n in sides] \
        + [f"{n} ({s.get('assemble', 'loader')}) cores per GPU" for n, s in sides.items()] + ["GPU clips/s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, (mask, target, *_) in METHODS.items():
        cells = [f"{m} ({mask}+{target})"]
        for key in ("wall_ms", "cpu_ms", "mask_cpu_ms"):
            for side in sides.values():
                v = side["methods"].get(m, {}).get(key)
                cells.append("-" if v is None else f"{v}")
        rate = gpu_rate(m, gpu_clips_per_s)
        for side in sides.values():
            got = side["methods"].get(m, {})
            if got.get("wall_ms") is None:
                cells.append("-")
            else:
                cells.append(f"{cores_per_gpu(rate, got['wall_ms'] + (got.get('mask_cpu_ms') or 0.0)):.1f}")
        cells.append(f"{rate:g}")
        rows.append("| " + " | ".join(cells) + " |")
    opened = [f"{n} {s['open']['wall_ms']} wall / {s['open']['cpu_ms']} CPU ms" for n, s in sides.items()
              if s.get("open", {}).get("videos")]
    if opened:  # runs saved before the open was timed have none
        rows.append(f"\nOpening a video (its metadata, first read; median over the videos): {'; '.join(opened)}. "
                    "A loader reopens a video for most clips of a corpus larger than the 1024 it keeps open per worker.")
    return "\n".join(rows)


def merge(results: list[dict]) -> dict:
    """Saved runs -> one result with every side (later files win on equal names)."""
    out = dict(results[0])
    out["sides"] = {n: s for r in results for n, s in r["sides"].items()}
    return out


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m bench.clips", description=__doc__)
    p.add_argument("--shards", help="shard set, read by this checkout (one side named 'this')")
    p.add_argument("--side", nargs=3, action="append", metavar=("NAME", "CHECKOUT", "SHARDS"), default=[],
                   help="a side to measure; repeat for side-by-side (interleaved round by round)")
    p.add_argument("--device-side", nargs=3, action="append", metavar=("NAME", "CHECKOUT", "SHARDS"), default=[],
                   help="a side whose frames are assembled on the device (assemble: device): the worker's share")
    p.add_argument("--uint8-side", nargs=3, action="append", metavar=("NAME", "CHECKOUT", "SHARDS"), default=[],
                   help="a side whose clips travel as uint8 levels, normalized on the device (assemble: uint8)")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crops", choices=CROPS, default="full",
                   help="the box each clip reads: the full short side's centre square (the largest), or "
                        "training's random boxes (default: full)")
    p.add_argument("--gpu-clips-per-s", type=float, default=None,
                   help="clips/s one GPU trains, for the cores-per-GPU columns (default: each method's ViT-B "
                        "16x224 rate measured on an H200, bench/budget.py)")
    p.add_argument("--json", help="write the result here (reprint or merge with --from-json)")
    p.add_argument("--from-json", nargs="+", metavar="FILE", help="print the table of saved runs, no timing")
    a = p.parse_args(argv)
    if a.from_json:
        result = merge([json.loads(Path(f).read_text()) for f in a.from_json])
    else:
        sides = ([tuple(s) for s in a.side] + [(*s, "device") for s in a.device_side]
                 + [(*s, "uint8") for s in a.uint8_side]
                 + ([("this", str(Path(__file__).resolve().parents[1]), a.shards)] if a.shards else []))
        if not sides:
            p.error("give --shards SET or at least one --side / --device-side / --uint8-side NAME CHECKOUT SHARDS")
        result = run(sides, a.clips, a.rounds, a.seed, crops=a.crops)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    print(f"{result['clip']} clips, {result.get('crops', 'full')} crops, {result['clips']} clips x {result['rounds']} rounds, medians; "
          f"one torch / OpenCV thread; {result['machine']}")
    print(table(result, a.gpu_clips_per_s))


if __name__ == "__main__":
    run_main(main, "python -m bench.clips")
