"""Pretrain a masked video autoencoder from shards.

    python train/pretrain.py                                   # CPU demo on data/shards/demo, < 5 min
    python train/pretrain.py --config mgm_k400.yaml --batch-per-device 64   # accumulate to the global batch
    torchrun --nproc-per-node 8 train/pretrain.py --config videomae_ssv2.yaml --shards ...
    python train/pretrain.py --config mme_k400.yaml --resume auto   # continue <out>/checkpoint.pt

The recipes in train/configs/ are the papers' (docs/recipes.md); batch_size there is global.

Config precedence: flags > --config file > TrainConfig defaults (train/config.py). With no
arguments at all, the demo config is used, and the demo shards are extracted first when
missing (`python preprocess/extract.py --dataset demo`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python train/pretrain.py` as well as `python -m train.pretrain`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.config import DEMO_SHARDS, REPO_ROOT, add_arguments, from_args  # noqa: E402
from train.engine import train  # noqa: E402


def ensure_demo_shards(cfg) -> None:
    if cfg.shards != DEMO_SHARDS or cfg.shards_path().exists():
        return
    print(f"{cfg.shards_path()} missing: extracting the demo corpus first", flush=True)
    subprocess.run([sys.executable, str(REPO_ROOT / "preprocess" / "extract.py"), "--dataset", "demo"],
                   cwd=REPO_ROOT, check=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.config is None:
        args.config = str(REPO_ROOT / "train" / "configs" / "demo.yaml")
    cfg = from_args(args)
    ensure_demo_shards(cfg)
    summary = train(cfg, log=lambda s: print(s, flush=True))
    if summary["first_loss"] is not None and int(os.environ.get("RANK", 0)) == 0:  # torchrun: one summary
        print(f"done: {summary['step']} steps, loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
              f"{summary['clips_per_s']:.1f} clips/s", flush=True)
    return summary


if __name__ == "__main__":
    main()
