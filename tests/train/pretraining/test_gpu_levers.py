"""What a GPU step uses: SDPA attention in every block, fused AdamW where the parameters are on
CUDA, and dual masking (the decoder reconstructs a subset of the hidden tokens)."""
import math

import pytest
import torch
from timm.layers import Attention

from train.pretraining.config import TrainConfig
from train.pretraining.dual import decoded_tokens, decoder_mask, running_cell
from train.pretraining.engine import make_optimizer, train
from train.pretraining.flops import forward_flops, hidden_tokens, patch_embed_flops, train_flops
from train.pretraining.masks import get_mask
from train.pretraining.model import MODELS, build_model
from tests.train.pretraining.test_engine import tiny_config
from tests.train.pretraining.test_flops import counted


@pytest.mark.parametrize("name", list(MODELS))
def test_every_attention_runs_through_sdpa(name):
    model = build_model(name, (2, 2, 2), 7)
    attention = [m for m in model.modules() if isinstance(m, Attention)]
    size = MODELS[name]
    assert len(attention) == size.depth + size.decoder_depth
    assert all(m.fused_attn for m in attention)   # F.scaled_dot_product_attention: flash / memory-efficient kernels


def test_adamw_is_fused_only_with_every_parameter_on_cuda():
    model = build_model("vit_pico", (2, 2, 2), 7)
    assert make_optimizer(model, 1e-3, (0.9, 0.95), 0.05).defaults["fused"] is False      # CPU: the plain loop
    assert make_optimizer(model, 1e-3, (0.9, 0.95), 0.05, fused=False).defaults["fused"] is False
    if torch.cuda.is_available():
        assert make_optimizer(model.cuda(), 1e-3, (0.9, 0.95), 0.05).defaults["fused"] is True


def test_the_decoder_mask_keeps_an_exact_share_of_each_clips_hidden_tokens():
    grid = (4, 4, 4)
    video = torch.randn(3, 3, 8, 64, 64)
    mask = get_mask("random")({"video": video}, grid, 0.75, torch.Generator().manual_seed(0))
    decode = decoder_mask(mask, 0.5, torch.Generator().manual_seed(1))
    assert decoded_tokens(48, 0.5) == 24 and (decode.sum(1) == 24).all()
    assert not (decode & ~mask).any()                        # only hidden tokens are reconstructed
    assert not torch.equal(decode[0], decode[1])             # a draw per clip
    assert torch.equal(decode, decoder_mask(mask, 0.5, torch.Generator().manual_seed(1)))
    assert decoder_mask(mask, 1.0, torch.Generator()) is mask
    assert decoded_tokens(5, 0.01) == 1


def test_the_running_cell_keeps_half_of_every_2x2_cell_and_shifts_one_position_a_slice():
    grid = (4, 4, 6)
    cells = running_cell(grid, 0.5, phase=0).reshape(4, 2, 2, 3, 2).permute(0, 1, 3, 2, 4)   # (t, cell rows, cell cols, 2, 2)
    assert cells.sum((-1, -2)).eq(2).all()                       # 2 of every cell's 4 tokens in every slice
    first = cells[:, 0, 0].flatten(1)                            # (t, 4): one cell's pattern, slice by slice
    assert (cells == cells[:, :1, :1]).all()                     # the same pattern tiled over the slice
    # VideoMAE V2's queue [drop, drop, keep, keep] advanced one position before each slice is read
    assert first.tolist() == [[False, True, True, False], [True, True, False, False],
                              [True, False, False, True], [False, False, True, True]]
    assert running_cell(grid, 0.25, 2).reshape(4, -1).sum(1).tolist() == [6, 6, 6, 6]
    assert running_cell(grid, 0.75, 2).reshape(4, -1).sum(1).tolist() == [18, 18, 18, 18]
    assert running_cell((2, 3, 5), 0.5, 1).shape == (30,)        # odd sides cut the last cells
    assert all(torch.equal(running_cell(grid, 0.5, p + 1)[:-24], running_cell(grid, 0.5, p)[24:]) for p in range(3))
    with pytest.raises(ValueError, match="0.25, 0.5 or 0.75; for another share use --decoder-mask random"):
        running_cell(grid, 0.3, 0)
    with pytest.raises(ValueError, match="decoder_mask running_cell"):
        TrainConfig(decoder_ratio=0.6).validate()
    TrainConfig(decoder_ratio=0.6, decoder_mask="random").validate()


