"""The corpus-scale benchmark measures what it says: the clip it decodes is the clip it reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import scale as bench_scale
from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict:
    """A 70-frame clip with B-frames and a short GOP (so seeking matters), and a 20-frame one."""
    root = tmp_path_factory.mktemp("bench_corpus")
    long = Scene(height=64, width=96, num_frames=70, bg_velocity=(2.0, 1.0), seed=3,
                 objects=(MovingObject(16, (10, 10), (1.0, 0.5)),))
    encode(root / "long", render(long), codec="h264", bframes=2, gop=12)
    encode(root / "short", render(Scene(height=64, width=96, num_frames=20, bg_velocity=(1.0, 0.0), seed=4)),
           codec="h264")
    out = tmp_path_factory.mktemp("bench_out")
    paths = {}
    for fmt in ("zarr", "hdf5"):
        paths[fmt] = str(out / fmt)
        run(ExtractConfig(dataset="folder", root=str(root), out=paths[fmt], format=fmt, workers=0), log=lambda s: None)
    return {"root": root, "paths": paths}


def test_pyav_clip_is_the_stored_clip(extracted):
    plan = bench_scale.clip_plan(extracted["paths"]["zarr"], n=12, seed=1)
    assert {c["stride"] for c in plan} == {1, 4}  # stride 4 where 61 frames fit, else 1
    ds = open_shards(extracted["paths"]["zarr"])
    for clip in plan:
        decoded = bench_scale.decode_clip_pyav(clip).astype(np.float32)
        stored = ds[clip["id"]]["frames"][clip["start"]:clip["stop"]:clip["stride"]].astype(np.float32)
        assert decoded.shape == stored.shape == (16, 64, 96, 3)
        err = np.abs(decoded - stored).mean()
        assert err < 3.0, (clip, err)  # JPEG q90 of the same frames
        if clip["start"] > 0:  # off by one frame would be far worse: the test can tell
            before = ds[clip["id"]]["frames"][clip["start"] - 1:clip["stop"] - 1:clip["stride"]]
            assert np.abs(decoded - before.astype(np.float32)).mean() > 2 * err


def test_shard_clip_reads_every_array(extracted):
    ds = open_shards(extracted["paths"]["hdf5"])
    clip = {"id": "long", "start": 60, "stop": 70, "stride": 1}
    # 10 frames of T arrays, 9 of T-1 arrays: all nine arrays, reader dtypes
    v = ds["long"]
    want = sum(v[n][60:70].nbytes for n in v.keys())
    assert bench_scale.read_shard_clip(ds, clip) == want
    assert bench_scale.read_shard_clip(ds, clip, ("frames",)) == 10 * 64 * 96 * 3


def test_shard_bytes_per_array_and_source_byte(extracted):
    sources = {p.stem: str(p) for p in Path(extracted["root"]).glob("*.mp4")}
    sizes = bench_scale.shard_bytes(extracted["paths"], sources)
    for fmt in ("zarr", "hdf5"):
        s = sizes[fmt]
        assert s["videos"] == 2 and s["source_bytes"] == sum(Path(p).stat().st_size for p in sources.values())
        arrays = {k: v for k, v in s["per_video"].items() if k != "total"}
        assert s["per_video"]["total"] >= sum(arrays.values()) > 0  # total adds metadata / container
        assert s["per_source_byte"]["frames"] == pytest.approx(arrays["frames"] * 2 / s["source_bytes"], abs=1e-3)


def test_k400_estimate_arithmetic():
    k = bench_scale.k400_estimate(20.0, 50_000)
    assert k["frames"] == 72_000_000 and k["core_hours"] == 1000 and k["shard_tb"] == 3.6
    assert k["mme_core_hours_assumed"] == 4 * 32 * 24 and k["fraction_of_mme"] == round(1000 / 3072, 3)


@pytest.mark.slow
def test_whole_benchmark_on_a_tiny_corpus(extracted):
    result = bench_scale.run("folder", root=str(extracted["root"]), clips=4)
    assert [e["workers"] for e in result["extraction"]] == [1, 2, 2]
    assert all(e["videos"] == 2 and e["frames"] == 90 for e in result["extraction"])
    assert result["clip_read"]["shards_zarr_all_arrays"]["clips"] == 4
    assert "K400" in bench_scale.to_markdown(result)
