"""Write weights as a Hugging Face VideoMAE folder that `transformers` loads as it is.

    python train/export.py --checkpoint runs/demo/checkpoint.pt --format hf --out hf/encoder
    python train/export.py --checkpoint runs/demo/eval_finetune.pt --format hf --out hf/classifier

    config.json                 VideoMAEConfig: sizes, frames, input size, eps 1e-6, use_mean_pooling, labels
    model.safetensors           (pytorch_model.bin where safetensors is not installed)
    preprocessor_config.json    VideoMAEImageProcessor: the input this project feeds (centre square, ImageNet mean / std)

An encoder (a pretraining checkpoint) becomes a `VideoMAEModel` with `use_mean_pooling` false:
its `layernorm` is the encoder's last norm, so `last_hidden_state` equals this project's
`forward_features` token for token. A fine-tuned classifier becomes a
`VideoMAEForVideoClassification` with `use_mean_pooling` true (tokens -> mean -> fc_norm ->
classifier): that is this project's classifier when it was fine-tuned with `--token-norm false`;
one that normalizes every token before the mean has no counterpart there and is refused.

Attention: this project's single `qkv` splits into `query`, `key`, `value`. The key bias is
dropped, which is exact (it adds q . b_k to every logit of a query, a constant the softmax
removes). The query and value biases are written in the layout of the installed transformers:
separate Linear biases (`query.bias`, `value.bias`) from transformers 5 on, `q_bias` / `v_bias`
before (without transformers installed: the 5 layout). A layout the loader does not know is not
an error there: its biases silently stay zero, so the layout is not left to chance.

HF's `fc_norm` is a LayerNorm with eps 1e-5 whatever the config says (VideoMAE's is 1e-6); on
fine-tuned features of unit scale the logits differ by ~1e-6.
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import torch

from train.checkpoints.foreign import HF_BLOCK, HF_QKV, Weights, WeightsError, block_indices

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BIAS_LAYOUTS = ("linear", "q_bias")


def installed_bias_layout() -> str:
    """"linear" (query.bias, value.bias) for transformers >= 5 or none installed, "q_bias" for 4."""
    try:
        major = int(metadata.version("transformers").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return "linear"
    return "linear" if major >= 5 else "q_bias"


def hf_config(weights: Weights, classifier: bool) -> dict:
    g = weights.geometry
    unknown = [k for k in ("heads", "num_frames", "input_size") if g.get(k) is None]
    if unknown:
        raise WeightsError(f"{weights.source}: does not state {', '.join(unknown)}, which a VideoMAE config needs")
    if g.get("positions") not in (None, "videomae"):
        raise WeightsError(f"{weights.source}: position table {g['positions']!r}; transformers' VideoMAE has "
                           "the 1-D sin-cos table over the token index only ('videomae')")
    intermediate = g["dim"] * g["mlp_ratio"]
    config = {
        "architectures": ["VideoMAEForVideoClassification" if classifier else "VideoMAEModel"],
        "model_type": "videomae", "image_size": g["input_size"], "patch_size": g["patch_size"], "num_channels": 3,
        "num_frames": g["num_frames"], "tubelet_size": g["tubelet"], "hidden_size": g["dim"],
        "num_hidden_layers": g["depth"], "num_attention_heads": g["heads"], "intermediate_size": int(intermediate),
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-6, "qkv_bias": True, "qv_bias": True,
        "use_mean_pooling": not g["token_norm"], "norm_pix_loss": True, "torch_dtype": "float32",
    }
    if g.get("decoder_dim"):
        config.update(decoder_hidden_size=g["decoder_dim"], decoder_num_hidden_layers=g["decoder_depth"],
                      decoder_num_attention_heads=g.get("decoder_heads") or 1,
                      decoder_intermediate_size=int(g["decoder_dim"] * g["mlp_ratio"]))
    if classifier:
        names = weights.class_names or {}
        labels = {str(i): names.get(str(i), f"LABEL_{i}") for i in range(g["num_classes"])}
        config.update(id2label=labels, label2id={v: int(k) for k, v in labels.items()})
    return config


def hf_state(weights: Weights, classifier: bool, layout: str) -> dict[str, torch.Tensor]:
    """This project's tensors under transformers' VideoMAE names (module docstring)."""
    if layout not in BIAS_LAYOUTS:
        raise ValueError(f"unknown bias layout {layout!r}; known: {', '.join(BIAS_LAYOUTS)}")
    s = weights.state
    base = "videomae." if classifier else ""
    out = {base + "embeddings.patch_embeddings.projection." + k: s["patch_embed.proj." + k] for k in ("weight", "bias")}
    if weights.geometry["token_norm"]:
        out.update({base + "layernorm." + k: s["norm." + k] for k in ("weight", "bias")})
    hf_names = {ours: hf for hf, ours in HF_BLOCK.items()}
    for i in block_indices(s, "blocks."):
        p, q = f"blocks.{i}.", f"{base}encoder.layer.{i}."
        for ours, hf in hf_names.items():
            for k in ("weight", "bias"):
                out[f"{q}{hf}.{k}"] = s[f"{p}{ours}.{k}"]
        query, key, value = s[p + "attn.qkv.weight"].chunk(3)
        q_bias, _, v_bias = s[p + "attn.qkv.bias"].chunk(3)      # the key bias: dropped, exactly (docstring)
        a = q + HF_QKV
        out.update({a + "query.weight": query, a + "key.weight": key, a + "value.weight": value})
        if layout == "linear":
            out.update({a + "query.bias": q_bias, a + "value.bias": v_bias})
        else:
            out.update({a + "q_bias": q_bias, a + "v_bias": v_bias})
    if classifier:
        out.update({"fc_norm." + k: s["fc_norm." + k] for k in ("weight", "bias")})
        out.update({"classifier." + k: s["classifier." + k] for k in ("weight", "bias")})
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in out.items()}


def write_hf_folder(weights: Weights, folder: str | Path, layout: str | None = None) -> dict:
    """Write `weights` as a transformers VideoMAE folder; returns what was written."""
    classifier = "classifier.weight" in weights.state
    if classifier and weights.geometry["token_norm"]:
        raise WeightsError(
            f"{weights.source}: this classifier normalizes every token before the mean (token_norm true), which "
            "VideoMAEForVideoClassification cannot: its mean pooling has no norm there. Fine-tune with "
            "--token-norm false (VideoMAE's structure) to publish it, or export its pretraining checkpoint")
    layout = layout or installed_bias_layout()
    config = hf_config(weights, classifier)
    state = hf_state(weights, classifier, layout)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from safetensors.torch import save_file
        name = "model.safetensors"
        save_file(state, str(folder / name), metadata={"format": "pt"})
    except ImportError:
        name = "pytorch_model.bin"
        torch.save(state, folder / name)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    size = weights.geometry["input_size"]
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "VideoMAEImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
        "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
        "resample": 2}, indent=2))
    return {"folder": str(folder), "weights": name, "architecture": config["architectures"][0],
            "bias_layout": layout, "num_tensors": len(state),
            "num_params": int(sum(v.numel() for v in state.values()))}
