"""Pretrain a masked video autoencoder from shards.

    python train/pretrain.py                                   # CPU demo: train/configs/demo.yaml, < 5 min
    python train/pretrain.py --config mgm_k400.yaml --shards data/shards/k400 --batch-per-device 64
    python train/pretrain.py --mask mgmae --target mme --model vit_small           # -> runs/demo-mgmae-mme-vit_small
    torchrun --nproc-per-node 8 train/pretrain.py --config videomae_ssv2.yaml --shards ...
    python train/pretrain.py --config mme_k400.yaml --resume auto   # continue <out>/checkpoint.pt

The recipes in train/configs/ are the papers' (docs/recipes.md); batch_size there is global.

Config precedence: flags > --config file > TrainConfig defaults (train/pretraining/config.py), the
defaults shown below. Only a run with no arguments (or only --resume, --overwrite, --debug) is
the demo (train/configs/demo.yaml, the demo shards extracted first when missing). Without --out, the run folder is named for the
run: runs/<shards name>-<mask>-<target>-<model>. A folder that holds another run is refused
(continue it with --resume auto, or replace it with --overwrite); --resume refuses a checkpoint
of another model, clip geometry or method. Errors are one line; --debug shows the traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # `python train/pretrain.py` as well as `python -m train.pretrain`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.cli import ArgumentParser, CliError, run_main  # noqa: E402
from train.cli import check_device, check_sources, existing_shards, shard_meta  # noqa: E402
from train.pretraining.config import DEMO_SHARDS, REPO_ROOT, TrainConfig, add_arguments, from_args, given  # noqa: E402
from train.pretraining.engine import train  # noqa: E402
from train.pretraining.runs import default_out, prepare_run_folder  # noqa: E402

DEMO_CONFIG = REPO_ROOT / "train" / "configs" / "demo.yaml"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="pretrain.py", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (its checkpoint, config, metrics, TensorBoard "
                             "events, eval_*.json) instead of refusing (default: refuse)")
    return parser


def ensure_demo_shards(cfg: TrainConfig) -> None:
    if cfg.shards != DEMO_SHARDS or cfg.shards_path().exists():
        return
    print(f"{cfg.shards_path()} missing: extracting the demo corpus first", flush=True)
    subprocess.run([sys.executable, str(REPO_ROOT / "preprocess" / "extract.py"), "--dataset", "demo"],
                   cwd=REPO_ROOT, check=True)


def resolve_split(cfg: TrainConfig) -> tuple[TrainConfig, str]:
    """The split the run trains on, and a line that says what it is: a set without splits
    (folder and list datasets extracted without --split) trains on all of its videos."""
    path = cfg.shards_path()
    splits = [m["split"] for m in shard_meta(path).values()]
    counts = {s: splits.count(s) for s in sorted(set(splits) - {None, ""})}
    if not counts:
        ignored = f"--split {cfg.split!r} ignored, " if cfg.split else ""
        return replace(cfg, split=""), f"data: {path} has no splits: {ignored}training on all {len(splits)} videos"
    listed = ", ".join(f"{s} {n}" for s, n in counts.items())
    if not cfg.split:
        return cfg, f"data: training on all {len(splits)} videos of {path} (splits: {listed}; --split NAME keeps one)"
    if cfg.split not in counts:
        raise CliError(f"--split {cfg.split}: no videos of that split in {path} (its splits: {listed}; "
                       "--split '' trains on all)")
    return cfg, f"data: split {cfg.split}, {counts[cfg.split]} of the {len(splits)} videos of {path}"


def resolve_config(argv: list[str]) -> tuple[TrainConfig, bool]:
    """The run's config (defaults < --config < flags; the bare command, alone or with only
    --resume, --overwrite or --debug, is the demo), its
    --out filled in from its identity when not given, and whether --overwrite was given."""
    args = build_parser().parse_args(argv)
    if args.config is None and set(given(args)) <= {"resume"}:  # flags that say how, not what, to run
        args.config = str(DEMO_CONFIG)
    cfg = from_args(args)
    return (cfg if cfg.out else replace(cfg, out=default_out(cfg))), args.overwrite


def main(argv: list[str] | None = None) -> dict:
    cfg, overwrite = resolve_config(sys.argv[1:] if argv is None else list(argv))
    check_device(cfg.device)
    main_rank = int(os.environ.get("RANK", 0)) == 0
    prepare_run_folder(cfg, overwrite, remove=False)  # refuse before anything is extracted or removed
    if cfg.shards == DEMO_SHARDS:
        ensure_demo_shards(cfg)
    existing_shards(cfg.shards_path())
    cfg, data_note = resolve_split(cfg)
    check_sources(cfg.shards_ref())
    run_note = prepare_run_folder(cfg, overwrite, remove=main_rank)
    for note in (run_note, data_note):
        if note and main_rank:
            print(note, flush=True)

    summary = train(cfg, log=lambda s: print(s, flush=True))
    if summary["first_loss"] is not None and main_rank:  # torchrun: one summary
        print(f"done: {summary['step']} steps, loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
              f"{summary['clips_per_s']:.1f} clips/s -> {cfg.out}", flush=True)
    return summary


if __name__ == "__main__":
    run_main(main, "pretrain.py")
