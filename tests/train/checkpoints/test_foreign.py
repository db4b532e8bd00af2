"""Every weight layout train/checkpoints/foreign.py reads, built from the reference code's key
names (tests/train/checkpoints/layouts.py), loads into this project's model with features equal."""
import argparse
import json
from dataclasses import replace

import pytest
import torch

from tests.train.checkpoints import layouts
from train.checkpoints.adopt import adopt, adopt_classifier, check_geometry, init_model, run_geometry
from train.checkpoints.foreign import WeightsError, read_state_file, read_weights
from train.checkpoints.hf_export import write_hf_folder
from tests.train.eval.test_evaluate import TINY, labelled_shards  # noqa: F401 (a fixture)
from train.eval.classifier import VideoClassifier, load_encoder
from train.eval.config import EvalConfig
from train.eval.evaluation import linear_probe
from train.evaluate import parse_args
from train.export import export
from train.pretraining.config import TrainConfig
from train.pretraining.model import Head, build_model

GRID = (2, 2, 2)                      # 4 frames / tubelet 2, 32 px / patch 16
RUN = dict(num_frames=4, input_size=32)
MME_HEADS = [Head("traj", 2 * 2 * 4 * 3 * 2, 512, "tanh"), Head("hog", 2 * 2 * 4 * 3 * 9, 512, "sigmoid")]


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and norms included, so a dropped or zeroed one shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        if hasattr(model, "decoder_embed"):
            model.decoder_embed.bias.zero_()   # VideoMAE's encoder_to_decoder has no bias
    return model.eval()


def pico(out_dim=1536, seed: int = 0, **kw):
    return randomized(build_model("vit_pico", GRID, out_dim, **kw), seed)


def video(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def mask() -> torch.Tensor:
    return torch.tensor([[True, False, True, True, False, True, True, True]] * 2)


def same_features(a, b) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a.forward_features(video()), b.forward_features(video()), atol=1e-5, rtol=1e-5)


def loaded(path, out_dim=1536, **kw):
    """A fresh run's model (other random weights) with the file's weights adopted; the log lines."""
    model = pico(out_dim, seed=9, **kw)
    weights = read_weights(path)
    lines = check_geometry(weights, run_geometry(model, positions="videomae", **RUN)) + adopt(model, weights)
    return model.eval(), weights, lines


def own_checkpoint(model, path, **extra):
    cfg = TrainConfig(model="vit_pico", sampling_rate=2, **RUN)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": 3, "out_dim": 1536,
                "heads": [Head("out", 1536).to_dict()], **extra}, path)
    return path


# ---- this project's files ------------------------------------------------------------------------

def test_own_checkpoint_reads_back_whole(tmp_path):
    source = pico()
    model, weights, lines = loaded(own_checkpoint(source, tmp_path / "checkpoint.pt"))
    assert weights.format == "motion-mae" and weights.step == 3 and weights.geometry["heads"] == 2
    assert "decoder: kept from the file" in lines and "decoder head: kept from the file" in lines
    same_features(source, model)
    with torch.no_grad():
        torch.testing.assert_close(source(video(), mask()), model(video(), mask()))


@pytest.mark.parametrize("layout,fmt", [("timm", "pth"), ("videomae", "pth"), ("timm", "safetensors")])
def test_own_exports_read_back(tmp_path, layout, fmt):
    pytest.importorskip("safetensors") if fmt == "safetensors" else None
    source = pico()
    out = tmp_path / f"encoder.{fmt}"
    export(own_checkpoint(source, tmp_path / "checkpoint.pt"), out, layout, fmt)
    model, weights, lines = loaded(out)
    assert weights.format == "motion-mae-export" and weights.geometry["num_frames"] == 4
    assert "decoder: started fresh (none in the file)" in lines
    same_features(source, model)


# ---- VideoMAE, MGMAE, MME ----------------------------------------------------------------------------

