"""bench.clips: two sides interleaved on a tiny shard set, the table, saved runs reprinted."""
import json

import pytest

from bench import clips
from tests.train.conftest import write_tiny_set

REPO = str(clips.WORKER.parents[1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_set(tmp_path_factory.mktemp("shards") / "tiny"))


def test_two_sides_time_every_method_on_the_same_clips(tiny, tmp_path, capsys):
    result = clips.run([("a", REPO, tiny), ("b", REPO, tiny)], clips=2, rounds=1, num_frames=4, size=64)
    assert set(result["sides"]) == {"a", "b"}
    for side in result["sides"].values():
        assert set(side["methods"]) == set(clips.METHODS)
        for m in side["methods"].values():
            assert 0 < m["wall_ms"] < 5000 and 0 < m["cpu_ms"] < 5000 and m["mask_cpu_ms"] >= 0
        assert side["open"]["videos"] >= 1 and 0 < side["open"]["wall_ms"] < 5000   # each video's first open
    table = clips.table(result)
    assert table.count("\n") == 1 + len(clips.METHODS) + 2 and "\n\nOpening a video" in table
    assert "| MGMAE (mgmae+pixel) |" in table and table.splitlines()[0].endswith("| GPU clips/s |")
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(result))
    clips.main(["--from-json", str(saved)])
    assert table in capsys.readouterr().out


def test_a_device_side_times_the_workers_share(tiny):
    # assemble "device": the worker ships JPEG bytes; every method (masks included) still reads
    # (and "uint8": the whole clip but the normalize)
    result = clips.run([("loader", REPO, tiny), ("device", REPO, tiny, "device"), ("uint8", REPO, tiny, "uint8")],
                       clips=2, rounds=1, num_frames=4, size=64)
    assert [result["sides"][s]["assemble"] for s in ("loader", "device", "uint8")] == ["loader", "device", "uint8"]
    for side in ("device", "uint8"):
        for m in result["sides"][side]["methods"].values():
            assert 0 < m["cpu_ms"] < 5000 and m["mask_cpu_ms"] >= 0


def test_table_gives_the_cores_per_gpu_of_each_side():
    side = {"methods": {m: {"wall_ms": 70.0, "cpu_ms": 50.0, "mask_cpu_ms": 2.0} for m in clips.METHODS}}
    result = {"sides": {"old": side, "new": {**side, "assemble": "uint8"}}}
    lines = clips.table(result).splitlines()
    assert lines[0].endswith("| old (loader) cores per GPU | new (uint8) cores per GPU | GPU clips/s |")
    # the H200's VideoMAE rate, 726 clips/s, x (70 ms read + 2 ms mask) = 52.3 cores
    assert lines[2] == "| VideoMAE (tube+pixel) | 70.0 | 70.0 | 50.0 | 50.0 | 2.0 | 2.0 | 52.3 | 52.3 | 726 |"
    assert clips.table(result, gpu_clips_per_s=100.0).splitlines()[2].endswith("| 7.2 | 7.2 | 100 |")
    merged = clips.merge([{**result, "sides": {"old": side}}, {**result, "sides": {"new": side}}])
    assert list(merged["sides"]) == ["old", "new"]


def test_train_crops_are_drawn_as_training_draws_them(tiny):
    from bench.clip_worker import plan
    from shards import open_shards
    from shards.schema import CELL

    with open_shards(tiny) as ds:
        full, train = plan(ds, 16, 3, 4, 2), plan(ds, 16, 3, 4, 2, crops="train")
        h, w = (int(ds[ds.ids()[0]].attrs[k]) for k in ("height", "width"))
        with pytest.raises(ValueError, match="crops must be one of"):
            plan(ds, 1, 0, 4, 2, crops="centre")
    side = min(h, w) // CELL * CELL
    assert all(c["box"][2] == side for c in full)   # the largest box: the full short side
    sides = [c["box"][2] for c in train]
    assert all(c["box"][2] % CELL == 0 and 0 < c["box"][2] <= side for c in train)
    assert min(sides) < side and min(sides) >= int(0.66 * side // CELL) * CELL   # 0.66-1 of the short side
    for c in train:   # inside the frame
        x0, y0, s = c["box"]
        assert 0 <= x0 and x0 + s <= w and 0 <= y0 and y0 + s <= h
    assert len(train) == 16
