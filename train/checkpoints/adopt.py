"""Fit `Weights` (train/checkpoints/foreign.py) to a run's model: check the geometry, load what fits,
say what did not. `train/pretrain.py --init` and `train/evaluate.py --checkpoint` both come here.

- **Geometry.** Every field the file states (width, depth, heads, MLP ratio, tubelet, patch, frames,
  input size, position table, token norm) is compared with the run's; any difference is one
  error line naming the fields. Fields the file does not state (a VideoMAE checkpoint's frames,
  input size and heads) are the run's, and the log says so.
- **Positions** are not weights: the fixed sin-cos table is the model's buffer, built for the
  run's grid.
- **Encoder** (patch_embed, blocks, norm) is loaded; a group the file lacks is one "missing" line
  (a mean-pooling fine-tuning checkpoint has no `norm`), a group the run has no place for is one
  "unexpected" line.
- **Decoder** (decoder_embed, mask_token, decoder_blocks, decoder_norm) and the **decoder head**
  are each kept when every tensor's shape matches the run's, and started fresh otherwise (another
  width, depth or target): the log says which.
- **Classifier** (fc_norm, head of `train.eval.classifier.VideoClassifier`): the same rule.
"""
from __future__ import annotations

import re

import torch.nn as nn

from train.checkpoints.foreign import Weights, WeightsError, key_groups, read_weights
from train.pretraining.model import MODELS, Heads, VideoMAE

ENCODER = ("patch_embed.", "blocks.", "norm.")
DECODER = ("decoder_embed.", "mask_token", "decoder_blocks.", "decoder_norm.")
HEAD = ("head.",)
CLASSIFIER = ("fc_norm.", "classifier.")
CHECKED = ("dim", "depth", "heads", "mlp_ratio", "tubelet", "patch_size", "num_frames", "input_size", "positions")


def run_geometry(model: VideoMAE, num_frames: int, input_size: int, positions: str) -> dict:
    """The geometry of a run's model, in `foreign.GEOMETRY` terms."""
    block = model.blocks[0]
    dim = model.patch_embed.proj.out_channels
    return {"dim": dim, "depth": len(model.blocks), "heads": block.attn.num_heads,
            "mlp_ratio": block.mlp.fc1.out_features / dim, "tubelet": model.tubelet, "patch_size": model.patch,
            "num_frames": num_frames, "input_size": input_size, "positions": positions,
            "token_norm": isinstance(model.norm, nn.LayerNorm)}


def check_geometry(weights: Weights, run: dict) -> list[str]:
    """Raise WeightsError naming every field the file states differently from the run; the note on
    the fields it does not state."""
    file = weights.geometry
    differ = [f"{k} {file[k]} there, {run[k]} here" for k in CHECKED
              if file.get(k) is not None and run.get(k) is not None and file[k] != run[k]]
    if file.get("token_norm") is False and run.get("token_norm"):
        differ.append("token_norm False there (mean pooling without the encoder's last norm), True here "
                      "(--token-norm false)")
    if differ:
        raise WeightsError(f"{weights.source} ({weights.format}) does not fit the run: {'; '.join(differ)}")
    unstated = [f"{k} {run[k]}" for k in CHECKED if file.get(k) is None and run.get(k) is not None]
    return [f"not stated by the file, the run's: {', '.join(unstated)}"] if unstated else []


def model_size(geometry: dict) -> str:
    """The MODELS name of a file's encoder (width, depth, and heads and MLP ratio where stated)."""
    for name, size in MODELS.items():
        if (size.dim, size.depth) == (geometry["dim"], geometry["depth"]) and \
                geometry.get("heads") in (None, size.heads) and geometry.get("mlp_ratio") in (None, size.mlp_ratio):
            return name
    stated = ", ".join(f"{k} {geometry.get(k)}" for k in ("dim", "depth", "heads", "mlp_ratio"))
    known = "; ".join(f"{n} {s.dim}x{s.depth}/{s.heads}" for n, s in MODELS.items())
    raise WeightsError(f"no model size here has the file's encoder ({stated}); known (width x depth / heads): {known}")


