"""Every config in train/configs loads, states the papers' numbers, and trains 2 steps on CPU
with a tiny model override (docs/recipes.md is the table these numbers come from)."""
from pathlib import Path

import pytest

from train.pretraining.config import REPO_ROOT, TrainConfig, load_file
from train.pretraining.engine import train
from train.eval.classifier import load_encoder
from train.eval.config import EvalConfig

from tests.train.pretraining.test_engine import tiny_config

# pretraining configs (fine-tuning ones, finetune_*.yaml, are EvalConfig files: tests/train/eval/test_finetune.py)
CONFIGS = sorted(p.name for p in (REPO_ROOT / "train" / "configs").glob("*.yaml")
                 if p.name != "study.yaml" and not p.name.startswith("finetune_"))
RECIPES = [c for c in CONFIGS if c != "demo.yaml"]

# config -> (mask, target, ratio, global batch, clips per video read, epochs, stride, flip, peak lr, final lr)
PAPERS = {
    "videomae_k400.yaml": ("tube", "pixel", 0.9, 2048, 1, 1600, 4, False, 1.2e-3, 8e-5),
    "videomae_k400_800.yaml": ("tube", "pixel", 0.9, 2048, 1, 800, 4, False, 1.2e-3, 8e-5),
    "videomae_ssv2.yaml": ("tube", "pixel", 0.9, 2048, 1, 2400, 2, False, 1.2e-3, 8e-5),
    "videomae_ssv2_800.yaml": ("tube", "pixel", 0.9, 2048, 1, 800, 2, False, 1.2e-3, 8e-5),
    "mgm_k400.yaml": ("mgm", "pixel", 0.75, 2048, 1, 800, 4, False, 1.2e-3, 8e-5),
    "mgm_k400_1600.yaml": ("mgm", "pixel", 0.75, 2048, 1, 1600, 4, False, 1.2e-3, 8e-5),
    "mgm_ssv2.yaml": ("mgm", "pixel", 0.75, 2048, 1, 800, 2, False, 1.2e-3, 8e-5),
    "mgm_ssv2_400.yaml": ("mgm", "pixel", 0.75, 2048, 1, 400, 2, False, 1.2e-3, 8e-5),
    "mgm_ssv2_2400.yaml": ("mgm", "pixel", 0.75, 2048, 1, 2400, 2, False, 1.2e-3, 8e-5),
    "mgmae_k400.yaml": ("mgmae", "pixel", 0.9, 1536, 4, 200, 4, False, 1.5e-3, 1.5e-5),
    "mgmae_ssv2.yaml": ("mgmae", "pixel", 0.9, 1536, 4, 200, 2, False, 1.5e-3, 1.5e-5),
    "mme_k400.yaml": ("tube", "mme", 0.7, 768, 1, 1600, 4, True, 4.5e-4, 3e-5),
    "mme_k400_800.yaml": ("tube", "mme", 0.7, 768, 1, 800, 4, True, 4.5e-4, 3e-5),
    "mme_ssv2.yaml": ("tube", "mme", 0.7, 768, 1, 800, 2, False, 4.5e-4, 3e-5),
}


def recipe(name: str) -> TrainConfig:
    return TrainConfig.from_dict(load_file(name)).validate()


def test_every_recipe_is_in_the_table_and_the_docs():
    assert sorted(PAPERS) == RECIPES
    doc = (REPO_ROOT / "docs" / "recipes.md").read_text()
    for name in RECIPES:
        assert name in doc, name


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_states_the_papers_numbers(name):
    c = recipe(name)
    mask, target, ratio, batch, repeats, epochs, stride, flip, lr, final = PAPERS[name]
    assert (c.mask, c.target, c.ratio, c.batch_size, c.repeated_aug, c.epochs, c.sampling_rate, c.flip) == \
        (mask, target, ratio, batch, repeats, epochs, stride, flip)
    assert c.lr() == pytest.approx(lr) and c.final_lr() == pytest.approx(final)
    assert (c.model, c.num_frames, c.tubelet, c.input_size, c.patch_size) == ("vit_base", 16, 2, 224, 16)
    assert c.weight_decay == 0.05 and c.betas == (0.9, 0.95) and c.norm_target
    assert (c.decoder_depth, c.decoder_dim) == ((1, 192) if target == "mme" else (4, None))
    assert c.warmup_epochs == (20 if mask == "mgmae" else 40)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_two_steps_with_a_tiny_model(tiny_shards, tmp_path, name):
    """The recipe's mask, target, ratio, stride, flip and repeated augmentation, on a tiny model
    and input; two micro-batches per step, so accumulation runs too."""
    c = recipe(name)
    r = c.repeated_aug
    tiny = tiny_config(tiny_shards, tmp_path, **{
        **{k: getattr(c, k) for k in ("mask", "target", "mask_ratio", "sampling_rate", "flip", "repeated_aug",
                                      "decoder_depth", "norm_target", "weight_decay", "betas")},
        "batch_size": 2 * r, "batch_per_device": r, "max_steps": 2,
        "decoder_dim": 48 if c.decoder_dim else None})
    lines = []
    summary = train(tiny, log=lines.append)
    assert summary["step"] == 2 and summary["last_loss"] > 0
    assert any("1 processes x 2 micro-batches" in s for s in lines)
    # the checkpoint loads back where evaluation builds the model (MME's 192-wide decoder included)
    mae, _, info = load_encoder(EvalConfig(checkpoint=str(tmp_path / "checkpoint.pt")))
    assert info["checkpoint_step"] == 2 and mae.decoder_embed.out_features == (48 if c.decoder_dim else 32)