def test_videomae_pretraining_checkpoint_keeps_its_decoder(tmp_path):
    source = pico()
    state = layouts.videomae_pretrain(source.state_dict())
    state["flow_model.fnet.conv1.weight"] = torch.zeros(2)      # a bundled network: counted, dropped
    torch.save({"model": state}, tmp_path / "checkpoint-799.pth")
    model, weights, lines = loaded(tmp_path / "checkpoint-799.pth")
    assert weights.format == "videomae-pretrain"
    assert any(line.startswith("not stated by the file, the run's: heads 2, num_frames 4, input_size 32")
               for line in lines)
    assert "decoder: kept from the file" in lines and "decoder head: kept from the file" in lines
    assert "unexpected flow_model.fnet.conv1 (1 tensors): no counterpart here, dropped" in lines
    same_features(source, model)
    with torch.no_grad():
        torch.testing.assert_close(source(video(), mask()), model(video(), mask()))


def test_a_decoder_of_another_width_or_target_starts_fresh(tmp_path):
    source = pico(decoder_dim=48)
    torch.save({"model": layouts.videomae_pretrain(source.state_dict())}, tmp_path / "ckpt.pth")
    model, _, lines = loaded(tmp_path / "ckpt.pth")                   # the run's decoder is 32 wide
    assert any(line.startswith("decoder: started fresh (the file's does not fit") for line in lines)
    same_features(source, model)
    model, _, lines = loaded(tmp_path / "ckpt.pth", out_dim=MME_HEADS, decoder_dim=48)   # another target
    assert "decoder: kept from the file" in lines
    assert any(line.startswith("decoder head: started fresh") for line in lines)


def test_layer_scale_is_folded_in(tmp_path):
    source = pico()
    state = layouts.videomae_pretrain(source.state_dict())
    for i in range(2):
        for gamma, part in (("gamma_1", "attn.proj"), ("gamma_2", "mlp.fc2")):
            g = torch.rand(64) + 0.5
            state[f"encoder.blocks.{i}.{gamma}"] = g
            state[f"encoder.blocks.{i}.{part}.weight"] = state[f"encoder.blocks.{i}.{part}.weight"] / g[:, None]
            state[f"encoder.blocks.{i}.{part}.bias"] = state[f"encoder.blocks.{i}.{part}.bias"] / g
    torch.save({"model": state}, tmp_path / "ckpt.pth")
    model, _, _ = loaded(tmp_path / "ckpt.pth")
    same_features(source, model)


def test_mme_checkpoint_heads_are_matched_by_size(tmp_path):
    source = pico(MME_HEADS)
    torch.save({"model": layouts.mme_pretrain(source.state_dict(), order=["hog", "traj"])}, tmp_path / "mme.pth")
    model, weights, lines = loaded(tmp_path / "mme.pth", out_dim=MME_HEADS)
    assert weights.format == "mme-pretrain"
    assert "decoder: kept from the file" in lines and "decoder head: kept from the file" in lines
    with torch.no_grad():
        torch.testing.assert_close(source(video(), mask()), model(video(), mask()))


def classifier(token_norm: bool, classes: int = 3, seed: int = 0) -> VideoClassifier:
    mae = pico(seed=seed)
    if not token_norm:
        mae.norm = torch.nn.Identity()
    return randomized(VideoClassifier(mae, classes), seed)


def read_classifier(path, classes: int = 3, **kw) -> tuple[VideoClassifier, dict]:
    """As train/evaluate.py builds it: load_encoder, then the classifier part once the classes are known."""
    mae, cfg, info = load_encoder(EvalConfig(checkpoint=str(path), **kw))
    model = VideoClassifier(mae, classes)
    notes = info["checkpoint_notes"] + adopt_classifier(model, info.pop("weights"))
    return model.eval(), {**info, "notes": notes, "cfg": cfg}


@pytest.mark.parametrize("key", ["module", "model"])
def test_videomae_finetuning_checkpoint_classifies_the_same(tmp_path, key):
    source = classifier(token_norm=False)
    torch.save({key: layouts.videomae_finetune(source.state_dict())}, tmp_path / "ft.pth")
    model, info = read_classifier(tmp_path / "ft.pth", **RUN)
    assert info["checkpoint_format"] == "videomae-finetune" and info["cfg"].token_norm is False
    assert info["cfg"].model == "vit_pico" and "classifier: kept from the file" in info["notes"]
    with torch.no_grad():
        torch.testing.assert_close(source(video()), model(video()), atol=1e-5, rtol=1e-5)


