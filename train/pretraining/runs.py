"""A run's identity and its folder: two different runs never share one silently.

- The default `--out` is named for what the run is, `runs/<shards>-<mask>-<target>-<model>`,
  so a K400 run and the demo do not write into the same folder.
- Resuming (`--resume auto` or a path) refuses a checkpoint whose model, clip geometry or
  method differ from the config (its state dict would not even load, or would train another
  method under this run's name), and says which fields differ.
- A run that does not resume refuses a folder that already holds a run (a checkpoint, or a
  metrics log it would append to) unless `--overwrite` replaces that run's files.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from shards.cli import CliError, UsageError

from train.pretraining.config import TrainConfig

# what a checkpoint's weights and loss depend on: resuming with any of them changed is another run
MODEL_FIELDS = ("model", "decoder_depth", "tubelet", "patch_size")
GEOMETRY_FIELDS = ("num_frames", "sampling_rate", "input_size")
METHOD_FIELDS = ("mask", "target", "mask_ratio", "norm_target", "target_norm", "decoder_ratio", "decoder_mask")
IDENTITY = MODEL_FIELDS + GEOMETRY_FIELDS + METHOD_FIELDS
CHECKPOINT, METRICS, CONFIG = "checkpoint.pt", "metrics.jsonl", "config.json"  # as train/pretraining/engine.py writes them


def run_name(cfg: TrainConfig) -> str:
    """`<shards>-<mask>-<target>-<model>`, e.g. "k400-mgmae-mme-vit_small"."""
    shards = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(cfg.shards.rstrip("/")).name) or "shards"
    return f"{shards}-{cfg.mask}-{cfg.target}-{cfg.model}"


def default_out(cfg: TrainConfig) -> str:
    return str(Path("runs") / run_name(cfg))


def identity(cfg: TrainConfig) -> dict:
    """The IDENTITY fields, with the mask ratio resolved (None means the method's default)."""
    return {**{k: getattr(cfg, k) for k in IDENTITY}, "mask_ratio": cfg.ratio}


def identity_diff(saved: dict, cfg: TrainConfig) -> list[str]:
    """"field: X there, Y now" for every IDENTITY field a saved config (a checkpoint's) differs in."""
    known = set(TrainConfig.__dataclass_fields__)
    old = identity(TrainConfig.from_dict({k: v for k, v in saved.items() if k in known}))
    new = identity(cfg)
    return [f"{k}: {old[k]} there, {new[k]} now" for k in IDENTITY if old[k] != new[k]]


def read_checkpoint_head(path: Path) -> dict:
    """A checkpoint's config and step without reading its tensors (mmap: a 1 GB file costs nothing)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a truncated or foreign file: say which file, not a zipfile traceback
        raise CliError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise CliError(f"{path}: not a train/pretrain.py checkpoint (no 'config' in it)")
    return {"config": ckpt["config"], "step": int(ckpt.get("step", 0))}


def describe(head: dict) -> str:
    c = head["config"]
    return f"{c.get('model')} {c.get('mask')}+{c.get('target')} on {c.get('shards')}, step {head['step']}"


def resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint this run continues: `--resume auto` -> <out>/checkpoint.pt when present."""
    if cfg.resume == "auto":
        p = Path(cfg.out) / CHECKPOINT
        return p if p.exists() else None
    if cfg.resume:
        p = Path(cfg.resume).expanduser()
        if not p.is_file():
            raise CliError(f"--resume {cfg.resume}: no such checkpoint (give a checkpoint.pt, or 'auto')")
        return p
    return None


def prepare_run_folder(cfg: TrainConfig, overwrite: bool = False, remove: bool = True) -> str:
    """Check that `cfg` may write into cfg.out; returns a line for the log ("" when nothing to say).

    `remove=False` checks only (the other ranks of a torchrun: rank 0 removes)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: is a file, expected a folder (give a folder path)")
    if overwrite and cfg.resume:
        raise UsageError("--overwrite starts the run over, --resume continues it: give one of them")
    resume = resume_path(cfg)
    if resume is not None:
        head = read_checkpoint_head(resume)
        differ = identity_diff(head["config"], cfg)
        if differ:
            raise CliError(f"{resume} is another run ({describe(head)}): {'; '.join(differ)}. "
                           f"Resume with the same settings, or start this run in another --out")
        return ""
    held = [name for name in (CHECKPOINT, METRICS) if (out / name).exists()]
    if not held:
        return ""
    if cfg.resume == "auto" and CHECKPOINT not in held and same_run_started(out, cfg):
        # killed before its first checkpoint (a torchrun --max-restarts restart lands here): nothing
        # to continue, so it starts over; the log's rows are dropped when the run opens it
        return f"--resume auto: {out} holds this run killed before its first checkpoint; starting it over"
    what = describe(read_checkpoint_head(out / CHECKPOINT)) if CHECKPOINT in held else "no checkpoint yet"
    if not overwrite:
        go_on = "continue it with --resume auto, " if CHECKPOINT in held else ""
        instead = " (instead of --resume)" if cfg.resume else ""
        raise CliError(f"--out {cfg.out} holds another run ({', '.join(held)}: {what}); {go_on}"
                       f"choose another --out, or replace it with --overwrite{instead}")
    if remove:
        removed = replace_run(out)
        return f"--overwrite: removed {', '.join(removed)} from {out} ({what})"
    return ""


def same_run_started(out: Path, cfg: TrainConfig) -> bool:
    """Whether `out` holds the config.json of a run with `cfg`'s identity (`identity_diff`)."""
    try:
        saved = json.loads((out / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and not identity_diff(saved, cfg)


def replace_run(out: Path) -> list[str]:
    """Remove the files a run writes (engine: checkpoint, config, metrics, TensorBoard; evaluate:
    eval_*.json and the fine-tuned eval_*.pt of that checkpoint); anything else in the folder stays."""
    removed = []
    evaluations = sorted(out.glob("eval_*.json")) + sorted(out.glob("eval_*.pt"))
    for p in [out / n for n in (CHECKPOINT, "checkpoint.tmp", CONFIG, METRICS, "tb")] + evaluations:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(p.name)
    return removed
