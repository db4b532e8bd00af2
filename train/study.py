"""Reproduce, at small scale: every method, one small ViT, one budget, several seeds; does
pretraining learn (held-out loss against the better of predicting 0 and the best constant, and
against a non-learned predictor from the visible tokens), how much motion do its frozen features
hold (dense and clip-level motion probes), what does a layout-preserving linear probe see, against
random init, and the pre-registered contrasts of the 2 x 2 {tube, MGM} x {pixel, MME}.

    python train/study.py                                   # the default study (train/configs/study.yaml)
    python train/study.py --tiny --out /tmp/study           # the CI version: 15-100 s on 2 cores
    python train/study.py --seeds 0,1 --methods tube+pixel,mgm@0.75+pixel --steps 300 --out runs/study300
    python train/study.py --device cuda --gpu-jobs 12 --steps 2400   # on a GPU: the same study, only the
                                                            # budget changes; 12 jobs side by side on it

For one short GPU window, `python -m train.studies.gpu_window` prepares the clips, masks and
targets once on the CPU and runs the study's 2 x 2 {tube, mgm} x {pixel, mme} from one file held on
the GPU (train/studies/gpu_window.py; docs/results.md, "GPU mode").

On a GPU the study runs unchanged except for the budget: `--device` (auto picks cuda when there
is one; the default), `--batch-size`, `--steps`, `--num-workers` and `--finetune-steps` set what a
GPU run needs, or the same fields in study.yaml. The probes' L-BFGS fits run on the same device.

The data flow, each stage skipped where its output exists (a killed study resumes):

1. **extract** the synthetic-motion corpus (`preprocess/extract.py`, a subprocess; finished
   videos are skipped) and write the motion each video was generated with
   (`preprocess/motion_params.py`, a subprocess: `<out>/motion_params.json`);
2. **pretrain** every method (`mask[@ratio]+target`; the ratio defaults to the target's) for every
   seed with one `TrainConfig` (`train/configs/study.yaml`); each run stops at every checkpoint
   fraction of the budget (`stop_at`, the schedule fixed by `max_steps`), copies `checkpoint.pt` to
   `ckpt_<step>.pt`, and resumes from it (exact resume: the same clips and masks as one uninterrupted run);
3. **held-out loss** of every kept checkpoint of every run (`train/heldout.py`): its masked loss
   on `heldout_clips` val clips drawn class-balanced (fixed seed: the same clips and masks for every
   run of a method) against the better of predicting 0 and the best constant per target channel;
   at the last checkpoint also the loss of a non-learned predictor on the same clips and masks
   (ridge from the visible neighbours' targets, fit once per method on train clips:
   `train/eval/neighbours.py`), the bar of the "learns" gate;
4. **probe** every kept checkpoint, and a random-init encoder of the same geometry per seed,
   with `train.eval.evaluation.linear_probe` on the val split: the layout-preserving pool
   (`probe_pool`) and the token mean, L2 by cross-validation on the train split, a 95 %
   bootstrap interval over val videos each; and the **motion probes** of the last checkpoint and of
   random init (`train/eval/motion_probe.py`): dense (each token -> its camera-compensated
   displacement, all and moving tokens) and clip-level (pooled features -> the generator's motion
   parameters), val R² with a bootstrap over videos;
5. **fine-tune** (only with `finetune.max_steps > 0`; off by default) the last checkpoint of
   every run and the random-init encoder per seed for the same number of steps; reported only
   where its std over seeds is below `finetune_max_std` (earlier studies: bimodal);
6. **report**: `<out>/results.json`, a markdown report (`docs/results.md` for the default study)
   whose generated part sits between two markers (text outside them is kept), and plots:
   probe top-1 against pretraining steps (both pools), per-seed dots, the pretraining loss;
   the gates per method ("learns": the held-out ratio's interval below 1, falling, below the
   non-learned predictor's; "useful": the probe above random init with a hierarchical bootstrap
   over seeds and videos), the motion probes with each readout's minimum detectable difference,
   the pre-registered contrasts (`CONTRASTS`, paired over seeds, Holm-adjusted per readout, a
   verdict and a minimum detectable difference each), and the wall time per stage.

Layout of `--out` (default runs/study): `<method>/seed<k>/` (checkpoint.pt, ckpt_<step>.pt,
train_<step>.json, probe_<step>.json, heldout_<step>.json, finetune_<step>.json, motion_<step>.json,
metrics.jsonl), `<method>/neighbours.npz` (its non-learned predictor), `random/seed<k>/{probe,finetune,
motion}.json`, `view_cache/` (the probes' views as uint8, decoded by the first probe, read by the rest:
train/eval/view_cache.py), `motion_cache/` (every video's centre clip and its token displacements, read
once), `motion_params.json`, `extract.json`, `study.json`, `results.json`.

How long: docs/results.md, "How long it takes" (the default: seven methods x 5 seeds, 2 cores,
measured from nothing). Every run, held-out loss and probe of every seed
goes through one pool of max(`parallel_runs`, `probe_workers`) one-thread processes on the CPU,
each job as soon as what it reads is on disk (train/studies/pool.py); on a GPU, one at a time in
this process, or `--gpu-jobs N` processes side by side (one thread and no loader workers each: a
study-sized model leaves a large GPU idle one job at a time).

Here: the settings (`StudyConfig`), the order of the stages, collecting their results, the
CLI. The stages themselves: `train/studies/stages.py`; the report and plots, pure functions of
`results.json`: `train/studies/report.py`; the statistics: `train/studies/stats.py`.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # `python train/study.py` as well as `python -m train.study`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from shards.cli import UsageError, run_main  # noqa: E402
from shards.cli import ArgumentParser  # noqa: E402
from train.pretraining.config import load_file  # noqa: E402
from train.studies.config import (CONTRASTS, DEFAULT_CONFIG, DEFAULT_OUT, METHODS, TINY, StudyConfig,  # noqa: E402
                                  method_paper, parse_method)
from train.studies.pool import run_chains  # noqa: E402
from train.studies.stages import (Progress, add_wall, extract, motion_params, pool_size, seed_chains,  # noqa: E402
                                stage_walls, write_json)
from train.studies.report import format_finetuned, format_mean_std, machine, write_report  # noqa: E402
from train.eval.heldout import heldout_baseline  # noqa: E402
from train.studies.stats import (gate, hierarchical_bootstrap, holm_family, holm_interval, mdd, mean_std,  # noqa: E402
                                 paired, readout_mdd, stable, unpaired_se, verdict)

def _loss_curve(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row  # a resumed segment may log a step again: keep the latest
    return [rows[s] for s in sorted(rows)]


def _probe_rows(results: list[dict]) -> dict:
    """Probe results of one checkpoint over seeds -> per pool: top-1 over seeds (mean, std, t
    interval), the mean bootstrap-over-videos interval, each seed's chosen L2."""
    rows = {}
    for how in results[0]["probes"]:
        ps = [r["probes"][how] for r in results]
        rows[how] = {"top1": mean_std([p["top1"] for p in ps]), "top5": mean_std([p["top5"] for p in ps]),
                     "videos_ci95": [float(np.mean([p["top1_ci95"][0] for p in ps])),
                                     float(np.mean([p["top1_ci95"][1] for p in ps]))],
                     "videos_halfwidth": float(np.mean([(p["top1_ci95"][1] - p["top1_ci95"][0]) / 2 for p in ps])),
                     "weight_decay": [p["weight_decay"] for p in ps]}
    return rows


