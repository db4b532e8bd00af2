"""Read pretrained weights of any supported layout into this project's key names.

The format is told by the file's contents, never its name:

    motion-mae             train/pretrain.py checkpoint.pt: {"model", "config", "heads", ...}
    motion-mae-classifier  a classifier fine-tuned by train/evaluate.py --finetune (train/checkpoints/classifier.py)
    motion-mae-export      train/export.py encoder.pth (+ encoder.json beside it): timm or VideoMAE attention biases
    videomae-pretrain      VideoMAE's and MGMAE's pretraining checkpoints: {"model": {"encoder.*", "decoder.*",
                           "encoder_to_decoder.weight", "mask_token"}}, attention biases as q_bias / v_bias
    mme-pretrain           MME's: the same with one decoder per target list ("decoder.0.*",
                           "encoder_to_decoder.0.weight") and MLP heads "decoder.0.head.{j}.{0,2}"
    videomae-finetune      VideoMAE's, MGMAE's and MME's fine-tuning checkpoints: {"module" or "model":
                           {"patch_embed.*", "blocks.*", "fc_norm.*" (mean pooling) or "norm.*", "head.*"}}
    hf                     a Hugging Face VideoMAE folder: config.json + model.safetensors or pytorch_model.bin
                           ("videomae." prefixes, separate query / key / value), read without transformers

Every file is read with `torch.load(weights_only=True)` (or safetensors): a file that needs
arbitrary unpickling (e.g. one that stores an argparse Namespace next to its weights) is refused
with the reason and a way out, never unpickled.

The result, `Weights`, holds tensors under the names of `train.pretraining.model.VideoMAE`
(timm `Block`s: one `attn.qkv` with a bias) plus a classifier's `fc_norm.*` and `classifier.*`,
and the geometry the file states (None where it does not, e.g. frames and input size of a
VideoMAE checkpoint: its sin-cos table is not stored). Conversions are exact:

- q_bias / v_bias -> qkv.bias with a zero key bias (VideoMAE has none);
- separate query / key / value Linears -> one qkv (HF);
- a layer scale gamma_1 / gamma_2 (VideoMAE with init_values > 0) is folded into attn.proj / mlp.fc2;
- encoder_to_decoder (no bias) -> decoder_embed with a zero bias.

Keys that map to nothing here (a VideoMAE encoder's empty head, an optical-flow network
bundled with a checkpoint) are counted by group in `Weights.dropped`.
"""
from __future__ import annotations

import json
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from shards.errors import CliError
from train.pretraining.model import MODELS, as_heads