def test_the_running_cell_decoder_mask_decodes_the_hidden_tokens_the_cell_keeps():
    """Tube 0.75 on a 4 x 8 x 8 grid, decoder ratio 0.5: each clip decodes exactly half its hidden
    tokens, and nearly all of them (all but the few that make the count exact) where its phase's
    pattern keeps a token."""
    grid = (4, 8, 8)
    video = torch.randn(16, 3, 8, 128, 128)
    mask = get_mask("tube")({"video": video}, grid, 0.75, torch.Generator().manual_seed(0))
    decode = decoder_mask(mask, 0.5, torch.Generator().manual_seed(3), grid, "running_cell")
    assert (decode.sum(1) == 96).all() and not (decode & ~mask).any()
    patterns = torch.stack([running_cell(grid, 0.5, p) for p in range(4)])                  # (4, N)
    for row, hid in zip(decode, mask):
        inside = (row & patterns).sum(1)                                                     # per phase
        phase = int(inside.argmax())
        kept = int((hid & patterns[phase]).sum())        # the hidden tokens the clip's pattern keeps
        assert int(inside[phase]) == min(kept, 96)       # all of them, or 96 of them
        assert int((row & ~patterns[phase]).sum()) == max(0, 96 - kept)   # the rest made up from the others
    assert len({int((row & patterns).sum(1).argmax()) for row in decode}) > 1               # a phase per clip
    again = decoder_mask(mask, 0.5, torch.Generator().manual_seed(3), grid, "running_cell")
    assert torch.equal(decode, again)


def test_dual_masking_predicts_the_decoded_tokens_only():
    torch.manual_seed(0)
    grid = (2, 4, 4)
    model = build_model("vit_pico", grid, 7)
    video = torch.randn(2, 3, 4, 64, 64)
    mask = get_mask("tube")({"video": video}, grid, 0.75, torch.Generator().manual_seed(0))
    decode = decoder_mask(mask, 0.5, torch.Generator().manual_seed(0))
    assert model(video, mask, decode).shape == (2, 12, 7)
    assert model(video, mask).shape == (2, 24, 7)


@pytest.mark.parametrize("decoder_ratio", [0.5, 0.25])
def test_dual_masking_flops_equal_the_counter(decoder_ratio):
    torch.manual_seed(0)
    grid, out_dim = (2, 4, 4), 7
    model = build_model("vit_pico", grid, out_dim)
    video = torch.randn(2, 3, 4, 64, 64)
    mask = get_mask("tube")({"video": video}, grid, 0.75, torch.Generator().manual_seed(0))
    hidden = hidden_tokens("tube", grid, 0.75)
    decoded = decoded_tokens(hidden, decoder_ratio)
    decode = decoder_mask(mask, decoder_ratio, torch.Generator().manual_seed(0))
    visible = 32 - hidden
    fwd = forward_flops("vit_pico", grid, visible, out_dim, decoded=decoded)
    assert counted(lambda v, m: model(v, m, decode), video, mask, backward=False) == 2 * fwd
    embed = patch_embed_flops(grid, MODELS["vit_pico"].dim, 2, 16)
    train = train_flops("vit_pico", grid, visible, out_dim, decoded=decoded)
    assert counted(lambda v, m: model(v, m, decode), video, mask, backward=True) == 2 * (train - embed)
    assert train < train_flops("vit_pico", grid, visible, out_dim)


def test_dual_masking_saves_30_percent_of_a_vit_b_clip():
    """ViT-B 16x224, tube 0.9 (160 visible of 1568), the decoder on half the hidden tokens (704):
    the 4-block decoder runs on 864 tokens instead of 1568 (forward 16.8 GFLOPs instead of 37.3),
    the head on 704 (0.8 instead of 1.7)."""
    grid, visible = (8, 14, 14), 160
    full = train_flops("vit_base", grid, visible, 1536)
    dual = train_flops("vit_base", grid, visible, 1536, decoded=decoded_tokens(1408, 0.5))
    assert full / 1e9 == pytest.approx(212.64, abs=0.01)
    assert dual / 1e9 == pytest.approx(148.69, abs=0.01)
    assert 1 - dual / full == pytest.approx(0.301, abs=0.001)


def test_a_run_with_dual_masking_trains_resumes_and_counts_its_flops(tiny_shards, tmp_path):
    kw = dict(decoder_ratio=0.5, mask_ratio=0.75, max_steps=4, warmup_steps=1, seed=4)
    lines = []
    summary = train(tiny_config(tiny_shards, tmp_path / "a", **kw), log=lines.append)
    assert "decoder reconstructs 3 of 6 hidden tokens" in "\n".join(lines)
    full = train(tiny_config(tiny_shards, tmp_path / "b", **{**kw, "decoder_ratio": 1.0}), log=lambda s: None)
    assert summary["flops_per_clip"] < full["flops_per_clip"] and math.isfinite(summary["last_loss"])
    train(tiny_config(tiny_shards, tmp_path / "c", stop_at=2, **kw), log=lambda s: None)
    resumed = train(tiny_config(tiny_shards, tmp_path / "c", resume="auto", **kw), log=lambda s: None)
    assert resumed["last_loss"] == summary["last_loss"]   # the decoder's draw depends on the step alone
    with pytest.raises(ValueError, match="decoder_ratio 0.0 must be in"):
        TrainConfig(decoder_ratio=0.0).validate()
