"""One video through every stage and back from the shards: odd sizes, grey, a single frame."""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.config import ExtractConfig
from preprocess.synthetic import MovingObject, Scene, encode, render
from preprocess.video import extract_video
from shards import open_shards
from shards import schema
from shards.writer import open_writer

CASES = {
    "odd_size": Scene(height=100, width=138, num_frames=8, bg_velocity=(1.0, 0.5), seed=5),
    "gray": Scene(height=64, width=96, num_frames=6, gray=True, seed=6,
                  objects=(MovingObject(16, (20, 20), (2.0, 0.0)),)),
    "one_frame": Scene(height=64, width=80, num_frames=1, seed=7),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_extract_and_read_back(name, fmt, tmp_path):
    scene = CASES[name]
    path = encode(tmp_path / name, render(scene), codec="h264")
    cfg = ExtractConfig(short_side=256)
    arrays, attrs = extract_video(str(path), cfg)
    t, h, w = scene.num_frames, scene.height, scene.width
    assert arrays["frames"].shape == (t, h, w, 3)
    assert not {"traj", "traj_valid", "hog"} & set(arrays)  # derived when read (schema 3)
    assert arrays["flow"].shape == (t - 1, h // cfg.flow_stride, w // cfg.flow_stride, 2)
    assert not arrays["mv_valid"][0].any()
    writer = open_writer(str(tmp_path / "out"), format=fmt, config=cfg.to_dict())
    writer.write_video(name, arrays, {**attrs, "source": str(path)})
    writer.finalize()
    v = open_shards(str(tmp_path / "out"))[name]
    assert v.attrs["num_frames"] == t and (v.attrs["height"], v.attrs["width"]) == (h, w)
    np.testing.assert_array_equal(v["frames"][:], schema.decode("frames", schema.encode("frames", arrays["frames"])))
    # traj and hog are derived when read (tests/shards/test_derived.py holds their tolerances)
    assert v["traj"][:].shape == (t, h // 8, w // 8, cfg.traj_len, 2) and v["traj"][:].dtype == np.float32
    assert not v["traj_valid"][-1].any() and v["hog"][:].shape == (t, h // 8, w // 8, 9)
    if name == "gray":
        frames = v["frames"][:]
        assert (frames[..., 0] == frames[..., 2]).all()


def test_flow_settings_reach_the_flow_stage():
    from preprocess.video import flow_config

    fc = flow_config(ExtractConfig(dis_preset="fast", dis_patch_stride=8, features="sift", compensation="reflow"))
    assert (fc.dis_preset, fc.patch_stride, fc.features, fc.compensation) == ("fast", 8, "sift", "reflow")
