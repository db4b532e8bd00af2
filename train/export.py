"""Export the pretrained encoder as a plain state dict for VideoMAE-style ViTs.

    python train/export.py --checkpoint runs/demo/checkpoint.pt --out encoder.pth
    python train/evaluate.py export --checkpoint runs/demo/checkpoint.pt --out encoder.pth   # the same
    python train/export.py --checkpoint runs/demo/checkpoint.pt --format safetensors --out encoder.safetensors
    python train/export.py --checkpoint runs/demo/eval_finetune.pt --format hf --out hf/classifier

`encoder.pth` is `torch.save` of a dict of tensors only (loads with
`torch.load(weights_only=True)`), no decoder, no optimizer:

    patch_embed.proj.weight  (D, 3, tubelet, patch, patch)   Conv3d over tubelet x patch x patch cubes
    patch_embed.proj.bias    (D,)
    blocks.{i}.norm1.{weight,bias}, blocks.{i}.attn.qkv.{weight,bias}, blocks.{i}.attn.proj.{weight,bias},
    blocks.{i}.norm2.{weight,bias}, blocks.{i}.mlp.fc1.{weight,bias}, blocks.{i}.mlp.fc2.{weight,bias}
    norm.{weight,bias}       the encoder's last LayerNorm (eps 1e-6), applied to every token

`--layout videomae` writes VideoMAE's attention layout instead: `attn.qkv.weight` without a
bias plus `attn.q_bias` and `attn.v_bias`. The key bias is dropped, which is exact: it adds
q . b_k to every logit of a query, a constant that the softmax removes.

Positions are not weights: both sides use the fixed 1-D sin-cos table over the t*h*w
flattened tokens (`train.pretraining.model.sincos_table`, VideoMAE's `get_sinusoid_encoding_table`).
A JSON file next to the weights (`encoder.json`) records the width, depth, heads, tubelet,
patch, clip geometry and source checkpoint. VideoMAE's fine-tuning model with mean pooling
has `norm = Identity` and a fresh `fc_norm`; its loader then ignores `norm.*` (as it does
for its own pretrained weights).

`--format safetensors` writes the same tensors as a .safetensors file (no pickle at all);
`--format hf` writes a Hugging Face VideoMAE folder (`VideoMAEModel`, or
`VideoMAEForVideoClassification` for a classifier fine-tuned by `train/evaluate.py --finetune`
with `--token-norm false`): train/checkpoints/hf_export.py, docs/interop.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # `python train/export.py` as well as `python -m train.export`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shards.cli import ArgumentParser, CliError, UsageError, run_main  # noqa: E402
from train.pretraining.model import MODELS  # noqa: E402
from train.cli import existing_file, output_folder  # noqa: E402
from train.checkpoints.foreign import read_weights  # noqa: E402
from train.checkpoints.hf_export import write_hf_folder  # noqa: E402

ENCODER_PREFIXES = ("patch_embed.", "blocks.", "norm.")
LAYOUTS = ("timm", "videomae")
FORMATS = ("pth", "safetensors", "hf")


def encoder_state_dict(model_state: dict[str, torch.Tensor], layout: str = "timm") -> dict[str, torch.Tensor]:
    """The encoder's tensors of a `VideoMAE` state dict (decoder, mask token and head left out)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    out = {k: v.detach().clone().contiguous() for k, v in model_state.items() if k.startswith(ENCODER_PREFIXES)}
    if layout == "videomae":
        for key in [k for k in out if k.endswith(".attn.qkv.bias")]:
            q, _, v = out.pop(key).chunk(3)
            stem = key[:-len("qkv.bias")]
            out[stem + "q_bias"], out[stem + "v_bias"] = q.contiguous(), v.contiguous()
    return out


def export(checkpoint: str | Path, out: str | Path, layout: str = "timm", fmt: str = "pth") -> dict:
    """Write the encoder of a pretraining checkpoint to `out` (+ `out` with .json); returns the metadata."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{checkpoint}: not a train/pretrain.py checkpoint (no 'model' / 'config')")
    cfg = ckpt["config"]
    weights = encoder_state_dict(ckpt["model"], layout)
    size = MODELS[cfg["model"]]
    meta = {
        "source_checkpoint": str(checkpoint), "step": int(ckpt.get("step", 0)), "layout": layout,
        "model": cfg["model"], "dim": size.dim, "depth": size.depth, "heads": size.heads,
        "mlp_ratio": size.mlp_ratio, "norm_eps": 1e-6, "tubelet": cfg["tubelet"], "patch_size": cfg["patch_size"],
        "num_frames": cfg["num_frames"], "input_size": cfg["input_size"], "sampling_rate": cfg["sampling_rate"],
        "positions": "fixed sin-cos over t*h*w tokens (train.pretraining.model.sincos_table), not stored",
        "position_table": cfg.get("positions", "videomae"),
        "input": "RGB in [0, 1] normalized with ImageNet mean/std, (B, 3, T, H, W)",
        "pretrain": {"mask": cfg["mask"], "target": cfg["target"]},
        "num_tensors": len(weights), "num_params": int(sum(v.numel() for v in weights.values())),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file(weights, str(out), metadata={"format": "pt"})
    else:
        torch.save(weights, out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="export.py", description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a train/pretrain.py checkpoint.pt; with --format hf also a fine-tuned eval_finetune.pt "
                             "or any weights train/evaluate.py reads (docs/interop.md) (required)")
    parser.add_argument("--out", required=True, help="output .pth; the metadata goes next to it as .json (required)")
    parser.add_argument("--layout", choices=LAYOUTS, default="timm",
                        help="attention bias layout: timm qkv.bias, or VideoMAE q_bias/v_bias (default: timm)")
    parser.add_argument("--format", choices=FORMATS, default="pth", dest="fmt",
                        help="pth (torch.save), safetensors, or hf: a Hugging Face VideoMAE folder at --out, from a "
                             "pretraining checkpoint or a fine-tuned classifier (eval_finetune.pt) (default: pth)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    existing_file(args.checkpoint, "--checkpoint", "a train/pretrain.py checkpoint.pt")
    if args.fmt == "hf":
        return export_hf(args.checkpoint, args.out)
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: is a folder, expected a file name (e.g. {Path(args.out) / 'encoder.pth'})")
    output_folder(Path(args.out).parent, "--out's folder")
    try:
        meta = export(args.checkpoint, args.out, args.layout, args.fmt)
    except ValueError as e:  # not a pretraining checkpoint
        raise CliError(str(e)) from e
    print(f"wrote {args.out}: {meta['model']} encoder, {meta['num_tensors']} tensors, "
          f"{meta['num_params'] / 1e6:.2f}M params, layout {meta['layout']} (+ {Path(args.out).with_suffix('.json')})")
    return meta


def export_hf(checkpoint: str, out: str) -> dict:
    if Path(out).is_file():
        raise UsageError(f"--out {out}: is a file; --format hf writes a folder")
    output_folder(Path(out).parent, "--out's folder")
    meta = write_hf_folder(read_weights(checkpoint), out)
    print(f"wrote {out}: {meta['architecture']}, {meta['num_tensors']} tensors, {meta['num_params'] / 1e6:.2f}M params "
          f"({meta['weights']}, query/value biases as {meta['bias_layout']})")
    return meta


if __name__ == "__main__":
    run_main(main, "export.py")
