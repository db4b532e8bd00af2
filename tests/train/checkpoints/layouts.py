"""Foreign checkpoint layouts built from this project's weights, with the key names and shapes of
the reference code (VideoMAE modeling_pretrain.py / modeling_finetune.py, MME pretrain/model.py,
transformers' modeling_videomae.py), so that no test downloads anything."""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def split_qkv_bias(out: dict, key: str, bias: Tensor) -> None:
    """attn.qkv.bias -> VideoMAE's attn.q_bias and attn.v_bias (it has no key bias)."""
    q, _, v = bias.chunk(3)
    stem = key[:-len("qkv.bias")]
    out[stem + "q_bias"], out[stem + "v_bias"] = q.clone(), v.clone()


def videomae_pretrain(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A VideoMAE (and MGMAE) PretrainVisionTransformer state dict: encoder.*, decoder.*,
    encoder_to_decoder (no bias: the model's decoder_embed bias must be zero), mask_token."""
    out = {}
    for k, v in state.items():
        if k.startswith(("patch_embed.", "blocks.", "norm.")):
            key = "encoder." + k
        elif k.startswith("decoder_blocks."):
            key = "decoder.blocks." + k[len("decoder_blocks."):]
        elif k.startswith("decoder_norm."):
            key = "decoder.norm." + k[len("decoder_norm."):]
        elif k.startswith("head."):
            key = "decoder." + k
        elif k == "decoder_embed.weight":
            key = "encoder_to_decoder.weight"
        elif k == "decoder_embed.bias":
            assert not v.any(), "VideoMAE's encoder_to_decoder has no bias"
            continue
        else:
            key = k
        if key.endswith("attn.qkv.bias"):
            split_qkv_bias(out, key, v)
        else:
            out[key] = v.clone()
    return out


def mme_pretrain(state: dict[str, Tensor], order: list[str]) -> dict[str, Tensor]:
    """MME's: decoder and encoder_to_decoder as one-element ModuleLists; the heads (Linear 512, GELU,
    Linear, Dropout, activation) numbered in MME's order (`order` lists this project's head names)."""
    out = {}
    for k, v in videomae_pretrain(state).items():
        if k.startswith("decoder.head.heads."):
            name, rest = k[len("decoder.head.heads."):].split(".", 1)
            out[f"decoder.0.head.{order.index(name)}.{rest}"] = v
        elif k.startswith("decoder."):
            out["decoder.0." + k[len("decoder."):]] = v
        elif k == "encoder_to_decoder.weight":
            out["encoder_to_decoder.0.weight"] = v
        else:
            out[k] = v
    return out


def videomae_finetune(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A VideoMAE VisionTransformer (modeling_finetune.py, use_mean_pooling) state dict from a
    classifier's: no norm (Identity), fc_norm, head; q_bias / v_bias."""
    out = {}
    for k, v in state.items():
        if k.endswith("attn.qkv.bias"):
            split_qkv_bias(out, k, v)
        else:
            out[k] = v.clone()
    return out


HF_BLOCK = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
            "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}


def hf_state(state: dict[str, Tensor], bias_layout: str, prefix: str = "") -> dict[str, Tensor]:
    """transformers' VideoMAEModel (under `prefix`, "videomae." in the task models): query / key / value
    Linears; the query / value biases as Linear biases ("linear", transformers 5) or q_bias / v_bias (4)."""
    out = {}
    for k, v in state.items():
        if k.startswith("patch_embed.proj."):
            out[prefix + "embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = v.clone()
        elif k.startswith("norm."):
            out[prefix + "layernorm." + k[5:]] = v.clone()
        elif k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            layer = f"{prefix}encoder.layer.{i}."
            part, suffix = rest.rsplit(".", 1)
            if part == "attn.qkv":
                names = ("query", "key", "value")
                if suffix == "weight":
                    for name, w in zip(names, v.chunk(3)):
                        out[f"{layer}attention.attention.{name}.weight"] = w.clone()
                else:
                    q, _, b = v.chunk(3)
                    if bias_layout == "linear":
                        out[f"{layer}attention.attention.query.bias"] = q.clone()
                        out[f"{layer}attention.attention.value.bias"] = b.clone()
                    else:
                        out[f"{layer}attention.attention.q_bias"] = q.clone()
                        out[f"{layer}attention.attention.v_bias"] = b.clone()
            else:
                out[f"{layer}{HF_BLOCK[part]}.{suffix}"] = v.clone()
        elif k.startswith(("fc_norm.", "head.")):
            out[("classifier." + k[5:]) if k.startswith("head.") else k] = v.clone()
    return out
