"""A fine-tuned classifier on disk: what `train/evaluate.py --finetune` keeps beside its result.

    eval_finetune.pt = torch.save({
        "format": "motion-mae-classifier",
        "model": the classifier's state dict (patch_embed, blocks, norm unless token_norm is off, fc_norm, head),
        "geometry": width, depth, heads, MLP ratio, tubelet, patch, frames, sampling rate, input size,
                    position table, token_norm, classes,
        "class_names": {"0": name, ...}, "pretrain_config": the encoder's TrainConfig (None for a foreign one),
    })

Tensors and plain values only (`torch.load(weights_only=True)`). `train/checkpoints/foreign.py`
reads it back (probe or fine-tune it again), `train/export.py --format hf` publishes it as a
`VideoMAEForVideoClassification` folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

FORMAT = "motion-mae-classifier"


def classifier_geometry(model: nn.Module, cfg) -> dict:
    """The geometry of a `train.eval.classifier.VideoClassifier` fine-tuned under EvalConfig `cfg`."""
    block = model.blocks[0]
    dim = model.patch_embed.proj.out_channels
    return {"model": cfg.model, "dim": dim, "depth": len(model.blocks), "heads": block.attn.num_heads,
            "mlp_ratio": block.mlp.fc1.out_features / dim, "tubelet": cfg.tubelet, "patch_size": cfg.patch_size,
            "num_frames": cfg.num_frames, "sampling_rate": cfg.sampling_rate, "input_size": cfg.input_size,
            "positions": cfg.positions, "token_norm": isinstance(model.norm, nn.LayerNorm),
            "num_classes": model.head.out_features}


def save_classifier(path: str | Path, model: nn.Module, cfg, class_names: dict, pretrain_config: dict | None,
                    step: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
             "geometry": classifier_geometry(model, cfg), "class_names": {str(k): str(v) for k, v in class_names.items()},
             "pretrain_config": pretrain_config, "step": int(step)}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path
