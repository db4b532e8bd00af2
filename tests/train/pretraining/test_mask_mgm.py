"""`mgm` / `mgm_cc` / `mgm_anchor`: the properties MGM states, on motion known by construction."""
import numpy as np
import pytest
import torch

from shards import open_shards
from tests.train.helpers import cell_centres, moving_square_batch
from train.clips.dataset import ClipSpec, hflip, read_clip
from train.pretraining.masks import MASKS
from train.pretraining.masks.mgm import camera_motion, track

GRID = (4, 8, 8)   # 8 frames of 128 px, tubelet 2 x 16 x 16
DISK = 13 / 64     # ratio whose region is the exact disk |d| <= 2 tokens: its centroid is its centre


def centroids(m: torch.Tensor, grid=GRID) -> torch.Tensor:
    """(B, N) mask -> (B, t, 2) mean (x, y) token position of the hidden tokens per slice."""
    t, h, w = grid
    m = m.reshape(-1, t, h, w).float()
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    n = m.sum((2, 3))
    return torch.stack([(m * xs).sum((2, 3)) / n, (m * ys).sum((2, 3)) / n], -1)


def square(velocity, start, B=4):
    # a 3x3-token square; 4 px/frame at frame_step 2 over a 2-frame tubelet = one token per slice
    return moving_square_batch(B=B, T=8, size=128, obj=48, velocity=velocity, frame_step=2, start=start)


@pytest.mark.parametrize("velocity, start, xs", [((4.0, 0.0), (16.0, 48.0), [2, 3, 4, 5]),
                                                 ((-4.0, 0.0), (64.0, 48.0), [5, 4, 3, 2])])
def test_region_centroid_moves_one_token_per_slice_with_the_object(velocity, start, xs):
    m = MASKS["mgm"](square(velocity, start), GRID, DISK, torch.Generator().manual_seed(0))
    c = centroids(m)
    assert torch.allclose(c[..., 0], torch.tensor(xs, dtype=torch.float32).expand(4, -1))
    assert torch.allclose(c[..., 1], torch.full((4, 4), 4.0))  # rows 3-5 move together: centre row 4


def test_slices_without_vectors_keep_the_last_displacement():
    # intra-coded middle slices (no valid vector): the region keeps moving 1 token per slice
    batch = square((4.0, 0.0), (16.0, 48.0))
    batch["mv_valid"] = batch["mv_valid"].clone()
    batch["mv_valid"][:, 2:6] = False
    c = centroids(MASKS["mgm"](batch, GRID, DISK, torch.Generator().manual_seed(0)))
    assert torch.allclose(c[..., 0], torch.tensor([2.0, 3.0, 4.0, 5.0]).expand(4, -1))


def test_still_clip_gets_one_random_region_for_the_whole_clip():
    batch = square((0.0, 0.0), (16.0, 48.0), B=16)
    m = MASKS["mgm"](batch, GRID, DISK, torch.Generator().manual_seed(0)).reshape(16, 4, 64)
    assert (m == m[:, :1]).all()                                        # same region in every slice
    assert len({tuple(c.tolist()) for c in centroids(m.reshape(16, -1))[:, 0]}) > 8   # spread over samples


def components(hidden: torch.Tensor) -> int:
    """4-connected components of a (h, w) bool map."""
    h, w = hidden.shape
    seen, count = set(), 0
    for start in map(tuple, hidden.nonzero().tolist()):
        if start in seen:
            continue
        count, stack = count + 1, [start]
        seen.add(start)
        while stack:
            i, j = stack.pop()
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if 0 <= a < h and 0 <= b < w and hidden[a, b] and (a, b) not in seen:
                    seen.add((a, b))
                    stack.append((a, b))
    return count


@pytest.mark.parametrize("ratio", [0.1, DISK, 0.5, 0.75, 0.9])
def test_one_continuous_region_per_slice_moving_continuously(ratio):
    # the paper's "spatiotemporally continuous" mask: one piece per slice, and consecutive slices
    # overlap (the object moves one token per slice; the region moves with it, it does not jump)
    batch = moving_square_batch(B=8, T=8, size=128, obj=32, velocity=(4.0, 4.0), frame_step=2, start=(16.0, 16.0))
    m = MASKS["mgm"](batch, GRID, ratio, torch.Generator().manual_seed(3)).reshape(8, 4, 8, 8)
    assert all(components(m[b, s]) == 1 for b in range(8) for s in range(4))
    n = round(ratio * 64)
    overlap = (m[:, 1:] & m[:, :-1]).sum((2, 3)).float() / n
    assert overlap.min() >= 0.3, overlap.min()


def pan_with_object(B=32, pan=-3.0, obj_speed=2.0, frame_step=2, T=8, size=128, obj=32):
    """Camera pans right: the background moves `pan` px/frame on screen; a square moves
    `obj_speed` px/frame on screen (slower than the background, so camera-inclusive vectors peak
    on the background). The homography holds the pan, as the shards store it."""
    hc = wc = size // 8
    corner = torch.tensor([40.0, 48.0]) + torch.tensor([obj_speed, 0.0]) * frame_step * torch.arange(T)[:, None]
    p = cell_centres(hc, wc)
    inside = ((p[None] >= corner[:, None, None]) & (p[None] < corner[:, None, None] + obj)).all(-1)  # (T,Hc,Wc)
    mv = torch.where(inside[..., None], torch.tensor([obj_speed, 0.0]), torch.tensor([pan, 0.0]))
    hom = torch.eye(3).repeat(B, T - 1, 1, 1)
    hom[..., 0, 2] = pan * frame_step
    return {"video": torch.zeros(B, 3, T, size, size), "mv": mv[None].expand(B, -1, -1, -1, -1).clone(),
            "mv_valid": torch.ones(B, T, hc, wc, dtype=torch.bool), "homography": hom,
            "frame_step": torch.full((B,), frame_step), "inside": inside}