def _ratio(heldout: dict) -> float:
    """The gate's ratio of a heldout_<step>.json: against the better of predict-0 and the best
    constant (`heldout_baseline`; predict-0 alone in files from before the constant was recorded)."""
    return heldout["loss"] / heldout_baseline(heldout["predict0"], heldout.get("predict_mean", heldout["predict0"]))


def collect(cfg: StudyConfig, extract_record: dict, command: str) -> dict:
    """Everything the runs, probes and held-out losses left on disk -> the study's results dict (JSON-ready)."""
    base = cfg.base_train()
    stops = cfg.stops()
    n_train = None
    methods = {}
    seconds = {"extract": extract_record.get("seconds", 0.0), "pretrain": 0.0, "heldout": 0.0, "probe": 0.0}
    if cfg.finetunes:
        seconds["finetune"] = 0.0

    def finetuned(paths: list[Path]) -> dict | None:
        """Top-1 / top-5 over seeds and train loss of the fine-tuning results at `paths`, and whether
        the top-1 is stable enough over seeds to be reported (None: no such stage)."""
        if not cfg.finetunes:
            return None
        rs = [json.loads(x.read_text()) for x in paths]
        seconds["finetune"] += sum(r["seconds"]["total"] for r in rs)
        top1 = mean_std([r["top1"] for r in rs])
        return {"top1": top1, "top5": mean_std([r["top5"] for r in rs]),
                "last_loss": mean_std([r["finetune"]["last_window_loss"] for r in rs]),
                "steps": rs[0]["finetune"]["steps"], "stable": stable(top1["std"], top1["n"], cfg.finetune_max_std)}

    probe_sum = dict.fromkeys(cfg.seeds, 0.0)  # each probe's own time, per seed
    pretrain_sum = dict.fromkeys(cfg.seeds, 0.0)  # each run's own time, per seed
    heldout_sum = dict.fromkeys(cfg.seeds, 0.0)
    for method in cfg.methods:
        probes = {s: [] for s in stops}
        ratios = {s: [] for s in stops}  # the gate's ratio at each checkpoint, per seed that has it
        losses, run_seconds, held = [], [], []
        for seed in cfg.seeds:
            run = cfg.run_dir(method, seed)
            total = 0.0
            for s in stops:
                p = json.loads((run / f"probe_{s}.json").read_text())
                p["seed"] = seed
                probes[s].append(p)
                n_train = p["videos"]["train"]
                probe_sum[seed] += p["seconds"]["total"]
                total += json.loads((run / f"train_{s}.json").read_text())["seconds"]
            run_seconds.append(total)
            pretrain_sum[seed] += total
            heldouts = {s: json.loads((run / f"heldout_{s}.json").read_text())
                        for s in stops if s == cfg.steps or (run / f"heldout_{s}.json").exists()}
            for s, x in heldouts.items():
                heldout_sum[seed] += x["seconds"]
                ratios[s].append(_ratio(x))
            h = heldouts[cfg.steps]
            # the gate's baseline: the better of predict-0 and the best constant per target channel
            # (~0 for per-token normalized targets; for parts not centred, MME's HOG and its
            # trajectories with target_norm none, their mean), cross-fitted and so sometimes worse than 0
            predict_mean = h.get("predict_mean", h["predict0"])
            held.append({"seed": seed, **{k: h[k] for k in ("loss", "predict0", "clips")},
                         "per_class": h.get("per_class", {}), "predict_mean": predict_mean,
                         "baseline": heldout_baseline(h["predict0"], predict_mean), "ratio": _ratio(h),
                         "predictor": h.get("predictor_loss"), "predictor_ratio": h.get("predictor_ratio")})
            curve = _loss_curve(run)
            if curve:
                losses.append({"seed": seed, "first": curve[0]["loss"], "last": curve[-1]["loss"],
                               "min": min(r["loss"] for r in curve),
                               "curve": [[r["step"], round(r["loss"], 5)] for r in curve]})
        # the ratio at every checkpoint, where every seed has it (older study folders hold the last only)
        by_step = {str(s): mean_std(r) for s, r in ratios.items() if len(r) == len(cfg.seeds)}
        mask, _, target = parse_method(method)
        motions = [json.loads((cfg.run_dir(method, seed) / f"motion_{cfg.steps}.json").read_text())
                   for seed in cfg.seeds]
        methods[method] = {
            "paper": method_paper(method), "mask": mask, "target": target,
            "mask_ratio": cfg.run_config(method, cfg.seeds[0]).ratio,
            "checkpoints": [{"step": s, "probes": _probe_rows(probes[s]),
                             "per_seed": {str(p["seed"]): {how: x["top1"] for how, x in p["probes"].items()}
                                          for p in probes[s]}} for s in stops],
            "heldout": {"per_seed": held, "ratio": mean_std([h["ratio"] for h in held]), "by_step": by_step,
                        "predictor_ratio": (float(np.mean([h["predictor_ratio"] for h in held]))
                                            if all(h["predictor_ratio"] is not None for h in held) else None),
                        "predict0": mean_std([h["predict0"] for h in held]),
                        "predict_mean": mean_std([h["predict_mean"] for h in held]),
                        "baseline": mean_std([h["baseline"] for h in held]),
                        "gate": gate([h["ratio"] for h in held], cfg.gate)},
            "motion": motion_rows(motions, cfg.seeds),
            "correct": {str(p["seed"]): p["correct"] for p in probes[cfg.steps] if "correct" in p},
            "loss": losses, "pretrain_seconds": mean_std(run_seconds),
            "finetune": finetuned([cfg.run_dir(method, seed) / f"finetune_{cfg.steps}.json" for seed in cfg.seeds]),
        }
    randoms = [{**json.loads((cfg.out_path() / "random" / f"seed{seed}" / "probe.json").read_text()), "seed": seed}
               for seed in cfg.seeds]
    random_motion = [json.loads((cfg.out_path() / "random" / f"seed{seed}" / "motion.json").read_text())
                     for seed in cfg.seeds]
    for r in randoms:
        probe_sum[r["seed"]] += r["seconds"]["total"]
    motion_sum = {seed: sum(x["seconds"] for x in [random_motion[i]] + [
        json.loads((cfg.run_dir(m, seed) / f"motion_{cfg.steps}.json").read_text()) for m in cfg.methods])
        for i, seed in enumerate(cfg.seeds)}
    # wall time: jobs side by side overlap, so each stage counts its share of the pool's wall time
    # (walls.json, train/studies/pool.py); where a seed has no record, the jobs' own times summed
    walls = stage_walls(cfg.out_path())
    seconds["probe"] = sum(walls.get("probe", {}).get(str(seed), probe_sum[seed]) for seed in cfg.seeds)
    seconds["pretrain"] = sum(walls.get("pretrain", {}).get(str(seed), pretrain_sum[seed]) for seed in cfg.seeds)
    seconds["heldout"] = sum(walls.get("heldout", {}).get(str(seed), heldout_sum[seed]) for seed in cfg.seeds)
    seconds["motion"] = sum(walls.get("motion", {}).get(str(seed), motion_sum[seed]) for seed in cfg.seeds)
    if cfg.finetunes and set(walls.get("finetune", {})) >= {str(seed) for seed in cfg.seeds}:
        seconds["finetune"] = sum(walls["finetune"][str(seed)] for seed in cfg.seeds)
    first = randoms[0]
    pools = list(first["probes"])
    random_rows = _probe_rows(randoms)
    for m in methods.values():
        for c in m["checkpoints"]:
            c["clips_seen"] = c["step"] * base.batch_size
            c["epochs"] = round(c["clips_seen"] / n_train, 3)
        last = m["checkpoints"][-1]
        m["vs_random"] = {how: unpaired_se([v[how] for v in last["per_seed"].values()],
                                           random_rows[how]["top1"]["values"]) for how in pools}
    comparisons = []
    for _, a, b in CONTRASTS:
        if a in methods and b in methods:
            for c_a, c_b in zip(methods[a]["checkpoints"], methods[b]["checkpoints"]):
                comparisons.append({"a": a, "b": b, "step": c_a["step"], "epochs": c_a["epochs"], **{
                    how: paired({k: v[how] for k, v in c_a["per_seed"].items()},
                                {k: v[how] for k, v in c_b["per_seed"].items()}) for how in pools}})
    random_init = {"probes": random_rows,
                   "per_seed": {str(r["seed"]): {how: x["top1"] for how, x in r["probes"].items()} for r in randoms},
                   "correct": {str(r["seed"]): r["correct"] for r in randoms if "correct" in r},
                   "motion": motion_rows(random_motion, cfg.seeds),
                   "finetune": finetuned([cfg.out_path() / "random" / f"seed{seed}" / "finetune.json"
                                          for seed in cfg.seeds])}
    for m in methods.values():
        m["useful"] = useful(m, random_init, pools[0])
        m["learns"] = learns(m)
    return {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine(),
        "device": str(first.get("device", base.device)),
        "study": cfg.to_dict(),
        "train_config": {k: v for k, v in base.to_dict().items() if k not in ("mask", "target", "seed", "out")},
        "corpus": {"name": cfg.corpus_name(), "shards": str(cfg.shards_path()), "train_videos": n_train,
                   "val_videos": first["videos"]["val"], "classes": first["num_classes"],
                   "class_names": first["class_names"], **{f"extract_{k}": v for k, v in extract_record.items()}},
        "budget": {"steps": cfg.steps, "batch_size": base.batch_size, "clips_seen": cfg.steps * base.batch_size,
                   "epochs": round(cfg.steps * base.batch_size / n_train, 2), "seeds": len(cfg.seeds)},
        "chance_top1": first["chance_top1"], "top5_k": first["top5_k"],
        "pools": pools,
        "probe": {"clips": cfg.probe_clips, "folds": cfg.probe_folds, "weight_decay": cfg.probe_wd,
                  "grid": first["config"]["probe_wd_grid"], "bootstrap": first["config"]["probe_bootstrap"]},
        "random_init": random_init,
        "methods": methods,
        "comparisons": comparisons,
        **readouts(methods, random_init, pools, cfg.steps),
        "gate": cfg.gate,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "wall_minutes": round(sum(seconds.values()) / 60, 1),
    }


