"""Evaluate a pretrained encoder on labelled shards: linear probe (default) or fine-tuning.

    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt                # linear probe, the checkpoint's shards
    python train/evaluate.py --checkpoint random --model vit_pico --num-frames 8 --sampling-rate 2 \\
        --input-size 64                                                          # random-init baseline
    python train/evaluate.py --checkpoint CKPT --view-cache runs/view_cache     # decode the views once, reuse
    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt --finetune --epochs 10
    python train/evaluate.py --checkpoint runs/demo/checkpoint.pt --config finetune_demo.yaml  # the papers' recipe
    python train/evaluate.py --checkpoint CKPT --shards data/shards/k400 --config finetune_k400.yaml
    python train/evaluate.py export --checkpoint runs/demo/checkpoint.pt --out encoder.pth   # train/export.py
    torchrun --nproc-per-node 8 train/evaluate.py --checkpoint CKPT --shards data/shards/k400 --finetune

What each mode does, and how it tests: train/eval/evaluation.py. Errors are one line; --debug shows
the traceback.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path

if __package__ in (None, ""):  # `python train/evaluate.py` as well as `python -m train.evaluate`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from shards.cli import ArgumentParser, UsageError, run_main  # noqa: E402
from train.cli import check_sources  # noqa: E402
from train.eval.config import GEOMETRY, EvalConfig  # noqa: E402
from train.eval.evaluation import evaluate  # noqa: E402
from train.eval.probe import POOLS, parse_weight_decay  # noqa: E402
from train.pretraining.config import (DEMO_SHARDS, TrainConfig, load_file, parse_bool, parse_optional,  # noqa: E402
                                      resolve_shards)
from train.pretraining.model import POSITIONS  # noqa: E402
from train.pretraining.model import MODELS  # noqa: E402
from train.cli import check_device, existing_shards  # noqa: E402
from train.checkpoints.foreign import checkpoint_shards  # noqa: E402
from train.export import main as export_main  # noqa: E402


EVAL_HELP = {
    "checkpoint": "a train/pretrain.py checkpoint.pt, a train/export.py or fine-tuned file, a VideoMAE / MGMAE / MME "
                  "checkpoint, or a Hugging Face VideoMAE folder (docs/interop.md); or 'random' (random-init encoder, "
                  "the baseline) (required)",
    "token_norm": "the encoder's last LayerNorm on every token before the mean; false = VideoMAE's mean pooling "
                  "(what a Hugging Face VideoMAEForVideoClassification computes) (default: the checkpoint's: false "
                  "for a mean-pooling fine-tuned file, else true)",
    "shards": "labelled shard set (default: the shards the checkpoint was pretrained on; "
              f"{DEMO_SHARDS} for 'random')",
    "train_split": "split the probe / fine-tuning trains on",
    "val_split": "split tested on",
    "finetune": "fine-tune end to end instead of a linear probe (default: linear probe)",
    "clips": "temporal clips per video: probe training samples and test views (K400 5, SSv2 2)",
    "test_crops": "spatial test views per clip along the long side (K400 / SSv2 3); 1 = the centre",
    "tsn": "TSN sampling (SSv2): one frame from each of num_frames segments instead of a sampling rate",
    "probe_pool": "linear probe: how tokens become a clip feature (train.eval.probe.POOLS: mean, time, quadrants, "
                  "tokens); the token mean is fit as well",
    "probe_wd": "linear probe: L2 penalty on the classifier weights, or 'cv' = chosen by cross-validation on "
                "the train split (folds by video)",
    "probe_wd_grid": "linear probe: comma-separated penalties 'cv' chooses from",
    "probe_folds": "linear probe: cross-validation folds",
    "probe_iters": "linear probe: L-BFGS iterations",
    "probe_bootstrap": "linear probe: bootstrap resamples of the val videos (the 95 %% interval of top-1)",
    "epochs": "fine-tuning epochs (unless --max-steps)",
    "max_steps": "> 0: fine-tune this many steps (overrides --epochs)",
    "batch_size": "fine-tuning: videos per optimizer step over all processes (the global batch; each "
                  "video gives repeated_aug clips)",
    "batch_per_device": "fine-tuning: > 0: at most this many clips per forward pass; the rest of the batch is "
                        "gradient accumulation (0 = the whole per-process batch at once)",
    "encode_batch": "clips per forward and process where nothing trains: probe features and test views",
    "base_lr": "fine-tuning peak lr = base_lr * batch_size / 256 (the global batch in videos)",
    "min_lr": "fine-tuning lr at the end of the cosine",
    "layer_decay": "lr scale of block i: layer_decay ** (depth - i); 1 = off",
    "weight_decay": "fine-tuning AdamW weight decay",
    "warmup_epochs": "fine-tuning warmup",
    "drop_path": "fine-tuning stochastic depth",
    "min_crop": "fine-tuning random crops, smallest side / short side",
    "flip": "random horizontal flips of training clips (false where labels have a direction)",
    "min_area": "> 0: random resized crops of area [min_area, 1], aspect [3/4, 4/3] (VideoMAE 0.08)",
    "randaug": "timm RandAugment policy, one draw per clip for every frame (VideoMAE 'rand-m7-n4-mstd0.5-inc1'); "
               "'' = off",
    "reprob": "random erasing probability, one box on every frame (VideoMAE 0.25)",
    "mixup": "mixup alpha (VideoMAE 0.8); 0 = off",
    "cutmix": "cutmix alpha (VideoMAE 1.0); 0 = off",
    "mixup_prob": "probability that a batch is mixed at all",
    "mixup_switch_prob": "probability of cutmix rather than mixup when both are on",
    "smoothing": "label smoothing (VideoMAE 0.1)",
    "repeated_aug": "clips of each video per batch (VideoMAE's num_sample); lr scales with videos",
    "log_every": "fine-tuning steps between log lines",
    "seed": "seed of the head, clips and (for 'random') the encoder",
    "device": "auto = cuda when available, else cpu",
    "amp": "bf16 autocast on CUDA (ignored on CPU)",
    "num_workers": "data loader processes",
    "view_cache": "folder of uint8 copies of the test views, decoded once per shard set, split and clip geometry "
                  "and reused by every later evaluation (checked against the shards; '' = off)",
    "source_root": "for a set extracted with --frames none (frames decoded from the source videos): the folder "
                   "the corpus moved to ('' = the paths recorded at extraction)",
    "out": "result JSON (default: eval_linear.json / eval_finetune.json next to the checkpoint; "
           "runs/eval/random_<model>_<mode>.json for 'random')",
}
USAGE = """%(prog)s --checkpoint CKPT|random [--shards SHARDS] [--finetune] [options]
       %(prog)s export --checkpoint CKPT --out FILE [--layout {timm,videomae}] [--format {pth,safetensors,hf}]
                                                                             (train/export.py)"""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="evaluate.py", usage=USAGE, description=__doc__)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="yaml/json of EvalConfig fields (train/configs/finetune_*.yaml); flags override it "
                             "(default: none)")
    for f in fields(EvalConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(EvalConfig, f.name)
        if f.name in GEOMETRY:
            names = {"model": list(MODELS), "positions": list(POSITIONS)}.get(f.name)
            extra = dict(choices=names, metavar="{" + ",".join(names) + "}") if names else {}
            parser.add_argument(flag, type=parse_optional(str if names else int), default=None,
                                help="encoder and clip geometry (default: the checkpoint's; "
                                     f"TrainConfig's {getattr(TrainConfig, f.name)} for 'random')", **extra)
        elif f.name == "token_norm":
            parser.add_argument(flag, type=parse_optional(parse_bool), default=None, metavar="BOOL",
                                help=EVAL_HELP[f.name])
        elif f.name == "finetune":
            parser.add_argument(flag, action="store_true", help=EVAL_HELP[f.name])
        elif f.name == "probe_wd":
            parser.add_argument(flag, type=parse_weight_decay, default=default, metavar="cv|FLOAT",
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        elif f.name == "probe_pool":
            parser.add_argument(flag, choices=list(POOLS), default=default,
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        elif f.name == "probe_wd_grid":
            parser.add_argument(flag, type=lambda text: tuple(float(x) for x in text.split(",") if x.strip()),
                                default=default, metavar="WD,WD,...",
                                help=f"{EVAL_HELP[f.name]} (default: {','.join(f'{x:g}' for x in default)})")
        elif f.name in ("checkpoint", "shards", "out"):
            parser.add_argument(flag, default=None, required=f.name == "checkpoint", help=EVAL_HELP[f.name])
        elif isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=default, metavar="BOOL",
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{EVAL_HELP[f.name]} (default: {default})")
    return parser


def parse_args(argv: list[str] | None) -> EvalConfig:
    """The command line as an EvalConfig, checked before any model or shard is loaded: the
    checkpoint exists and is one, the shard set (given, or the checkpoint's) exists. A --config
    file's values become the defaults, so that a flag on the command line wins."""
    parser = build_parser()
    config = parser.parse_known_args(argv)[0].config
    if config:
        values = load_file(config)
        unknown = set(values) - {f.name for f in fields(EvalConfig)}
        if unknown:
            raise UsageError(f"--config {config}: unknown EvalConfig keys {sorted(unknown)}")
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    if args.checkpoint == "random":
        shards = args.shards or DEMO_SHARDS
    else:
        pretrained_on = checkpoint_shards(args.checkpoint)  # also refuses a missing, unreadable or pickle-only file
        shards = args.shards or pretrained_on or DEMO_SHARDS
    check_device(args.device)
    flag = "--shards" if args.shards or args.checkpoint == "random" else \
        "the checkpoint's shards (give --shards to use another set)"
    existing_shards(resolve_shards(shards), flag)
    values = {f.name: getattr(args, f.name) for f in fields(EvalConfig)}
    return EvalConfig(**{**values, "shards": shards, "out": args.out or ""})


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    cfg = parse_args(argv)
    check_sources(cfg.shards_ref())
    result = evaluate(cfg, log=lambda s: print(s, flush=True))
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun every rank has the result; one writes it
        return result
    out = EvalConfig(**result["config"]).out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['mode']}: top-1 {result['top1']:.3f}, top-{result['top5_k']} {result['top5']:.3f} "
          f"on {result['videos']['val']} val videos ({result['num_classes']} classes, chance "
          f"{result['chance_top1']:.3f}); {result['seconds']['total']:.1f} s -> {out}", flush=True)
    for how, p in result.get("probes", {}).items():
        lo, hi = p["top1_ci95"]
        print(f"  probe {how:<9} top-1 {p['top1']:.3f} [{lo:.3f}, {hi:.3f}] (95 % bootstrap over videos), "
              f"L2 {p['weight_decay']:g}, train top-1 {p['train_top1']:.3f}", flush=True)
    return result


if __name__ == "__main__":
    run_main(main, "evaluate.py")
