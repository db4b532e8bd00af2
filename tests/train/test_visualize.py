import numpy as np
import pytest
import torch
from PIL import Image

from shards.derived import cell_hog
from train import visualize
from train.pretraining.config import TrainConfig
from train.pretraining.engine import CHECKPOINT, train
from train.pretraining.targets.pixel import patchify
from train.visualize import draw_hog, draw_motion_vectors, flow_to_color, unpatchify

MOTION = ["mv", "flow", "tracks", "hog"]


@pytest.fixture(scope="module")
def pixel_checkpoint(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    cfg = TrainConfig(shards=str(tiny_shards), out=str(out), model="vit_pico", num_frames=4, sampling_rate=2,
                      input_size=32, batch_size=2, max_steps=1, warmup_steps=1, warmup_epochs=0.0,
                      num_workers=0, device="cpu", log_every=1).validate()
    train(cfg, log=lambda s: None)
    return out / CHECKPOINT


def frames_in(path) -> int:
    with Image.open(path) as im:
        assert im.size[0] > 0 and im.size[1] > 0
        return getattr(im, "n_frames", 1)


def test_writes_every_figure_with_a_checkpoint(tiny_shards, pixel_checkpoint, tmp_path):
    written = visualize.main(["--shards", str(tiny_shards), "--video", "pan", "--checkpoint", str(pixel_checkpoint),
                              "--out", str(tmp_path), "--frames", "5", "--tile", "32"])
    names = {f"{n}.{ext}" for n in [*MOTION, "masks", "reconstruction"] for ext in ("png", "gif")}
    assert set(written) == names
    for name in names:
        assert (tmp_path / name).stat().st_size > 0, name
    assert all(frames_in(tmp_path / f"{n}.gif") == 5 for n in MOTION)
    assert frames_in(tmp_path / "masks.gif") == 4 and frames_in(tmp_path / "reconstruction.gif") == 4  # clip frames
    with Image.open(tmp_path / "masks.png") as im:  # a title band + one row of tiles per mask and the clip
        assert im.size[1] >= 5 * 32


def test_without_a_checkpoint_there_is_no_reconstruction(tiny_shards, tmp_path):
    written = visualize.main(["--shards", str(tiny_shards), "--out", str(tmp_path), "--frames", "3",
                              "--num-frames", "4", "--input-size", "32", "--tile", "32", "--colors", "32"])
    assert "reconstruction.png" not in written and frames_in(tmp_path / "flow.gif") == 3
    with Image.open(tmp_path / "mv.png") as im:
        assert im.mode == "P"  # --colors: palette images


def test_flow_colours_follow_the_hsv_wheel():
    flow = np.array([[[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, 0.0]]], np.float32)   # right, down, left, still
    right, down, left, still = flow_to_color(flow, max_speed=3.0)[0].astype(int)
    assert right.argmax() == 0 and right[0] == 255                     # +x is red, full speed full brightness
    assert left[2] == 255 and left[0] < 10                             # -x is cyan
    assert tuple(still) == (0, 0, 0)
    assert not np.array_equal(down, right)


def test_motion_vector_arrow_points_along_the_motion():
    frame = np.zeros((32, 32, 3), np.uint8)
    mv = np.zeros((4, 4, 2), np.float32)
    valid = np.zeros((4, 4), bool)
    mv[1, 1], valid[1, 1] = (3.0, 0.0), True
    mv[2, 2] = (0.0, 3.0)                                              # invalid: not drawn
    img = draw_motion_vectors(frame, mv, valid, step=1, scale=2.0)
    ys, xs = np.nonzero(img.max(-1))
    assert xs.min() >= 10 and xs.max() >= 16 and abs(ys.mean() - 11.5) < 1.5   # from (11.5, 11.5) to the right
    assert img[16:, 16:].max() == 0


def test_hog_glyph_runs_along_the_edge():
    gray = np.zeros((16, 16), np.uint8)
    gray[:, 8:] = 200                                                  # a vertical edge: gradient along x
    img = draw_hog(cell_hog(gray)[0], zoom=4.0).max(-1)
    ys, xs = np.nonzero(img[:, :32])                                    # the left cell column holds the edge
    assert len(ys) > 0 and np.ptp(ys) > 3 * max(np.ptp(xs), 1)          # a vertical line


def test_unpatchify_inverts_patchify():
    video = torch.randn(2, 3, 4, 32, 48)
    tokens = patchify(video, 2, 16)
    assert torch.equal(unpatchify(tokens, (2, 2, 3), 2, 16), video)