MOTION_READOUTS = ("dense_r2", "moving_r2", "speed_r2", "clip_r2")   # train/eval/motion_probe.py, per seed


def motion_rows(results: list[dict], seeds) -> dict:
    """Motion-probe results of one encoder over seeds -> each readout over seeds (mean, std, t
    interval; a readout some seed lacks is left out), the mean half-width of the bootstrap interval
    over val videos, each clip-level parameter's R² and each seed's readouts."""
    per_seed = {}
    for seed, r in zip(seeds, results):
        d, c = r["dense"], r["clip"]
        per_seed[str(seed)] = {"dense_r2": d["r2"], "moving_r2": d["moving_r2"], "speed_r2": d["speed_r2"],
                               "clip_r2": c and c["r2"]}
    out = {name: mean_std([v[name] for v in per_seed.values()]) for name in MOTION_READOUTS
           if all(v[name] is not None for v in per_seed.values())}
    out["halfwidth"] = {"dense_r2": float(np.mean([(r["dense"]["ci95"][1] - r["dense"]["ci95"][0]) / 2
                                                   for r in results]))}
    for name, key in (("moving_r2", "moving_ci95"), ("speed_r2", "speed_ci95")):
        if name in out:
            out["halfwidth"][name] = float(np.mean([(r["dense"][key][1] - r["dense"][key][0]) / 2 for r in results]))
    if "clip_r2" in out:
        out["halfwidth"]["clip_r2"] = float(np.mean([(r["clip"]["ci95"][1] - r["clip"]["ci95"][0]) / 2
                                                     for r in results]))
        out["per_param"] = {k: mean_std([r["clip"]["per_param"][k] for r in results])
                            for k in results[0]["clip"]["per_param"]}
    out["moving_share"] = float(np.mean([r["dense"]["moving_share"] for r in results]))
    out["per_seed"] = per_seed
    return out


