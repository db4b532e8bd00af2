"""Held-out pretraining loss of a checkpoint: the command (the measurement is train/eval/heldout.py).

    python train/heldout.py --checkpoint runs/x/checkpoint.pt            # the val split of its shards
    python train/heldout.py --checkpoint CKPT --shards SET --split val --clips 256
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards import ShardRef  # noqa: E402
from shards.cli import ArgumentParser, CliError, run_main  # noqa: E402
from train.cli import check_sources  # noqa: E402
from train.eval.heldout import heldout_loss, heldout_shards  # noqa: E402
from train.pretraining.engine import load_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="heldout.py", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a pretraining checkpoint (checkpoint.pt)")
    p.add_argument("--shards", default=None, help="shard set (default: the one named in the checkpoint)")
    p.add_argument("--split", default="val", help="videos whose split attr equals this (default: val; '' = all)")
    p.add_argument("--clips", type=int, default=256, help="clips to average over (default: 256)")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="picks the clips, crops and masks (default: 0)")
    p.add_argument("--source-root", default="", help="for a set extracted with --frames none: the folder its "
                   "source videos moved to (default: the paths recorded at extraction)")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise CliError(f"no checkpoint at {args.checkpoint}")
    ckpt = load_checkpoint(args.checkpoint)
    shards = ShardRef(heldout_shards(ckpt, args.shards).path, args.source_root)
    check_sources(shards)
    result = heldout_loss(ckpt, shards, args.split, args.clips, args.batch_size, args.seed)
    print(f"step {result['step']}: held-out loss {result['loss']:.4f}, predict-0 {result['predict0']:.4f}, "
          f"ratio {result['ratio']:.3f}; best constant {result['predict_mean']:.4f}, ratio "
          f"{result['ratio_mean']:.3f}; against the better of the two {result['ratio_baseline']:.3f} "
          f"({result['clips']} clips of split {result['split']!r}; per class "
          f"{', '.join(f'{k}: {n}' for k, n in result['per_class'].items())})")
    for b in result.get("by_contrast", []):
        if not b["share"]:  # no hidden token of that contrast: nothing measured
            continue
        lo, hi = b["grey_levels"]
        print(f"  hidden tokens of contrast {lo:g}-{hi:g} grey levels: {100 * b['share']:4.1f} %, "
              f"loss {b['loss']:.3f}, ratio {b['ratio']:.3f}")
    return result


if __name__ == "__main__":
    run_main(main, "heldout")
