"""Held-out pretraining loss of a checkpoint: the command (the measurement is train/eval/heldout.py).

    python train/heldout.py --checkpoint runs/x/checkpoint.pt            # the val split of its shards
    python train/heldout.py --checkpoint CKPT --shards SET --split val --clips 256
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.cli import run_main  # noqa: E402
from train.eval.heldout import main  # noqa: E402

if __name__ == "__main__":
    run_main(main, "heldout")