def adopt(model: VideoMAE, weights: Weights) -> list[str]:
    """Load `weights` into `model` in place as the module docstring says; returns the log lines. A
    classifier's tensors are left to `adopt_classifier`."""
    mine = model.state_dict()
    state = name_heads(weights.state, model)
    load, lines = {}, []
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER)}
    bad = [f"{k} {tuple(v.shape)} there, {tuple(mine[k].shape)} here" for k, v in encoder.items()
           if k in mine and v.shape != mine[k].shape]
    if bad:
        raise WeightsError(f"{weights.source}: encoder tensors of another shape: {'; '.join(bad[:3])}")
    load.update({k: v for k, v in encoder.items() if k in mine})
    lines += [f"missing {g} ({n} tensors): left as initialized"
              for g, n in key_groups(k for k in mine if k.startswith(ENCODER) and k not in encoder).items()]
    lines += [f"unexpected {g} ({n} tensors): not used by this run"
              for g, n in key_groups(k for k in encoder if k not in mine).items()]
    for name, prefixes in (("decoder", DECODER), ("decoder head", HEAD)):
        part, line = fitting(name, state, mine, prefixes)
        load.update(part)
        lines.append(line)
    unused = key_groups(k for k in state if not k.startswith(ENCODER + DECODER + HEAD + CLASSIFIER))
    lines += [f"unexpected {g} ({n} tensors): not used by this run" for g, n in unused.items()]
    lines += [f"unexpected {g} ({n} tensors): no counterpart here, dropped" for g, n in weights.dropped.items()]
    model.load_state_dict(load, strict=False)
    return lines


def adopt_classifier(classifier: nn.Module, weights: Weights) -> list[str]:
    """fc_norm and the class head of a fine-tuned file into `classifier` (train.eval.classifier.VideoClassifier)."""
    theirs = {("head." + k[11:] if k.startswith("classifier.") else k): v
              for k, v in weights.state.items() if k.startswith(CLASSIFIER)}
    mine = {k: v for k, v in classifier.state_dict().items() if k.startswith(("fc_norm.", "head."))}
    part, line = fitting("classifier", theirs, mine, ("fc_norm.", "head."))
    classifier.load_state_dict(part, strict=False)
    return [line]


def fitting(name: str, state: dict, mine: dict, prefixes: tuple[str, ...]) -> tuple[dict, str]:
    """The file's tensors under `prefixes` when they fit the run's exactly, and the line that says so."""
    theirs = {k: v for k, v in state.items() if k.startswith(prefixes)}
    ours = {k: v for k, v in mine.items() if k.startswith(prefixes)}
    if not theirs:
        return {}, f"{name}: started fresh (none in the file)"
    if theirs.keys() == ours.keys() and all(v.shape == ours[k].shape for k, v in theirs.items()):
        return theirs, f"{name}: kept from the file"
    return {}, (f"{name}: started fresh (the file's does not fit the run's: {last_shapes(theirs)} there, "
                f"{last_shapes(ours)} here)")


def last_shapes(state: dict) -> str:
    """The shapes of a group's last two tensors: where two decoders or heads differ, these show it."""
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[-2:])


def name_heads(state: dict, model: VideoMAE) -> dict:
    """MME's heads come numbered (`head.heads.#j.*`): name each after the run's head of the same size."""
    if not any(k.startswith("head.heads.#") for k in state) or not isinstance(model.head, Heads):
        return state
    sizes = {}
    for k, v in state.items():
        m = re.fullmatch(r"head\.heads\.#(\d+)\.2\.weight", k)
        if m:
            sizes[m[1]] = v.shape[0]
    names = {}
    for j, size in sizes.items():
        match = [h.name for h in model.head_specs if h.dim == size]
        if len(match) == 1:
            names[j] = match[0]
    return {re.sub(r"^head\.heads\.#(\d+)\.", lambda m: f"head.heads.{names.get(m[1], '#' + m[1])}.", k): v
            for k, v in state.items()}



def file_settings(weights: Weights) -> dict:
    """TrainConfig fields a file implies: a pretraining run's own config, else its model size and
    the geometry it states (evaluate's defaults, which flags override)."""
    if weights.format == "motion-mae":
        return dict(weights.config)
    g = weights.geometry
    settings = {"model": model_size(g), "tubelet": g["tubelet"], "patch_size": g["patch_size"]}
    settings.update({k: g[k] for k in ("num_frames", "input_size", "positions", "sampling_rate") if g.get(k) is not None})
    return settings


def init_model(model: VideoMAE, path: str, num_frames: int, input_size: int, positions: str) -> list[str]:
    """`train/pretrain.py --init`: the weights at `path` into a fresh run's `model`; returns the log lines."""
    weights = read_weights(path)
    run = {**run_geometry(model, num_frames, input_size, positions), "token_norm": None}  # pretraining keeps its norm
    lines = [f"from {path} ({weights.format})"]
    lines += check_geometry(weights, run)
    lines += adopt(model, weights)
    return lines + [f"unexpected {g} ({n} tensors): a classifier, not used by pretraining"
                    for g, n in key_groups(k for k in weights.state if k.startswith(CLASSIFIER)).items()]