def seed_readouts(m: dict, pools: list[str]) -> dict[str, dict[str, float]]:
    """readout -> {seed: value} of an encoder at the last checkpoint: the motion probes', then each
    pool's top-1."""
    motion = m["motion"]
    out = {name: {s: v[name] for s, v in motion["per_seed"].items()} for name in MOTION_READOUTS if name in motion}
    last = m["checkpoints"][-1]["per_seed"] if "checkpoints" in m else m["per_seed"]
    out.update({how: {s: v[how] for s, v in last.items()} for how in pools})
    return out


def readouts(methods: dict, random_init: dict, pools: list[str], step: int) -> dict:
    """The readouts' minimum detectable differences and the pre-registered contrasts (CONTRASTS) on
    every readout: paired over seeds, each readout's contrasts one Holm family, a verdict and the
    minimum detectable difference (from the contrast's own spread of per-seed differences) each."""
    names = [*(n for n in MOTION_READOUTS if all(n in m["motion"] for m in methods.values())), *pools]
    per_method = {name: seed_readouts(m, pools) for name, m in methods.items()}
    detectable = {r: readout_mdd([list(v[r].values()) for v in per_method.values()]) for r in names}
    contrasts = []
    for label, a, b in CONTRASTS:
        if a in methods and b in methods:
            contrasts.append({"label": label, "a": a, "b": b, "step": step,
                              **{r: paired(per_method[a][r], per_method[b][r]) for r in names}})
    for r in names:
        adjusted = holm_family(contrasts, step, [r])
        levels = holm_family(contrasts, step, [r], levels=True)
        for i, c in enumerate(contrasts):
            p = c[r]
            p["p_holm"] = adjusted.get((i, r))
            p["holm_level"] = levels.get((i, r))
            p["holm_ci"] = None if p["holm_level"] is None else holm_interval(p, p["holm_level"])
            p["verdict"] = verdict(p, p["p_holm"])
            p["mdd"] = mdd(float(np.std(p["diff"], ddof=1)), p["n"]) if p["n"] > 1 else None
    return {"readouts": names, "mdd": detectable, "contrasts": contrasts}


