import pytest
import torch

from train.masks import MASKS, NEEDS
from tests.train.helpers import moving_square_batch, object_tokens

GRID = (4, 4, 4)  # 8 frames, 64 px, tubelet 2 x 16 x 16


@pytest.mark.parametrize("name", list(MASKS))
@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_exact_ratio(name, ratio):
    batch = moving_square_batch(B=5)
    m = MASKS[name](batch, GRID, ratio, torch.Generator().manual_seed(1))
    t, h, w = GRID
    assert m.shape == (5, t * h * w) and m.dtype == torch.bool
    if name == "random":
        assert (m.sum(1) == round(ratio * t * h * w)).all()
    else:
        assert (m.reshape(5, t, h * w).sum(-1) == round(ratio * h * w)).all()


@pytest.mark.parametrize("name", list(MASKS))
def test_needs_only_declared_keys(name):
    batch = moving_square_batch(B=2)
    kept = {k: batch[k] for k in NEEDS[name] | {"video"}}
    MASKS[name](kept, GRID, 0.9, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(MASKS))
def test_deterministic_given_generator(name):
    batch = moving_square_batch(B=3)
    a = MASKS[name](batch, GRID, 0.9, torch.Generator().manual_seed(7))
    b = MASKS[name](batch, GRID, 0.9, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def _square(B=64):
    # 128 px, 8 frames at frame_step 2: a 2x2-token square moves one token right and down per slice
    return moving_square_batch(B=B, T=8, size=128, obj=32, velocity=(4.0, 4.0), frame_step=2,
                               start=(16.0, 16.0)), (4, 8, 8)


def test_mgm_hides_the_moving_object_far_more_than_tube():
    batch, grid = _square()
    t, h, w = grid
    idx = object_tokens(batch, grid)                                  # (t,)
    cover = {}
    for name in ("tube", "mgm", "mgm_cc", "mgm_anchor"):
        m = MASKS[name](batch, grid, 0.5, torch.Generator().manual_seed(0)).reshape(-1, t, h * w)
        cover[name] = m[:, torch.arange(t), idx].float().mean().item()
    assert min(cover["mgm"], cover["mgm_cc"], cover["mgm_anchor"]) > 0.97 and cover["tube"] < 0.7, cover


def test_mgmae_visible_cubes_follow_the_motion():
    # where the object is visible in the base slice it stays visible along its path (no leak)
    batch, grid = _square(B=128)
    t, h, w = grid
    idx = object_tokens(batch, grid)
    base = 2
    follow = {}
    for name in ("tube", "mgmae"):
        vis = ~MASKS[name](batch, grid, 0.5, torch.Generator().manual_seed(0)).reshape(-1, t, h * w)
        along = vis[:, torch.arange(t), idx]                          # (B,t)
        seen = along[:, base]
        follow[name] = along[seen].float().mean().item()
    assert follow["mgmae"] > 0.9 and follow["tube"] < 0.75, follow