def test_a_classifier_of_other_classes_gets_a_fresh_head(tmp_path):
    source = classifier(token_norm=False, classes=5)
    torch.save({"module": layouts.videomae_finetune(source.state_dict())}, tmp_path / "ft.pth")
    _, info = read_classifier(tmp_path / "ft.pth", **RUN)
    assert any(n.startswith("classifier: started fresh") for n in info["notes"])


# ---- Hugging Face (no transformers needed) ---------------------------------------------------------

def encoder(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if k.startswith(("patch_embed.", "blocks.", "norm."))}


def hf_folder(folder, state: dict, config: dict):
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def hf_config(**kw) -> dict:
    return {"model_type": "videomae", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 256, "image_size": 32, "patch_size": 16, "num_frames": 4, "tubelet_size": 2,
            "layer_norm_eps": 1e-6, **kw}


@pytest.mark.parametrize("bias_layout", ["linear", "q_bias"])
def test_hf_encoder_folder_in_either_bias_layout(tmp_path, bias_layout):
    source = pico()
    folder = hf_folder(tmp_path / "hf", layouts.hf_state(encoder(source), bias_layout),
                       hf_config(use_mean_pooling=False))
    model, weights, lines = loaded(folder)
    assert weights.format == "hf" and weights.geometry["heads"] == 2 and weights.geometry["token_norm"]
    assert not any(line.startswith("unexpected") for line in lines)
    same_features(source, model)


def test_hf_classification_folder(tmp_path):
    source = classifier(token_norm=False)
    state = layouts.hf_state(source.state_dict(), "linear", prefix="videomae.")
    config = hf_config(use_mean_pooling=True, id2label={"0": "a", "1": "b", "2": "c"})
    folder = hf_folder(tmp_path / "hf", state, config)
    model, info = read_classifier(folder)                       # frames and input size from config.json
    assert info["cfg"].num_frames == 4 and info["cfg"].input_size == 32 and info["cfg"].token_norm is False
    assert read_weights(folder).class_names == {"0": "a", "1": "b", "2": "c"}
    with torch.no_grad():
        torch.testing.assert_close(source(video()), model(video()), atol=1e-5, rtol=1e-5)


def test_evaluate_takes_a_folder_and_a_foreign_file_on_the_command_line(tmp_path, tiny_shards):
    source = pico()
    folder = hf_folder(tmp_path / "hf", layouts.hf_state(encoder(source), "linear"), hf_config())
    for path in (folder, tmp_path / "vm.pth"):
        torch.save({"model": layouts.videomae_pretrain(source.state_dict())}, tmp_path / "vm.pth")
        cfg = parse_args(["--checkpoint", str(path), "--shards", str(tiny_shards)])
        assert cfg.checkpoint == str(path)


# ---- refusals ---------------------------------------------------------------------------------------

def test_a_pickle_only_file_is_refused_with_the_reason(tmp_path):
    torch.save({"model": layouts.videomae_pretrain(pico().state_dict()), "args": argparse.Namespace(lr=1.0)},
               tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match=r"refused, it holds argparse.Namespace, .*weights_only=False\)\['model'\]"):
        read_weights(tmp_path / "ckpt.pth")


def test_a_geometry_mismatch_is_one_line_naming_the_fields(tmp_path):
    path = own_checkpoint(pico(), tmp_path / "checkpoint.pt")
    with pytest.raises(WeightsError) as e:
        load_encoder(EvalConfig(checkpoint=str(path), input_size=64, num_frames=8))
    message = str(e.value)
    assert "\n" not in message and "num_frames 4 there, 8 here" in message and "input_size 32 there, 64 here" in message
    one_block = {k: v for k, v in pico().state_dict().items() if not k.startswith("blocks.1.")}
    torch.save({"model": layouts.videomae_pretrain(one_block)}, tmp_path / "shallow.pth")
    with pytest.raises(WeightsError, match="no model size here has the file's encoder .dim 64, depth 1"):
        load_encoder(EvalConfig(checkpoint=str(tmp_path / "shallow.pth"), **RUN))


