"""bench.clips: two sides interleaved on a tiny shard set, the table, saved runs reprinted."""
import json

import pytest

from bench import clips
from shards.writer import open_writer
from tests.train.conftest import VIDEOS, synthetic_video

REPO = str(clips.WORKER.parents[1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards") / "tiny"
    writer = open_writer(path, format="zarr")
    for k, (vid, (pan, vel)) in enumerate(VIDEOS.items()):
        writer.write_video(vid, *synthetic_video(pan, vel, seed=k))
    writer.finalize()
    return str(path)


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
    assert "| MGMAE (mgmae+pixel) |" in table and table.splitlines()[0].endswith("| budget ms |")
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


def test_table_marks_what_misses_the_budget():
    side = {"methods": {m: {"wall_ms": 70.0, "cpu_ms": 50.0, "mask_cpu_ms": 2.0} for m in clips.METHODS}}
    result = {"budget_ms": 66.0, "sides": {"old": side, "new": side}}
    row = clips.table(result).splitlines()[2]
    assert row == "| VideoMAE (tube+pixel) | **70.0** | **70.0** | 50.0 | 50.0 | 2.0 | 2.0 | 66 |"
    merged = clips.merge([{**result, "sides": {"old": side}}, {**result, "sides": {"new": side}}])
    assert list(merged["sides"]) == ["old", "new"]
