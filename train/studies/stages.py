"""The study's stages (`train/study.py` orchestrates them): extract the corpus, pretrain a method
for a seed up to every kept checkpoint, the held-out loss, the probes, fine-tuning; and the
progress line across them. Each stage skips its work where its output exists on disk and writes
its result atomically, so that a killed study resumes. `cfg` is a `train.studies.config.StudyConfig`.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

from train.eval.evaluation import finetune as run_finetune
from train.eval.evaluation import linear_probe
from train.eval.heldout import heldout_baseline, heldout_loss
from train.eval.motion_probe import motion_probe
from train.eval.neighbours import NeighbourRidge, fit_neighbour_ridge
from train.pretraining.config import REPO_ROOT
from train.pretraining.engine import CHECKPOINT, load_checkpoint, train
from train.pretraining.masks import get_mask
from train.pretraining.targets import get_target
from train.studies.config import StudyConfig, parse_method
from train.studies.pool import Chain, Job


# ---- progress -----------------------------------------------------------------------------

class Progress:
    """One line per unit of work: elapsed, done/total of every stage (pretraining steps, held-out
    losses, probes, fine-tunes), the rate of each stage so far, and an ETA from those rates."""

    NAMES = {"train": "steps", "heldout": "held-out", "probe": "probes", "motion": "motion probes",
             "finetune": "fine-tunes"}

    def __init__(self, totals: dict[str, int], log=print):
        self.total = {kind: n for kind, n in totals.items() if n}
        self.count = {kind: 0 for kind in self.total}
        self.log = log
        self.start = time.perf_counter()
        self.work_seconds = {kind: 0.0 for kind in self.total}   # time of the work done in this process
        self.work_units = {kind: 0 for kind in self.total}

    def done(self, kind: str, units: int, seconds: float | None) -> None:
        """`units` steps, probes, ... finished; `seconds` None = skipped (found on disk)."""
        self.count[kind] += units
        if seconds is not None:
            self.work_seconds[kind] += seconds
            self.work_units[kind] += units

    def eta(self) -> float:
        """Seconds left at each stage's pace so far; nan while a stage with work left has no pace yet."""
        eta = 0.0
        for kind, total in self.total.items():
            left = total - self.count[kind]
            if left and self.work_units[kind]:
                eta += left * self.work_seconds[kind] / self.work_units[kind]
            elif left:
                return math.nan
        return eta

    def line(self, what: str) -> None:
        parts = []
        for kind, total in self.total.items():
            rate = (f" @ {self.work_units[kind] / self.work_seconds[kind]:.2g}/s"
                    if self.work_units[kind] and self.work_seconds[kind] > 0 else "")
            parts.append(f"{self.NAMES[kind]} {self.count[kind]}/{total}{rate}")
        self.log(f"[study {_hms(time.perf_counter() - self.start)} | {', '.join(parts)} | "
                 f"ETA {_hms(self.eta())}] {what}")


