import pytest
import torch

from train.pretraining.masks import MASKS
from train.pretraining.model import MODELS, build_model
from train.pretraining.targets import TARGETS, masked_mse


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_shapes(name):
    grid, out_dim = (1, 2, 2), 7                                       # 2 frames, 32 px
    size = MODELS[name]
    # materializing ViT-B/L costs seconds on CPU: check those on the meta device (no values)
    device = "cpu" if size.dim <= 384 else "meta"
    with torch.device(device):
        model = build_model(name, grid, out_dim)
    assert isinstance(model.patch_embed.proj, torch.nn.Conv3d)
    assert len(model.blocks) == size.depth and model.blocks[0].attn.num_heads == size.heads
    assert model.head.in_features == size.decoder_dim and model.head.out_features == out_dim
    if device == "meta":
        return
    video = torch.randn(2, 3, 2, 32, 32)
    mask = torch.tensor([[True, False, True, True], [False, True, True, True]])
    with torch.no_grad():
        assert model(video, mask).shape == (2, 3, out_dim)


def test_predictions_follow_target_order():
    # prediction k of a sample is for its k-th hidden token in increasing index: the order of target[mask]
    torch.manual_seed(0)
    model = build_model("vit_pico", (2, 2, 2), 4)
    video = torch.randn(1, 3, 4, 32, 32)
    mask = torch.tensor([[True, False, False, True, True, False, True, True]])
    target = torch.randn(1, 8, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = masked_mse(model(video, mask), target, torch.ones_like(target), mask)
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.05


def test_decoder_depth_override():
    model = build_model("vit_pico", (1, 2, 2), 3, decoder_depth=3)
    assert len(model.decoder_blocks) == 3


def test_separable_positions_share_the_place_across_time():
    from train.pretraining.model import POSITIONS, separable_sincos_table

    grid, dim = (4, 3, 5), 64                                      # d_t 16, d_h 24, d_w 24
    table = separable_sincos_table(grid, dim)[0].reshape(*grid, dim)
    assert table.shape == (4, 3, 5, 64) and POSITIONS["separable"](grid, dim).shape == (1, 60, 64)
    # same (h, w), another time slice: only the first 16 values (the t part) differ
    assert torch.equal(table[0, 1, 2, 16:], table[3, 1, 2, 16:])
    assert not torch.equal(table[0, 1, 2, :16], table[3, 1, 2, :16])
    # same t and h, another column: the t and h parts agree, the w part differs
    assert torch.equal(table[2, 1, 0, :40], table[2, 1, 4, :40]) and not torch.equal(table[2, 1, 0, 40:], table[2, 1, 4, 40:])
    model = build_model("vit_pico", (2, 2, 2), 4, positions="separable")
    assert model.pos_embed.shape == (1, 8, 64) and model.decoder_pos_embed.shape == (1, 8, 32)
    with pytest.raises(KeyError, match="known: videomae, separable"):
        build_model("vit_pico", (2, 2, 2), 4, positions="learned")


def test_two_heads_side_by_side_with_their_activations():
    # MME's decoder heads (XinyuSun/MME pretrain/model.py): Linear(Dd, 512) -> GELU -> Linear -> act,
    # concatenated in the target's order; one plain head stays a bare Linear (checkpoint keys unchanged)
    from train.pretraining.model import Head

    torch.manual_seed(0)
    heads = (Head("traj", 8, 512, "tanh"), Head("hog", 5, 512, "sigmoid"))
    model = build_model("vit_pico", (1, 2, 2), heads)
    assert model.out_dim == 13 and set(model.head.heads) == {"traj", "hog"}
    traj = model.head.heads["traj"]
    assert [type(m).__name__ for m in traj] == ["Linear", "GELU", "Linear", "Tanh"]
    assert traj[0].in_features == 32 and traj[0].out_features == 512 and traj[2].out_features == 8
    video = torch.randn(2, 3, 2, 32, 32) * 50                                 # drive the heads to saturation
    mask = torch.tensor([[True, False, True, True], [False, True, True, True]])
    with torch.no_grad():
        out = model(video, mask)
    assert out.shape == (2, 3, 13)
    assert out[..., :8].abs().max() <= 1 and out[..., 8:].min() >= 0 and out[..., 8:].max() <= 1
    # stored as dicts in a checkpoint, rebuilt to the same state-dict keys
    again = build_model("vit_pico", (1, 2, 2), [h.to_dict() for h in heads])
    assert again.state_dict().keys() == model.state_dict().keys()
    assert "head.weight" in build_model("vit_pico", (1, 2, 2), 7).state_dict()