def test_no_known_layout_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="no known weight layout"):
        read_weights(tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="not a Hugging Face VideoMAE folder"):
        read_weights(tmp_path)


def test_mean_pooled_weights_refuse_a_token_norm_run(tmp_path):
    torch.save({"module": layouts.videomae_finetune(classifier(token_norm=False).state_dict())}, tmp_path / "ft.pth")
    with pytest.raises(WeightsError, match="token_norm False there"):
        load_encoder(replace(EvalConfig(checkpoint=str(tmp_path / "ft.pth"), **RUN), token_norm=True))


def test_probe_a_videomae_checkpoint_end_to_end(labelled_shards, tmp_path):  # noqa: F811
    torch.save({"model": layouts.videomae_pretrain(pico().state_dict())}, tmp_path / "videomae.pth")
    lines = []
    result = linear_probe(tmp_path / "videomae.pth", labelled_shards, log=lines.append, probe_wd=0.01, **TINY)
    assert result["checkpoint_format"] == "videomae-pretrain" and result["config"]["model"] == "vit_pico"
    assert "weights: classifier: started fresh (none in the file)" in lines
    assert any(line.startswith("weights: not stated by the file") for line in lines)


@pytest.mark.parametrize("bias_layout", ["linear", "q_bias"])
def test_hf_folders_written_here_read_back_in_either_bias_layout(tmp_path, bias_layout):
    source = pico()
    meta = write_hf_folder(read_weights(own_checkpoint(source, tmp_path / "checkpoint.pt")), tmp_path / "hf",
                           layout=bias_layout)
    keys = set(read_state_file(tmp_path / "hf" / meta["weights"]))
    assert ("encoder.layer.0.attention.attention.q_bias" in keys) == (bias_layout == "q_bias")
    model, _, lines = loaded(tmp_path / "hf")
    assert not any(line.startswith("unexpected") for line in lines)
    same_features(source, model)


# ---- every layout through pretrain.py --init -----------------------------------------------------

def _write(layout: str, source, tmp_path):
    """`source`'s weights written in `layout`; a fine-tuned file holds `source` as its encoder."""
    if layout == "own checkpoint":
        return own_checkpoint(source, tmp_path / "checkpoint.pt")
    if layout == "own export":
        out = tmp_path / "encoder.pth"
        export(own_checkpoint(source, tmp_path / "checkpoint.pt"), out, "videomae", "pth")
        return out
    if layout == "videomae pretraining":
        torch.save({"model": layouts.videomae_pretrain(source.state_dict())}, tmp_path / "vm.pth")
        return tmp_path / "vm.pth"
    if layout == "mme pretraining":
        torch.save({"model": layouts.mme_pretrain(source.state_dict(), order=["traj", "hog"])}, tmp_path / "mme.pth")
        return tmp_path / "mme.pth"
    if layout == "videomae fine-tuning":
        ft = VideoClassifier(source, 3)
        torch.save({"module": layouts.videomae_finetune(ft.state_dict())}, tmp_path / "ft.pth")
        return tmp_path / "ft.pth"
    return hf_folder(tmp_path / "hf", layouts.hf_state(encoder(source), "q_bias"), hf_config(use_mean_pooling=False))


@pytest.mark.parametrize("layout", ["own checkpoint", "own export", "videomae pretraining", "mme pretraining",
                                    "videomae fine-tuning", "hf folder"])
def test_every_layout_starts_a_pretraining_run_with_equal_features(tmp_path, layout):
    """`--init` (`init_model`, what the engine calls) gives the encoder the file's features, whatever
    the layout; a run's own heads are kept or started fresh as the file allows."""
    out_dim = MME_HEADS if layout == "mme pretraining" else 1536
    source = pico(out_dim)
    run = pico(out_dim, seed=9)
    lines = init_model(run, str(_write(layout, source, tmp_path)), num_frames=4, input_size=32, positions="videomae")
    assert lines[0].startswith("from ") and not any("mismatch" in line for line in lines)
    same_features(source, run.eval())