def _hms(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


# ---- stage 1: extract ---------------------------------------------------------------------------

# The synthetic-motion corpus reads its size and look from these environment variables
# (documented in preprocess/datasets/synthetic_motion.py): part of the extraction CLI's
# interface, like its flags. The study drives the CLI as a subprocess; train/ imports nothing
# from preprocess/.
SYNTH_ENV = {"per_class": "MOTION_MAE_SYNTH_PER_CLASS", "frames": "MOTION_MAE_SYNTH_FRAMES",
             "size": "MOTION_MAE_SYNTH_SIZE", "style": "MOTION_MAE_SYNTH_STYLE", "seed": "MOTION_MAE_SYNTH_SEED"}
EXTRACT_CLI = REPO_ROOT / "preprocess" / "extract.py"


def synth_env(cfg: StudyConfig) -> dict[str, str]:
    """The environment of the extraction subprocess: this study's corpus size and look."""
    values = {"per_class": str(cfg.per_class), "frames": str(cfg.frames), "size": str(cfg.size),
              "style": cfg.style, "seed": "0"}  # one corpus: the generator's default seed
    return {**os.environ, **{SYNTH_ENV[k]: v for k, v in values.items()}}


def extract(cfg: StudyConfig, log) -> dict:
    """Generate and extract the corpus with the extraction CLI (finished videos skipped); counts
    and seconds of the run that did the work (kept in <out>/extract.json, so a resumed study does
    not report 0 s). The counts come from the manifest the CLI writes at the end of every run."""
    shards = cfg.shards_path()
    manifest_path = shards / "manifest.json"
    before = manifest_path.read_text() if manifest_path.exists() else None
    command = [sys.executable, str(EXTRACT_CLI), "--dataset", "synthetic-motion", "--root", str(cfg.root_path()),
               "--out", str(shards), "--workers", str(cfg.extract_workers)]
    start = time.perf_counter()
    tail: list[str] = []
    with subprocess.Popen(command, env=synth_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        for line in proc.stdout:
            log(line.rstrip("\n"))
            tail = (tail + [line.rstrip("\n")])[-20:]
    after = manifest_path.read_text() if manifest_path.exists() else None
    # exit 1 with a fresh manifest = some videos failed (recorded): go on; anything else stops here
    if after is None or (proc.returncode != 0 and after == before):
        raise RuntimeError(f"extraction failed (exit {proc.returncode}): {shlex.join(command)}\n" + "\n".join(tail))
    run = json.loads(after)["run"]
    if run["failed"]:
        log(f"WARNING: {run['failed']} videos failed to extract; the study goes on without them "
            f"(records in {manifest_path})")
    record = {"videos": run["done"] + run["skipped"] + run["failed"], "done": run["done"], "skipped": run["skipped"],
              "failed": run["failed"], "seconds": round(time.perf_counter() - start, 2)}
    path = cfg.out_path() / "extract.json"
    if record["done"] or not path.exists():  # keep the seconds of the run that did the work
        path.write_text(json.dumps(record, indent=2))
    return json.loads(path.read_text())


MOTION_PARAMS_CLI = REPO_ROOT / "preprocess" / "motion_params.py"


def motion_params(cfg: StudyConfig) -> Path:
    """<out>/motion_params.json: the motion every video was generated with (preprocess/motion_params.py,
    a subprocess like the extraction), what the clip-level motion probe regresses; written once."""
    path = cfg.out_path() / "motion_params.json"
    if not path.exists():
        command = [sys.executable, str(MOTION_PARAMS_CLI), str(cfg.root_path()), str(path)]
        done = subprocess.run(command, env=synth_env(cfg), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"motion parameters failed (exit {done.returncode}): {shlex.join(command)}\n"
                               + done.stderr[-2000:])
    return path


# ---- stage 2: pretrain ----------------------------------------------------------------------

def snapshot(checkpoint: Path, dest: Path) -> None:
    """Copy the model part of a checkpoint (what the probe reads), without the optimizer state."""
    ckpt = load_checkpoint(checkpoint)
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scaler", "rng")}
    tmp = dest.with_suffix(".tmp")
    torch.save(keep, tmp)
    os.replace(tmp, dest)


def pretrain(cfg: StudyConfig, method: str, seed: int, progress: Progress, log) -> None:
    """Train `method` for `seed` up to every stop; a stop whose ckpt_<step>.pt exists is skipped."""
    run_cfg = cfg.run_config(method, seed)
    out = Path(run_cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = 0
    for stop in cfg.stops():
        ckpt = out / f"ckpt_{stop}.pt"
        if ckpt.exists():
            progress.done("train", stop - previous, None)
            previous = stop
            continue
        if (out / CHECKPOINT).exists():
            at = int(load_checkpoint(out / CHECKPOINT)["step"])
            if at > stop:
                raise RuntimeError(f"{out / CHECKPOINT} is at step {at}, past the missing {ckpt.name}; "
                                   f"delete {out} to rerun {method} seed {seed}")
        progress.line(f"pretrain {method} seed {seed}: steps {previous} -> {stop} of {cfg.steps}")
        start = time.perf_counter()
        summary = train(replace(run_cfg, stop_at=stop), log=_quiet(log))
        seconds = time.perf_counter() - start
        # the record first: ckpt_<stop>.pt marks the stop done, and collect() reads both
        (out / f"train_{stop}.json").write_text(json.dumps({**summary, "seconds": round(seconds, 2)}, indent=2))
        snapshot(out / CHECKPOINT, ckpt)
        progress.done("train", stop - previous, seconds)
        previous = stop


def run_cost(method: str) -> int:
    """A rank of how long a run of `method` takes on the CPU, for the order runs start in: the
    loader's work per clip (measured at the study's regime: MME's target ~15-20 ms a clip, MGMAE's
    flow ~8-14, MGM's motion vectors ~6-8, pixels ~3)."""
    mask, _, target = parse_method(method)
    return get_mask(mask).cost + get_target(target).cost


def pretrain_job(cfg: StudyConfig, method: str, seed: int) -> dict:
    """A worker process's whole task (train/studies/pool.py): `pretrain` with no loader workers,
    logging to `<run>/pretrain.log`. Returns the loss of its first and last stop."""
    run = cfg.run_dir(method, seed)
    run.mkdir(parents=True, exist_ok=True)
    solo = replace(cfg, train={**cfg.train, "num_workers": 0})
    with open(run / "pretrain.log", "a") as f:
        def log(message: str) -> None:
            f.write(message + "\n")
            f.flush()
        pretrain(solo, method, seed, Progress({"train": cfg.steps}, log), log)
    last = json.loads((run / f"train_{cfg.steps}.json").read_text())
    first = json.loads((run / f"train_{cfg.stops()[0]}.json").read_text())
    return {"first_loss": first.get("first_loss") or math.nan, "last_loss": last.get("last_loss") or math.nan}


def _quiet(log):
    """The engine's log without the config it prints at every (re)start: the study prints it once."""
    def emit(message: str) -> None:
        if message.startswith("motion-mae pretrain"):
            return
        log("    " + message)
    return emit


# ---- stage 3: probe -------------------------------------------------------------------------

class ProbeJob(NamedTuple):
    """One linear probe of the study: `checkpoint` ("random" with `geometry`) into `dest`, with
    `probe_wd` ("cv", a penalty, or {pool: penalty}) for its L2."""
    checkpoint: str
    dest: Path
    what: str
    probe_wd: object
    geometry: dict


def run_probe(options: dict, job: ProbeJob) -> dict:
    """Run one probe and write its JSON (a worker process's whole task): returns the result. Every
    probe reads its views from `options["view_cache"]` (train/eval/view_cache.py): the study's first
    probe decodes them, the rest (every checkpoint and random init of the same geometry) read the
    same uint8 copy."""
    result = linear_probe(job.checkpoint, **options, probe_wd=job.probe_wd, **job.geometry)
    # per val video (sorted ids) whether the main probe got it right: what the "useful" gate resamples
    result["correct"] = [int(p["label"] == p["pred"]) for p in result.pop("predictions").values()]
    write_json(job.dest, result)
    return result


def probe_options(cfg: StudyConfig, parallel: bool) -> dict:
    base = cfg.base_train()
    # probes run side by side each read the view cache in their own process: no loader workers
    return {"shards": str(cfg.shards_path()), "clips": cfg.probe_clips, "encode_batch": cfg.probe_batch,
            "num_workers": 0 if parallel else base.num_workers, "device": base.device,
            "probe_pool": cfg.probe_pool, "probe_folds": cfg.probe_folds, "view_cache": str(cfg.view_cache_path())}


def probe_line(result: dict) -> str:
    return ("    " + ", ".join(f"{how} top-1 {p['top1']:.3f} [{p['top1_ci95'][0]:.3f}, {p['top1_ci95'][1]:.3f}] "
                               f"L2 {p['weight_decay']:g}" for how, p in result["probes"].items())
            + f" (chance {result['chance_top1']:.3f}), {result['seconds']['total']:.1f} s "
              f"(views {result['seconds']['views']:.1f} s)")


WALLS = "walls.json"


def add_wall(out: Path, stage: str, seed: int, seconds: float) -> None:
    """Add `seconds` to the wall time of `stage` ("pretrain", "probe") for seed `seed` in
    `<out>/walls.json`: jobs run side by side overlap, so the report counts this, not the sum of
    their own times."""
    if seconds <= 0:
        return
    walls = stage_walls(out)
    per_seed = walls.setdefault(stage, {})
    per_seed[str(seed)] = round(per_seed.get(str(seed), 0.0) + seconds, 2)
    write_json(out / WALLS, walls)


def stage_walls(out: Path) -> dict[str, dict[str, float]]:
    """{stage: {seed: wall seconds}} recorded by `add_wall` ({} before any)."""
    path = out / WALLS
    return json.loads(path.read_text()) if path.exists() else {}


def pool_size(cfg: StudyConfig, workers: int) -> int:
    """Jobs side by side: `workers` when the study runs on the CPU; on a GPU `gpu_jobs` (each a
    one-thread process with its own CUDA context and no loader workers; 1 = one job at a time in
    this process, with the loader workers of `train.num_workers`)."""
    name = cfg.base_train().device
    name = ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    return workers if torch.device(name).type == "cpu" else cfg.gpu_jobs


def motion_job(cfg: StudyConfig, checkpoint: str, dest: Path, geometry: dict) -> dict:
    """The dense and clip-level motion probes of `checkpoint` ("random" with `geometry`) into `dest`
    (train/eval/motion_probe.py): the centre clip of every train and val video, read once into
    <out>/motion_cache; the clip-level targets from <out>/motion_params.json."""
    base = cfg.base_train()
    params = cfg.out_path() / "motion_params.json"
    result = motion_probe(checkpoint, cfg.shards_path(), cfg.out_path() / "motion_cache",
                          json.loads(params.read_text()) if params.exists() else None,
                          batch_size=cfg.probe_batch, device=base.device, folds=cfg.probe_folds,
                          moving_px=cfg.moving_px, clip_pool=cfg.probe_pool, **geometry)
    write_json(dest, result)
    return result


def motion_line(result: dict) -> str:
    d, c = result["dense"], result["clip"]
    moving = "-" if d["moving_r2"] is None else f"{d['moving_r2']:.3f}"
    clip = "" if c is None else f"; clip-level motion R² {c['r2']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
    return (f"    dense motion R² {d['r2']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}], moving tokens {moving} "
            f"({100 * d['moving_share']:.0f} % of tokens){clip}, {result['seconds']:.1f} s")


def neighbour_predictor(cfg: StudyConfig, method: str) -> NeighbourRidge:
    """The non-learned predictor of `method`'s hidden tokens from its visible ones (ridge from the
    visible neighbours, train/eval/neighbours.py), fit once per method on `heldout_clips` train clips
    and kept in <out>/<method>/neighbours.npz: it depends on the mask, the target and the clips, not
    on the seed's model."""
    path = cfg.out_path() / method / "neighbours.npz"
    if path.exists():
        return NeighbourRidge.load(path)
    fitted = fit_neighbour_ridge(cfg.run_config(method, cfg.seeds[0]), cfg.shards_path(), cfg.heldout_clips,
                                 cfg.probe_batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    fitted.save(path)
    return fitted


def heldout_job(cfg: StudyConfig, checkpoint: str | Path, dest: Path, method: str | None = None) -> dict:
    """The held-out masked loss of `checkpoint` against predicting 0 and the best constant, written
    to `dest`: `heldout_clips` val clips, seed 0 (the same clips and masks for every seed of a method);
    with `method`, the loss of its non-learned predictor on the same clips and masks too."""
    start = time.perf_counter()
    predictor = neighbour_predictor(cfg, method) if method else None
    result = heldout_loss(load_checkpoint(checkpoint), cfg.shards_path(), "val", cfg.heldout_clips,
                          cfg.probe_batch, seed=0, device=cfg.base_train().device, predictor=predictor)
    result["seconds"] = round(time.perf_counter() - start, 2)
    write_json(dest, result)
    return result


def heldout_line(cfg: StudyConfig, result: dict) -> str:
    base = heldout_baseline(result["predict0"], result["predict_mean"])
    ratio = result["loss"] / base
    against = ("" if "predictor_loss" not in result else f"; the visible neighbours' ridge "
               f"{result['predictor_loss']:.4f} (ratio {result['predictor_ratio']:.3f})")
    return (f"    held-out loss {result['loss']:.4f} / best of predict-0 and the best constant {base:.4f} = "
            f"{ratio:.3f} ({'PASS' if ratio <= cfg.gate else 'FAIL'} against {cfg.gate}; predict-0 "
            f"{result['predict0']:.4f}, best constant {result['predict_mean']:.4f}{against}), "
            f"{result['seconds']:.1f} s")


def write_json(dest: Path, result: dict) -> None:
    """`result` as JSON at `dest`, atomically: a killed study never leaves half a result that counts as done."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, dest)


def finetune_job(cfg: StudyConfig, checkpoint: str, dest: Path, options: dict) -> dict:
    """Fine-tune `checkpoint` ("random" with its geometry in `options`) end to end into `dest`;
    `options` (the seed, the geometry, the loader workers) go over `cfg.finetune_options()`."""
    result = run_finetune(checkpoint, str(cfg.shards_path()), **{**cfg.finetune_options(), **options})
    write_json(dest, result)
    return result


def finetune_line(result: dict) -> str:
    return (f"    fine-tuned top-1 {result['top1']:.3f}, top-{result['top5_k']} {result['top5']:.3f} "
            f"(train loss {result['finetune']['first_loss']:.3f} -> {result['finetune']['last_window_loss']:.3f}), "
            f"{result['seconds']['total']:.1f} s")


def random_geometry(cfg: StudyConfig, seed: int) -> dict:
    base = cfg.base_train()
    return {"model": base.model, "num_frames": base.num_frames, "sampling_rate": base.sampling_rate,
            "input_size": base.input_size, "tubelet": base.tubelet, "patch_size": base.patch_size,
            "positions": base.positions, "seed": seed}


# ---- the jobs of one seed, in steps (train/studies/pool.py runs them) ----------------------------

def seed_chains(cfg: StudyConfig, seed: int, progress: Progress, log, workers: int) -> list[Chain]:
    """The chains of `seed` in priority order: each method's run (longest first; `run_cost`), then
    random init. A run's chain: pretrain; then its held-out loss, its last checkpoint's probe (L2
    by cross-validation) and fine-tune side by side; then its earlier checkpoints' probes with the
    L2 the last one chose, per pool (one probe along a run's curve, and the cross-validation, most
    of a probe's CPU time, once per run), and their held-out losses. Work whose output exists is
    counted done, not redone.
    `workers` > 1: the jobs run in one-thread worker processes (no loader workers)."""
    parallel = workers > 1
    options = probe_options(cfg, parallel)

    def todo(stage: str, dest: Path, units: int = 1) -> bool:
        if dest.exists():
            progress.done(stage, units, None)
            return False
        return True

    def probe(checkpoint: str, dest: Path, what: str, probe_wd, geometry: dict) -> Job:
        job = ProbeJob(checkpoint, dest, what, probe_wd, geometry)
        return Job(f"probe {what}", "probe", seed, 1, run_probe, (options, job),
                   done=lambda r, w=what: log(f"probed {w}\n{probe_line(r)}"))

    def heldout(checkpoint: Path, dest: Path, what: str, method: str | None = None) -> Job:
        return Job(f"held-out loss {what}", "heldout", seed, 1, heldout_job, (cfg, checkpoint, dest, method),
                   done=lambda r, w=what: log(f"held-out loss {w}\n{heldout_line(cfg, r)}"))

    def motion(checkpoint: str, dest: Path, what: str, geometry: dict) -> Job:
        return Job(f"motion probe {what}", "motion", seed, 1, motion_job, (cfg, checkpoint, dest, geometry),
                   done=lambda r, w=what: log(f"motion-probed {w}\n{motion_line(r)}"))

    def finetune(checkpoint: str, dest: Path, what: str, extra: dict) -> Job:
        extra = {**extra, **({"num_workers": 0} if parallel else {})}
        return Job(f"fine-tune {what}", "finetune", seed, 1, finetune_job, (cfg, checkpoint, dest, extra),
                   done=lambda r, w=what: log(f"fine-tuned {w}\n{finetune_line(r)}"))

    def run_chain(m: str) -> Chain:
        run = cfg.run_dir(m, seed)
        last = run / f"ckpt_{cfg.steps}.pt"

        def train() -> list[Job]:
            left = [s for s in cfg.stops() if not (run / f"ckpt_{s}.pt").exists()]
            units = cfg.steps - max((s for s in cfg.stops() if s not in left), default=0)
            progress.done("train", cfg.steps - units, None)
            if not left:
                return []
            local = lambda: pretrain(cfg, m, seed, Progress({"train": cfg.steps}, log), log)  # noqa: E731
            return [Job(f"pretrain {m} seed {seed}", "train", seed, units, pretrain_job, (cfg, m, seed), local=local,
                        done=lambda r: log(f"pretrained {m} seed {seed}" + (
                            f": loss {r['first_loss']:.4f} -> {r['last_loss']:.4f}" if r else "")))]

        def after() -> list[Job]:
            what = f"{m} seed {seed} step {cfg.steps}"
            jobs = []
            if todo("heldout", dest := run / f"heldout_{cfg.steps}.json"):
                jobs.append(heldout(last, dest, what, m))   # the last checkpoint against the predictor too
            if todo("probe", run / f"probe_{cfg.steps}.json"):
                jobs.append(probe(str(last), run / f"probe_{cfg.steps}.json", what, cfg.probe_wd, {}))
            if todo("motion", run / f"motion_{cfg.steps}.json"):
                jobs.append(motion(str(last), run / f"motion_{cfg.steps}.json", what, {}))
            if cfg.finetunes and todo("finetune", run / f"finetune_{cfg.steps}.json"):
                jobs.append(finetune(str(last), run / f"finetune_{cfg.steps}.json", what, {"seed": seed}))
            return jobs

        def earlier() -> list[Job]:
            chosen = {how: p["weight_decay"]
                      for how, p in json.loads((run / f"probe_{cfg.steps}.json").read_text())["probes"].items()}
            jobs = []
            for stop in cfg.stops()[:-1]:
                what, ckpt = f"{m} seed {seed} step {stop}", run / f"ckpt_{stop}.pt"
                if todo("probe", run / f"probe_{stop}.json"):
                    jobs.append(probe(str(ckpt), run / f"probe_{stop}.json", what, chosen, {}))
                # the held-out loss along the run too (a few seconds): how fast the gate's ratio falls
                if todo("heldout", dest := run / f"heldout_{stop}.json"):
                    jobs.append(heldout(ckpt, dest, what))
            return jobs

        return Chain([train, after, earlier])

    def random_chain() -> Chain:
        here = cfg.out_path() / "random" / f"seed{seed}"
        what = f"random init seed {seed}"

        def jobs() -> list[Job]:
            out = []
            if cfg.finetunes and todo("finetune", here / "finetune.json"):
                out.append(finetune("random", here / "finetune.json", what, random_geometry(cfg, seed)))
            if todo("probe", here / "probe.json"):
                out.append(probe("random", here / "probe.json", what, cfg.probe_wd, random_geometry(cfg, seed)))
            if todo("motion", here / "motion.json"):
                out.append(motion("random", here / "motion.json", what, random_geometry(cfg, seed)))
            return out

        return Chain([jobs])

    return [run_chain(m) for m in sorted(cfg.methods, key=run_cost, reverse=True)] + [random_chain()]
