"""`train/pretrain.py` as a torchrun worker that dies: the process of rank $KILL_RANK exits (as a
crash or an OOM kill would, without cleanup) when it reaches step $KILL_AT_STEP, once: the file
$KILL_ONCE marks that it happened, so the restarted workers run to the end.

    torchrun ... -m tests.train.pretraining.killed_worker <pretrain.py flags>
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from shards.cli import run_main
from train import pretrain
from train.pretraining import engine


def main() -> None:
    rank, at, once = int(os.environ["KILL_RANK"]), int(os.environ["KILL_AT_STEP"]), Path(os.environ["KILL_ONCE"])
    lr_at = engine.lr_at  # called once per step, on every rank, before the step's first forward

    def dying_lr_at(step: int, *args, **kwargs) -> float:
        if step == at and int(os.environ["RANK"]) == rank and not once.exists():
            once.touch()
            os._exit(3)
        return lr_at(step, *args, **kwargs)

    engine.lr_at = dying_lr_at
    run_main(lambda: pretrain.main(sys.argv[1:]), "pretrain.py")


if __name__ == "__main__":
    main()