def test_camera_motion_is_the_pan_per_stored_frame():
    batch = pan_with_object(B=2)
    cam = camera_motion(batch["homography"], batch["frame_step"], 8, (16, 16), 8)
    assert torch.allclose(cam, torch.tensor([-3.0, 0.0]).expand(2, 8, 16, 16, 2), atol=1e-5)


def test_camera_compensated_guidance_masks_the_object_camera_inclusive_does_not():
    batch = pan_with_object()
    t, h, w = GRID
    # object tokens per slice: tokens whose cells are inside the square in the slice's first frame
    obj = batch["inside"][::2].reshape(t, h, 2, w, 2).any(4).any(2).reshape(t, h * w)     # (t, h*w)
    cover, spread = {}, {}
    for name in ("mgm", "mgm_cc"):
        m = MASKS[name](batch, GRID, 0.25, torch.Generator().manual_seed(0)).reshape(32, t, h * w)
        cover[name] = (m & obj).sum(-1).float().div(obj.sum(-1)).mean().item()
        spread[name] = centroids(m.reshape(32, -1)).std(0).mean().item()    # over samples, in tokens
    assert cover["mgm_cc"] > 0.95 and cover["mgm"] < 0.3, cover
    assert spread["mgm_cc"] < 0.5 and spread["mgm"] > 1.5, (spread, cover)


def test_the_centre_moves_with_the_vectors_that_guide_it():
    # camera-inclusive salience: from a background token the centre follows the pan (-3 px/frame
    # = -0.75 token per slice); compensated salience: from the object's centre it follows the
    # object's on-screen motion (+2 px/frame = +0.5 token per slice), not its motion relative
    # to the background (+5 px/frame), which would slide it off the object
    batch = pan_with_object(B=1)
    mv, frame_step = batch["mv"], batch["frame_step"]
    comp = mv - camera_motion(batch["homography"], frame_step, 8, (16, 16), 8)
    per_px = frame_step.float() * 2 / 16
    zero = torch.zeros(1, dtype=torch.long)
    pan = track(mv, mv.norm(dim=-1), zero, torch.tensor([[7.0, 7.0]]), GRID, per_px)
    obj = track(mv, comp.norm(dim=-1), zero, torch.tensor([[3.0, 3.5]]), GRID, per_px)
    # (the window's tail still reaches the object's vectors 2.5 tokens away: 0.05 token)
    assert torch.allclose(pan[0], torch.tensor([[7.0, 7.0], [6.25, 7.0], [5.5, 7.0], [4.75, 7.0]]), atol=0.05)
    assert torch.allclose(obj[0], torch.tensor([[3.0, 3.5], [3.5, 3.5], [4.0, 3.5], [4.5, 3.5]]))


def test_compensation_is_a_no_op_for_a_still_camera():
    batch = moving_square_batch(B=4, T=8, size=128, obj=32, velocity=(4.0, 4.0), frame_step=2, start=(16.0, 16.0))
    a = MASKS["mgm"](batch, GRID, 0.5, torch.Generator().manual_seed(5))
    b = MASKS["mgm_cc"](batch, GRID, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["mgm", "mgm_cc", "mgm_recentre", "mgm_anchor"])
@pytest.mark.parametrize("ratio", [0.05, DISK, 0.25, 0.5, 0.75, 0.95])
def test_exact_ratio_in_every_slice(name, ratio):
    batch = pan_with_object(B=3)
    batch["mv_valid"][:, 2:4] = False                  # an intra-coded slice among moving ones
    m = MASKS[name](batch, GRID, ratio, torch.Generator().manual_seed(2)).reshape(3, 4, 64)
    assert (m.sum(-1) == round(ratio * 64)).all()


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_camera_motion_cancels_the_pan_through_the_loader(tiny_shards, seed, flip):
    # the clip's homographies (cropped, rescaled, mirrored by the loader) predict the codec
    # vectors of the background, whatever the crop scale and the flip
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, needs=MASKS["mgm_cc"].needs)
    with open_shards(tiny_shards) as ds:
        c = read_clip(ds["pan"], spec, np.random.default_rng(seed))
    c = hflip(c) if flip else c
    b = {k: torch.as_tensor(np.ascontiguousarray(v))[None] for k, v in c.items()}
    comp = b["mv"] - camera_motion(b["homography"].float(), b["frame_step"], 4, (4, 4), 8)
    valid = b["mv_valid"][0]
    assert (b["mv"][0].norm(dim=-1)[valid] > 0.3).float().mean() > 0.6      # the pan moves the background
    assert (comp[0].norm(dim=-1)[valid] < 1e-3).float().mean() > 0.6       # and compensation removes it