def useful(m: dict, random_init: dict, how: str) -> dict:
    """The "useful" gate: the main probe's top-1 minus random init's, per seed and val video (the same
    seed's random encoder, the same videos), with a hierarchical bootstrap interval (seeds, then
    videos within a seed); PASS when its lower end is above 0."""
    seeds = [s for s in m.get("correct", {}) if s in random_init.get("correct", {})]
    if not seeds:
        return {"verdict": "n/a", "diff": None, "ci95": None}
    diffs = {s: np.asarray(m["correct"][s], float) - np.asarray(random_init["correct"][s], float) for s in seeds}
    lo, hi = hierarchical_bootstrap(diffs)
    return {"pool": how, "diff": float(np.mean([d.mean() for d in diffs.values()])), "ci95": [lo, hi],
            "seeds": len(seeds), "videos": len(next(iter(diffs.values()))), "verdict": "PASS" if lo > 0 else "FAIL"}


def learns(m: dict) -> dict:
    """The "learns" gate: the held-out ratio's 95 % interval over seeds lies below 1, the mean ratio
    falls from each kept checkpoint to the next, and the model's held-out loss is below the
    non-learned predictor's (ridge from the visible neighbours, `train.eval.neighbours`) on every seed."""
    h = m["heldout"]
    ci = h["ratio"]["ci95"]
    by_step = [h["by_step"][s]["mean"] for s in sorted(h["by_step"], key=int)]
    falls = all(b < a for a, b in zip(by_step, by_step[1:])) if len(by_step) > 1 else None
    ridge = [x.get("predictor") for x in h["per_seed"]]
    beats = all(x["loss"] < x["predictor"] for x in h["per_seed"]) if all(r is not None for r in ridge) else None
    checks = {"below_1": None if ci is None else ci[1] < 1, "falls": falls, "beats_predictor": beats}
    verdict_ = "PASS" if all(checks.values()) else "FAIL" if any(v is False for v in checks.values()) else "n/a"
    return {"ratio_hi": None if ci is None else ci[1], **checks,
            "predictor_ratio": h.get("predictor_ratio"), "verdict": verdict_}


