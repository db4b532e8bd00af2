"""A Hugging Face VideoMAE folder written here loads in transformers with every key used and
features (and logits) equal to this project's; transformers' own folders read back the same."""
import pytest
import torch

from tests.train.checkpoints.test_foreign import RUN, classifier, loaded, own_checkpoint, pico, read_classifier, video
from tests.train.eval.test_evaluate import TINY, checkpoint, labelled_shards  # noqa: F401 (fixtures)
from train import export as export_cli
from train.checkpoints.classifier import save_classifier
from train.checkpoints.foreign import WeightsError, read_weights
from train.checkpoints.hf_export import installed_bias_layout, write_hf_folder
from train.eval.config import EvalConfig
from train.eval.evaluation import finetune

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")


def hf_input(video: torch.Tensor) -> torch.Tensor:
    return video.permute(0, 2, 1, 3, 4)              # transformers: (B, T, C, H, W)


def load_cleanly(cls, folder):
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def test_encoder_folder_loads_as_videomae_model(tmp_path):
    source = pico()
    meta = write_hf_folder(read_weights(own_checkpoint(source, tmp_path / "checkpoint.pt")), tmp_path / "hf")
    assert meta["architecture"] == "VideoMAEModel" and meta["bias_layout"] == installed_bias_layout()
    hf = load_cleanly(transformers.VideoMAEModel, tmp_path / "hf")
    with torch.no_grad():
        torch.testing.assert_close(hf(hf_input(video())).last_hidden_state, source.forward_features(video()),
                                   atol=1e-5, rtol=1e-5)


def test_classifier_folder_loads_as_videomae_for_video_classification(tmp_path):
    source = classifier(token_norm=False)
    cfg = EvalConfig(model="vit_pico", tubelet=2, patch_size=16, sampling_rate=2, positions="videomae", **RUN)
    path = save_classifier(tmp_path / "eval_finetune.pt", source, cfg, {0: "a", 1: "b", 2: "c"}, None)
    export_cli.main(["--checkpoint", str(path), "--format", "hf", "--out", str(tmp_path / "hf")])
    hf = load_cleanly(transformers.VideoMAEForVideoClassification, tmp_path / "hf")
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c"}
    _, info = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and {k.split(".")[0] for k in info["unexpected_keys"]} == {"fc_norm", "classifier"}
    with torch.no_grad():
        torch.testing.assert_close(hf(hf_input(video())).logits, source(video()), atol=1e-5, rtol=1e-5)


def test_a_token_norm_classifier_is_refused_with_the_way_out(tmp_path):
    source = classifier(token_norm=True)
    cfg = EvalConfig(model="vit_pico", tubelet=2, patch_size=16, sampling_rate=2, positions="videomae", **RUN)
    path = save_classifier(tmp_path / "c.pt", source, cfg, {}, None)
    with pytest.raises(WeightsError, match="--token-norm false"):
        write_hf_folder(read_weights(path), tmp_path / "hf")


def test_transformers_folders_read_back(tmp_path):
    config = transformers.VideoMAEConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=256, image_size=32, patch_size=16, num_frames=4,
                                         tubelet_size=2, layer_norm_eps=1e-6, use_mean_pooling=False, num_labels=3)
    torch.manual_seed(0)
    hf = transformers.VideoMAEModel(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    hf.save_pretrained(tmp_path / "model")
    model, weights, lines = loaded(tmp_path / "model")
    assert weights.format == "hf" and not any(line.startswith("unexpected") for line in lines)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(video()), hf(hf_input(video())).last_hidden_state,
                                   atol=1e-5, rtol=1e-5)

    clf = transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(
        **{**config.to_dict(), "use_mean_pooling": True})).eval()
    with torch.no_grad():
        for p in clf.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    clf.save_pretrained(tmp_path / "clf")
    ours, info = read_classifier(tmp_path / "clf")
    assert "classifier: kept from the file" in info["notes"]
    with torch.no_grad():  # HF's fc_norm eps is 1e-5, ours 1e-6: equal to ~1e-6 on unit-scale features
        torch.testing.assert_close(ours(video()), clf(hf_input(video())).logits, atol=1e-4, rtol=1e-4)


def test_fine_tune_then_publish(labelled_shards, checkpoint, tmp_path):  # noqa: F811
    result = finetune(checkpoint, labelled_shards, model="vit_pico", max_steps=1, token_norm=False,
                      out=str(tmp_path / "eval_finetune.json"), **TINY)
    assert result["classifier"] == str(tmp_path / "eval_finetune.pt")
    ours, _ = read_classifier(result["classifier"], classes=2)
    write_hf_folder(read_weights(result["classifier"]), tmp_path / "hf")
    hf = load_cleanly(transformers.VideoMAEForVideoClassification, tmp_path / "hf")
    assert hf.config.id2label == {0: "still", 1: "moving"}
    with torch.no_grad():
        torch.testing.assert_close(hf(hf_input(video())).logits, ours(video()), atol=1e-5, rtol=1e-5)
