"""`mgm_recentre`: a random start, then the region re-centred on each slice's strongest motion."""
import pytest
import torch

from tests.train.helpers import moving_square_batch
from tests.train.pretraining.test_mask_mgm import DISK, GRID, centroids, pan_with_object, square
from train.pretraining.masks import MASKS
from train.pretraining.masks.common import token_motion
from train.pretraining.masks.mgm_recentre import centres

MASK = MASKS["mgm_recentre"]


def blobs(B: int, at: dict[int, tuple[int, int]], speed: float = 4.0) -> dict:
    """8 frames of 128 px, no motion except a 3x3-token block moving `speed` px/frame to the right
    in each slice s of `at`, centred on token at[s] = (x, y); the block's place is unrelated from
    one slice to the next (as when different things move in turn)."""
    mv = torch.zeros(B, 8, 16, 16, 2)
    for s, (x, y) in at.items():
        mv[:, 2 * s:2 * s + 2, 2 * (y - 1):2 * (y + 2), 2 * (x - 1):2 * (x + 2), 0] = speed
    return {"video": torch.zeros(B, 3, 8, 128, 128), "mv": mv, "mv_valid": torch.ones(B, 8, 16, 16, dtype=torch.bool),
            "frame_step": torch.full((B,), 2)}


@pytest.mark.parametrize("velocity, start, xs", [((4.0, 0.0), (16.0, 48.0), [3, 4, 5]),
                                                 ((-4.0, 0.0), (64.0, 48.0), [4, 3, 2])])
def test_after_a_random_start_the_region_sits_on_the_moving_square(velocity, start, xs):
    # a 3x3-token square moving one token per slice: from slice 1 on, the 13-token disk is centred
    # on the square's middle token (its smoothed motion is the largest), on the middle row
    m = MASK(square(velocity, start, B=16), GRID, DISK, torch.Generator().manual_seed(0))
    c = centroids(m)
    assert torch.allclose(c[:, 1:, 0], torch.tensor(xs, dtype=torch.float32).expand(16, -1))
    assert torch.allclose(c[:, 1:, 1], torch.full((16, 3), 4.0))
    assert len({tuple(p.tolist()) for p in c[:, 0]}) > 8        # slice 0: a random start, spread over samples


def test_the_region_jumps_to_each_slice_s_strongest_motion():
    # no correspondence between slices: the centre is wherever that slice moves most
    at = {1: (2, 2), 2: (5, 5), 3: (2, 5)}
    m = MASK(blobs(8, at), GRID, DISK, torch.Generator().manual_seed(1))
    c = centroids(m)
    assert torch.allclose(c[:, 1:], torch.tensor([at[1], at[2], at[3]], dtype=torch.float32).expand(8, -1, -1))


def test_the_strongest_of_two_moving_blocks_wins():
    batch = blobs(4, {1: (2, 2)}, speed=2.0)
    batch["mv"] += blobs(4, {1: (5, 5)}, speed=3.0)["mv"]
    c = centres(token_motion(batch["mv"], batch["mv_valid"], GRID)[0], torch.Generator().manual_seed(0))
    assert torch.equal(c[:, 1], torch.tensor([5.0, 5.0]).expand(4, -1))


def test_slices_without_motion_keep_the_previous_centre():
    # slice 2 intra-coded (no valid vector), slice 3 still: both keep slice 1's centre
    batch = blobs(8, {1: (2, 5), 3: (5, 2)})
    batch["mv_valid"][:, 4:6] = False
    batch["mv"][:, 6:] = 0
    c = centroids(MASK(batch, GRID, DISK, torch.Generator().manual_seed(2)))
    assert torch.allclose(c[:, 1:], torch.tensor([2.0, 5.0]).expand(8, 3, -1))


def test_still_clip_keeps_its_random_start_in_every_slice():
    batch = square((0.0, 0.0), (16.0, 48.0), B=16)
    m = MASK(batch, GRID, DISK, torch.Generator().manual_seed(0)).reshape(16, 4, 64)
    assert (m == m[:, :1]).all()
    assert len({tuple(p.tolist()) for p in centroids(m.reshape(16, -1))[:, 0]}) > 8


def test_camera_inclusive_vectors_put_the_region_on_a_faster_panning_background():
    # the rule takes the codec vectors as they are: the background (3 px/frame) outruns the
    # square (2 px/frame), so after slice 0 the region lies on the background, away from the square
    batch = pan_with_object(B=16)
    t, h, w = GRID
    obj = batch["inside"][::2].reshape(t, h, 2, w, 2).any(4).any(2).reshape(t, h * w)
    m = MASK(batch, GRID, 0.25, torch.Generator().manual_seed(0)).reshape(16, t, h * w)
    cover = (m[:, 1:] & obj[1:]).sum(-1).float() / obj[1:].sum(-1)
    assert cover.mean() < 0.3, cover.mean()


@pytest.mark.parametrize("ratio", [0.05, DISK, 0.25, 0.5, 0.75, 0.95])
def test_exact_ratio_in_every_slice(ratio):
    batch = moving_square_batch(B=3, T=8, size=128, obj=32, velocity=(4.0, 4.0), frame_step=2, start=(16.0, 16.0))
    batch["mv_valid"][:, 2:4] = False
    m = MASK(batch, GRID, ratio, torch.Generator().manual_seed(2)).reshape(3, 4, 64)
    assert (m.sum(-1) == round(ratio * 64)).all()
    assert MASK.hidden(GRID, ratio) == 4 * round(ratio * 64)