Tensor = torch.Tensor
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# what a block of each layout calls its parts, in this project's names (timm Block)
BLOCK_PARTS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
HF_BLOCK = {"layernorm_before": "norm1", "attention.output.dense": "attn.proj", "layernorm_after": "norm2",
            "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
HF_QKV = "attention.attention."


class WeightsError(CliError, ValueError):
    """A file that is not weights this project reads, or does not fit the run; the message is one line."""


@dataclass
class Weights:
    format: str                                  # one of the formats in this module's docstring
    state: dict[str, Tensor]                     # this project's names (module docstring)
    geometry: dict                               # GEOMETRY keys; None = not stated by the file
    dropped: dict[str, int] = field(default_factory=dict)   # source key group -> tensors not mapped
    source: str = ""
    config: dict | None = None                   # a train/pretrain.py run's TrainConfig, when the file has one
    heads: list | None = None                    # its prediction heads (train.pretraining.model.Head dicts)
    class_names: dict | None = None              # class id (str) -> name, for a classifier
    step: int = 0                                # training steps behind the weights, where the file says


# geometry a file may state; the run's model is checked against these (train/checkpoints/adopt.py)
GEOMETRY = ("dim", "depth", "heads", "mlp_ratio", "tubelet", "patch_size", "num_frames", "input_size",
            "positions", "token_norm", "num_classes", "decoder_dim", "decoder_depth", "decoder_heads")


# ---- reading files ---------------------------------------------------------------------------------

def torch_file(path: Path) -> dict:
    """torch.load(weights_only=True); a pickle-only file is refused with the reason."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = found[1] if found else "python objects"
        raise WeightsError(
            f"{path}: refused, it holds {what}, which torch.load(weights_only=True) will not unpickle (unpickling "
            f"can run code); where you trust the file, keep its tensors: "
            f"torch.save(torch.load(path, weights_only=False)['model'], 'weights.pth')") from e
    except Exception as e:  # a truncated or non-torch file: say which file, not a zipfile traceback
        raise WeightsError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors or a checkpoint dict")
    return obj


def safetensors_file(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise WeightsError(f"{path}: reading .safetensors needs the safetensors package "
                           "(pip install safetensors, or pip install -e '.[hf]')") from e
    return load_file(str(path))


def read_state_file(path: Path) -> dict:
    return safetensors_file(path) if path.suffix == ".safetensors" else torch_file(path)


def read_weights(path: str | Path) -> Weights:
    """Weights of any supported format at `path` (a file, or a Hugging Face folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_hf_folder(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file or folder")
    obj = read_state_file(path)
    if isinstance(obj.get("model"), dict) and isinstance(obj.get("config"), dict):
        return own_checkpoint(obj, path)
    if obj.get("format") == "motion-mae-classifier":
        return own_classifier(obj, path)
    state = unwrap(obj, path)
    state = {strip(k, "module."): v for k, v in state.items()}   # saved from a DDP-wrapped model
    if any(k.startswith(("videomae.", "embeddings.patch_embeddings.")) for k in state):
        meta = path.with_name("config.json")
        return from_hf(state, json.loads(meta.read_text()) if meta.is_file() else {}, path)
    if any(k.startswith("encoder.patch_embed.") for k in state):
        return from_videomae_pretrain(state, path)
    state = {strip(k, "backbone."): v for k, v in state.items()}
    if "patch_embed.proj.weight" in state:
        return from_encoder_layout(state, path)
    raise WeightsError(f"{path}: no known weight layout (no patch_embed.proj.weight, encoder.patch_embed.*, "
                       f"or videomae.* keys; first keys: {', '.join(list(state)[:4])})")


def unwrap(obj: dict, path: Path) -> dict[str, Tensor]:
    """The state dict inside a checkpoint: under "model" or "module" (VideoMAE's --model_key), or the dict itself."""
    for key in ("model", "module", "state_dict"):
        if isinstance(obj.get(key), dict):
            return {k: v for k, v in obj[key].items() if isinstance(v, Tensor)}
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: no tensors in it (keys: {', '.join(map(str, list(obj)[:6]))})")
    return tensors


def strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


# ---- this project's files --------------------------------------------------------------------------

def own_checkpoint(ckpt: dict, path: Path) -> Weights:
    cfg = ckpt["config"]
    size = MODELS[cfg["model"]]
    heads = ckpt.get("heads") or [h.to_dict() for h in as_heads(int(ckpt["out_dim"]))]
    state = dict(ckpt["model"])
    geometry = {"dim": size.dim, "depth": size.depth, "heads": size.heads, "mlp_ratio": size.mlp_ratio,
                "tubelet": cfg["tubelet"], "patch_size": cfg["patch_size"], "num_frames": cfg["num_frames"],
                "input_size": cfg["input_size"], "positions": cfg.get("positions", "videomae"),
                "token_norm": True, "num_classes": None, "decoder_heads": size.decoder_heads,
                **decoder_shape(state)}
    return Weights("motion-mae", state, geometry, source=str(path), config=cfg, heads=heads,
                   step=int(ckpt.get("step", 0)))


def own_classifier(obj: dict, path: Path) -> Weights:
    state = {("classifier." + k[5:] if k.startswith("head.") else k): v for k, v in obj["model"].items()}
    geometry = {**dict.fromkeys(GEOMETRY), **obj["geometry"]}
    return Weights("motion-mae-classifier", state, geometry, source=str(path), config=obj.get("pretrain_config"),
                   class_names=obj.get("class_names"), step=int(obj.get("step", 0)))


def from_encoder_layout(state: dict[str, Tensor], path: Path) -> Weights:
    """train/export.py's encoder.pth, or a VideoMAE / MGMAE / MME fine-tuning state dict."""
    renames = {k: k for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
                              "fc_norm.weight", "fc_norm.bias")}
    renames.update({"head.weight": "classifier.weight", "head.bias": "classifier.bias"})
    out = {dst: state[src] for src, dst in renames.items() if src in state}
    used = set(renames) & set(state)
    out.update(timm_blocks(state, "blocks.", "blocks.", used))
    meta_file = path.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    own = "num_params" in meta and "tubelet" in meta
    fmt = "motion-mae-export" if own else "videomae-finetune"
    geometry = shape_geometry(out)
    if own:
        geometry.update(heads=meta["heads"], num_frames=meta["num_frames"], input_size=meta["input_size"],
                        positions=meta.get("position_table", "videomae"))
    return Weights(fmt, out, geometry, dropped_groups(state, used), str(path))


# ---- VideoMAE, MGMAE, MME pretraining --------------------------------------------------------------

def from_videomae_pretrain(state: dict[str, Tensor], path: Path) -> Weights:
    used: set[str] = set()
    out = {}
    for part in ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"):
        if "encoder." + part in state:
            out[part] = state["encoder." + part]
            used.add("encoder." + part)
    out.update(timm_blocks(state, "encoder.blocks.", "blocks.", used))
    mme = "encoder_to_decoder.0.weight" in state
    dec, proj = ("decoder.0.", "encoder_to_decoder.0.weight") if mme else ("decoder.", "encoder_to_decoder.weight")
    if proj in state:
        out["decoder_embed.weight"] = state[proj]
        out["decoder_embed.bias"] = torch.zeros(state[proj].shape[0])
        used.add(proj)
    if "mask_token" in state:
        out["mask_token"] = state["mask_token"]
        used.add("mask_token")
    out.update(timm_blocks(state, dec + "blocks.", "decoder_blocks.", used))
    for suffix in ("weight", "bias"):
        for src, dst in ((dec + "norm.", "decoder_norm."), (dec + "head.", "head.")):
            if src + suffix in state:
                out[dst + suffix] = state[src + suffix]
                used.add(src + suffix)
    if mme:  # MME's MLP heads (Linear, GELU, Linear, Dropout, activation): matched to the run's by size
        for key in state:
            m = re.fullmatch(re.escape(dec) + r"head\.(\d+)\.(0|2)\.(weight|bias)", key)
            if m:
                out[f"head.heads.#{m[1]}.{m[2]}.{m[3]}"] = state[key]
                used.add(key)
    geometry = {**shape_geometry(out), **decoder_shape(out)}
    return Weights("mme-pretrain" if mme else "videomae-pretrain", out, geometry, dropped_groups(state, used),
                   str(path))


def timm_blocks(state: dict[str, Tensor], src: str, dst: str, used: set[str]) -> dict[str, Tensor]:
    """Blocks `src{i}.*` of a timm / VideoMAE layout -> `dst{i}.*` with one qkv bias and no layer scale."""
    out = {}
    for i in block_indices(state, src):
        p, q = f"{src}{i}.", f"{dst}{i}."
        for part in BLOCK_PARTS:
            for suffix in ("weight", "bias"):
                if p + part + "." + suffix in state:
                    out[q + part + "." + suffix] = state[p + part + "." + suffix]
                    used.add(p + part + "." + suffix)
        qkv = out[q + "attn.qkv.weight"]
        if p + "attn.q_bias" in state:
            q_bias, v_bias = state[p + "attn.q_bias"], state[p + "attn.v_bias"]
            out[q + "attn.qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
            used.update({p + "attn.q_bias", p + "attn.v_bias"})
        out.setdefault(q + "attn.qkv.bias", torch.zeros(qkv.shape[0], dtype=qkv.dtype))  # qkv_bias=False
        for gamma, part in (("gamma_1", "attn.proj"), ("gamma_2", "mlp.fc2")):
            if p + gamma in state:  # x + gamma * f(x): fold the layer scale into f's last Linear
                g = state[p + gamma]
                out[q + part + ".weight"] = out[q + part + ".weight"] * g[:, None]
                out[q + part + ".bias"] = out[q + part + ".bias"] * g
                used.add(p + gamma)
    return out


def block_indices(state: dict, prefix: str) -> list[int]:
    found = {int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return sorted(found)


# ---- Hugging Face -----------------------------------------------------------------------------------

def read_hf_folder(folder: Path) -> Weights:
    meta = folder / "config.json"
    files = [folder / name for name in HF_WEIGHTS if (folder / name).is_file()]
    if not meta.is_file() or not files:
        raise WeightsError(f"{folder}: a folder, but not a Hugging Face VideoMAE folder (config.json and one of "
                           f"{', '.join(HF_WEIGHTS)}); sharded weights are not read")
    config = json.loads(meta.read_text())
    if config.get("model_type") not in (None, "videomae"):
        raise WeightsError(f"{folder}: model_type {config.get('model_type')!r}, expected 'videomae'")
    return from_hf(read_state_file(files[0]), config, folder)


def from_hf(state: dict[str, Tensor], config: dict, path: Path) -> Weights:
    used: set[str] = set()
    base = "videomae." if any(k.startswith("videomae.") for k in state) else ""
    out = {}
    for src, dst in (("embeddings.patch_embeddings.projection.", "patch_embed.proj."), ("layernorm.", "norm.")):
        for suffix in ("weight", "bias"):
            if base + src + suffix in state:
                out[dst + suffix] = state[base + src + suffix]
                used.add(base + src + suffix)
    out.update(hf_blocks(state, base + "encoder.layer.", "blocks.", used))
    out.update(hf_blocks(state, "decoder.decoder_layers.", "decoder_blocks.", used))
    renames = {"fc_norm.": "fc_norm.", "classifier.": "classifier.", "decoder.norm.": "decoder_norm.",
               "decoder.head.": "head."}
    for src, dst in renames.items():
        for suffix in ("weight", "bias"):
            if src + suffix in state:
                out[dst + suffix] = state[src + suffix]
                used.add(src + suffix)
    if "encoder_to_decoder.weight" in state:
        w = state["encoder_to_decoder.weight"]
        out["decoder_embed.weight"], out["decoder_embed.bias"] = w, torch.zeros(w.shape[0], dtype=w.dtype)
        used.add("encoder_to_decoder.weight")
    if "mask_token" in state:
        out["mask_token"] = state["mask_token"]
        used.add("mask_token")
    geometry = {**shape_geometry(out), **decoder_shape(out)}
    if config:
        names = config.get("id2label")
        geometry.update(heads=config.get("num_attention_heads"), num_frames=config.get("num_frames"),
                        input_size=config.get("image_size"), decoder_heads=config.get("decoder_num_attention_heads"))
    else:
        names = None
    return Weights("hf", out, geometry, dropped_groups(state, used), str(path),
                   class_names=names if "classifier.weight" in out else None)


def hf_blocks(state: dict[str, Tensor], src: str, dst: str, used: set[str]) -> dict[str, Tensor]:
    """HF VideoMAE layers `src{i}.*` -> timm blocks `dst{i}.*`: query, key, value stacked into qkv; the
    query / value biases read from either layout (transformers 5: query.bias, value.bias; 4: q_bias, v_bias)."""
    out = {}
    for i in block_indices(state, src):
        p, q = f"{src}{i}.", f"{dst}{i}."
        for hf, ours in HF_BLOCK.items():
            for suffix in ("weight", "bias"):
                out[q + ours + "." + suffix] = state[p + hf + "." + suffix]
                used.add(p + hf + "." + suffix)
        a = p + HF_QKV
        weights = [state[a + n + ".weight"] for n in ("query", "key", "value")]
        used.update(a + n + ".weight" for n in ("query", "key", "value"))
        zero = torch.zeros(weights[0].shape[0], dtype=weights[0].dtype)
        biases = []
        for name, old in (("query", "q_bias"), ("key", None), ("value", "v_bias")):
            for key in (a + name + ".bias", a + old if old else None):
                if key and key in state:
                    biases.append(state[key])
                    used.add(key)
                    break
            else:
                biases.append(zero)
        out[q + "attn.qkv.weight"] = torch.cat(weights)
        out[q + "attn.qkv.bias"] = torch.cat(biases)
    return out


# ---- geometry and leftovers ----------------------------------------------------------------------------

def shape_geometry(state: dict[str, Tensor]) -> dict:
    """What the tensors' shapes say: width, depth, MLP ratio, tubelet, patch, token norm, classes."""
    geometry = dict.fromkeys(GEOMETRY)
    w = state["patch_embed.proj.weight"]                                  # (D, 3, tubelet, patch, patch)
    geometry.update(dim=w.shape[0], tubelet=w.shape[2], patch_size=w.shape[3], depth=len(block_indices(state, "blocks.")),
                    token_norm="norm.weight" in state, positions="videomae")
    if "blocks.0.mlp.fc1.weight" in state:
        geometry["mlp_ratio"] = state["blocks.0.mlp.fc1.weight"].shape[0] / w.shape[0]
    if "classifier.weight" in state:
        geometry["num_classes"] = state["classifier.weight"].shape[0]
    return geometry


def decoder_shape(state: dict[str, Tensor]) -> dict:
    if "decoder_norm.weight" not in state:
        return {"decoder_dim": None, "decoder_depth": None}
    return {"decoder_dim": state["decoder_norm.weight"].shape[0],
            "decoder_depth": len(block_indices(state, "decoder_blocks."))}


def dropped_groups(state: dict[str, Tensor], used: set[str]) -> dict[str, int]:
    return key_groups(k for k in state if k not in used)


def key_groups(keys) -> dict[str, int]:
    """Keys counted by group, the key up to its first block index less its last part: "blocks" for
    blocks.3.attn.qkv.weight, "norm" for norm.weight, "encoder.head" for encoder.head.weight."""
    return dict(sorted(Counter(re.split(r"\.\d+\.", k)[0].rsplit(".", 1)[0] if "." in k else k
                               for k in keys).items()))


def checkpoint_shards(path: str | Path) -> str | None:
    """The shard set behind the weights at `path` (a train/pretrain.py run's, or the one a classifier's
    encoder was pretrained on), read without the tensors; None for other formats."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"--checkpoint {path}: no such file (expected weights: docs/interop.md lists the formats)")
    if p.is_dir() or p.suffix == ".safetensors":
        return None
    try:  # mmap: a 1 GB checkpoint costs nothing here
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        obj = torch_file(p)  # raises the refusal or the reason it is unreadable
    config = obj.get("config") if isinstance(obj.get("config"), dict) else obj.get("pretrain_config")
    return config.get("shards") if isinstance(config, dict) else None
