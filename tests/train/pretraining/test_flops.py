"""Analytic FLOPs per clip against torch's FLOP counter; the peak table."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from train.pretraining.flops import forward_flops, hidden_tokens, patch_embed_flops, peak_tflops, train_flops
from train.pretraining.masks import get_mask
from train.pretraining.model import MODELS, build_model


def counted(model, video, mask, backward: bool) -> int:
    # The counter has no formula for the CPU flash-attention kernel; the math kernel is plain bmm.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(video, mask)
        if backward:
            out.float().pow(2).mean().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("mask_name, ratio, decoder", [("tube", 0.75, (None, None)), ("random", 0.9, (2, 48))])
def test_analytic_flops_equal_the_counter(mask_name, ratio, decoder):
    torch.manual_seed(0)
    depth, width = decoder
    grid, out_dim = (2, 4, 4), 7
    model = build_model("vit_pico", grid, out_dim, decoder_depth=depth, decoder_dim=width)
    video = torch.randn(2, 3, 4, 64, 64)
    mask = get_mask(mask_name)({"video": video}, grid, ratio, torch.Generator().manual_seed(0))
    hidden = hidden_tokens(mask_name, grid, ratio)
    assert int(mask[0].sum()) == hidden
    visible = 32 - hidden
    fwd = forward_flops("vit_pico", grid, visible, out_dim, decoder_depth=depth, decoder_dim=width)
    assert counted(model, video, mask, backward=False) == 2 * fwd            # a batch of 2 clips
    # backward = 2x forward, except the patch embedding, whose input (the video) needs no gradient
    train = train_flops("vit_pico", grid, visible, out_dim, decoder_depth=depth, decoder_dim=width)
    embed = patch_embed_flops(grid, MODELS["vit_pico"].dim, 2, 16)
    assert counted(model, video, mask, backward=True) == 2 * (train - embed)


def test_vit_b_pretraining_flops_per_clip():
    """ViT-B 16x224, tube 0.9: 1568 tokens, 160 visible (8 slices x 20). Forward: embedding 3.7,
    encoder 28.1 (12 blocks x 160 tokens), decoder 37.3 (4 blocks x 1568 tokens x 384), head 1.7."""
    grid = (8, 14, 14)
    assert hidden_tokens("tube", grid, 0.9) == 8 * 176
    assert forward_flops("vit_base", grid, 160, 1536) / 1e9 == pytest.approx(70.88, abs=0.01)
    assert train_flops("vit_base", grid, 160, 1536) / 1e9 == pytest.approx(212.64, abs=0.01)
    # MME's recipe: tube 0.7 (480 visible), one decoder block 192 wide
    assert train_flops("vit_base", grid, 480, 88, decoder_depth=1, decoder_dim=192) / 1e9 == pytest.approx(
        3 * forward_flops("vit_base", grid, 480, 88, decoder_depth=1, decoder_dim=192) / 1e9)


def test_peak_table():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("Tesla V100-SXM2-32GB") == 125.0
    assert peak_tflops("NVIDIA L4") == 121.0 and peak_tflops("NVIDIA L40S") == 362.0
    assert peak_tflops("Some Future GPU") is None