# ---- the study ------------------------------------------------------------------------------

# settings a resumed study may change: which runs, where the report goes, how fast it extracts and
# probes, and the report's thresholds (they change no number on disk)
RESUMABLE = ("methods", "seeds", "out", "report", "extract_workers", "probe_batch", "probe_workers", "parallel_runs",
             "gpu_jobs", "gate", "finetune_max_std")


def check_same_study(cfg: StudyConfig, record: Path) -> None:
    """Refuse to resume into a folder whose runs were made with other settings: every stage skips
    what it finds on disk, so checkpoints, probes and fine-tunes of another corpus or budget
    would be reported as this study's."""
    if not record.exists():
        return
    old = json.loads(record.read_text())
    new = json.loads(json.dumps(cfg.to_dict()))  # tuples as lists, as stored
    # a setting the record lacks did not exist when it was written (e.g. moving_px before the motion
    # probes): nothing on disk depends on it, and the stages add what it governs
    differ = [f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in new
              if k not in RESUMABLE and k in old and old[k] != new[k]]
    if differ:
        raise SystemExit(f"error: {record.parent} holds a study made with other settings ({'; '.join(differ)}). "
                         f"Use another --out, or move that folder away.")


def study(cfg: StudyConfig, command: str = "python train/study.py", log=print) -> dict:
    cfg.validate()
    out = cfg.out_path()
    out.mkdir(parents=True, exist_ok=True)
    log(f"motion-mae study -> {out}\n{cfg.describe()}\nshared pretraining config:\n{cfg.base_train().describe()}")
    check_same_study(cfg, out / "study.json")
    (out / "study.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    wall_start = time.perf_counter()
    extract_record = extract(cfg, log)
    motion_params(cfg)
    stops = cfg.stops()
    runs = len(cfg.seeds) * len(cfg.methods)
    progress = Progress({"train": runs * cfg.steps, "heldout": runs * len(stops),
                         "probe": len(cfg.seeds) * (len(cfg.methods) * len(stops) + 1),
                         "motion": len(cfg.seeds) * (len(cfg.methods) + 1),
                         "finetune": len(cfg.seeds) * (len(cfg.methods) + 1) if cfg.finetunes else 0}, log)
    # every run, held-out loss, probe and fine-tune of every seed in one pool (train/studies/pool.py),
    # seed-major: a study stopped early still has every method at its first seeds
    workers = pool_size(cfg, max(cfg.parallel_runs, cfg.probe_workers))
    if workers > 1:
        progress.line(f"{workers} jobs at a time (one thread each; a run logs to <run>/pretrain.log)")
    chains = [c for seed in cfg.seeds for c in seed_chains(cfg, seed, progress, log, workers)]
    run_chains(chains, workers, progress, lambda stage, seed, seconds: add_wall(out, stage, seed, seconds))
    progress.line("all runs, held-out losses and probes done")

    results = collect(cfg, extract_record, command)
    results["this_run_minutes"] = round((time.perf_counter() - wall_start) / 60, 1)
    write_json(out / "results.json", results)
    write_report(results, cfg.report_path())
    log(f"results: {out / 'results.json'}, report: {cfg.report_path()}")
    for line in summary_lines(results):
        log(line)
    return results


def summary_lines(results: dict) -> list[str]:
    """The study's result in a few log lines: per method the probes at the last checkpoint and the gate."""
    main, *rest = results["pools"]

    def probes(rows: dict) -> str:
        return ", ".join(f"{how} {format_mean_std(rows[how]['top1'])}" for how in results["pools"])

    lines = []
    for name, m in results["methods"].items():
        g = m["heldout"]["gate"]
        tuned = f", fine-tuned {format_finetuned(m['finetune'])}" if m.get("finetune") else ""
        lines.append(f"  {name:<12} probe top-1 {probes(m['checkpoints'][-1]['probes'])}; "
                     f"held-out/min(predict-0, best constant) {g['mean']:.3f} (worst {g['worst']:.3f}) {g['verdict']}{tuned}")
    r = results["random_init"]
    lines.append(f"  {'random init':<12} probe top-1 {probes(r['probes'])}   chance {results['chance_top1']:.3f}")
    return lines


def _list(kind):
    def parse(text: str):
        return tuple(kind(x) for x in text.split(",") if x.strip())
    return parse


def parse_args(argv: list[str] | None) -> StudyConfig:
    p = ArgumentParser(prog="study.py", description=__doc__)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="study yaml (default train/configs/study.yaml)")
    p.add_argument("--tiny", action="store_true",
                   help="the CI version: 2 videos per class, 2 seeds, the 2 x 2 and MGM at 0.75, 4 steps")
    p.add_argument("--methods", type=_list(str), help=f"comma-separated mask[@ratio]+target, e.g. {','.join(METHODS)}")
    p.add_argument("--seeds", type=_list(int), help="comma-separated, e.g. 0,1,2,3,4")
    p.add_argument("--steps", type=int, help="pretraining steps per run (the budget)")
    p.add_argument("--finetune-steps", type=int, help="fine-tuning steps per encoder; 0 = no fine-tuning stage")
    p.add_argument("--checkpoints", type=_list(float), help="fractions of the budget probed, e.g. 0.25,0.5,1")
    p.add_argument("--model", help="train.pretraining.model.MODELS key (vit_pico, vit_tiny, ...)")
    p.add_argument("--device", help="auto | cpu | cuda: pretraining, held-out losses, probes, fine-tuning")
    p.add_argument("--batch-size", type=int, help="pretraining clips per step")
    p.add_argument("--base-lr", type=float, help="pretraining lr = base_lr x batch / 256")
    p.add_argument("--num-workers", type=int, help="data loader processes of every stage")
    p.add_argument("--per-class", type=int, help="synthetic-motion videos per class")
    p.add_argument("--style", help="synthetic-motion look: noise | structured | natural")
    p.add_argument("--probe-pool", help="the main probe's pooling (train.eval.probe.POOLS); the token mean is fit too")
    p.add_argument("--probe-wd", help="the probes' L2 penalty: cv (cross-validation on the train split) or a number")
    p.add_argument("--probe-workers", type=int, help="probes run side by side on the CPU (processes, one thread each)")
    p.add_argument("--parallel-runs", type=int,
                   help="pretraining runs side by side on the CPU (processes, one thread, no loader workers each)")
    p.add_argument("--gpu-jobs", type=int,
                   help="on a GPU: jobs side by side (processes, one thread and no loader workers each); a study "
                        "model leaves a large GPU mostly idle one job at a time (default 1)")
    p.add_argument("--heldout-clips", type=int, help="val clips of the held-out loss (the gate)")
    p.add_argument("--root", help="corpus folder")
    p.add_argument("--shards", help="shard set path")
    p.add_argument("--out", help=f"study folder (default {DEFAULT_OUT})")
    p.add_argument("--report", help="markdown report (default docs/results.md, or <out>/results.md with --out/--tiny)")
    a = p.parse_args(argv)
    values = load_file(a.config)
    values["train"] = dict(values.get("train") or {})
    values["finetune"] = dict(values.get("finetune") or {})
    if a.tiny:
        values.update({k: v for k, v in TINY.items() if k not in ("train", "finetune")})
        values["train"].update(TINY["train"])
        if int(values["finetune"].get("max_steps", 0) or 0) > 0:  # the study's options, a few steps
            values["finetune"].update(TINY["finetune"])
        values["out"] = "runs/study_tiny"
    for name in ("methods", "seeds", "steps", "checkpoints", "per_class", "style", "probe_pool", "probe_wd",
                 "probe_workers", "parallel_runs", "gpu_jobs", "heldout_clips", "root", "shards", "out", "report"):
        if getattr(a, name) is not None:
            values[name] = getattr(a, name)
    for name in ("model", "device", "batch_size", "base_lr", "num_workers"):
        if getattr(a, name) is not None:
            values["train"][name] = getattr(a, name)
    if a.finetune_steps is not None:
        values["finetune"] = {**values["finetune"], "max_steps": a.finetune_steps}
        if a.tiny and a.finetune_steps > 0:
            values["finetune"].update({k: v for k, v in TINY["finetune"].items() if k != "max_steps"})
    known = {f.name for f in fields(StudyConfig)}
    unknown = set(values) - known
    if unknown:
        raise SystemExit(f"error: unknown study keys in {a.config}: {sorted(unknown)}")
    for name in ("methods", "seeds", "checkpoints"):
        if name in values:
            values[name] = tuple(values[name])
    try:
        return StudyConfig(**values).validate()
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from e


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    command = " ".join(["python train/study.py", *map(shlex.quote, argv)])
    return study(cfg, command, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    run_main(main, "study.py")
