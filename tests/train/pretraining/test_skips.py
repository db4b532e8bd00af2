"""A video that turns out damaged mid-run is skipped, recorded with its step, up to a limit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shards import ShardReadError
from train.pretraining.engine import train

from tests.train.pretraining.test_engine import tiny_config


def _damage(shards: Path, tmp_path: Path, video: str = "pan") -> Path:
    """A copy of the tiny set whose `video` frames shard lost its second half (a torn upload)."""
    path = tmp_path / "damaged"
    shutil.copytree(shards, path)
    (shard,) = [p for p in (path / "videos" / video / "frames").rglob("*") if p.is_file() and p.name != "zarr.json"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return path


def test_damaged_video_is_skipped_and_recorded(tiny_shards, tmp_path):
    shards = _damage(tiny_shards, tmp_path)
    lines: list[str] = []
    out = tmp_path / "run"
    summary = train(tiny_config(shards, out, max_steps=4, max_skipped_videos=3), log=lines.append)
    assert summary["step"] == 4  # 4 steps x 2 clips over 4 videos: pan came up and was replaced
    (record,) = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert record["video"] == "pan" and 0 <= record["step"] < 4
    # the reader's error names the video and the array (shards.ShardReadError, schema 2)
    assert record["reason"].startswith("ShardReadError: ") and "checksum" in record["reason"]
    assert "video 'pan' array 'frames'" in record["reason"]
    assert any("skipped damaged video 'pan'" in x and "1 skipped, limit 3" in x for x in lines)
    # a resumed run does not record it twice
    train(tiny_config(shards, out, max_steps=8, max_skipped_videos=3, resume="auto"), log=lines.append)
    assert len((out / "skipped.jsonl").read_text().splitlines()) == 1


def test_over_the_limit_stops_and_zero_is_the_read_error(tiny_shards, tmp_path):
    from train.pretraining.skips import SkipLog

    skips = SkipLog(tmp_path, limit=1, log=lambda s: None)
    entry = json.dumps([{"video": "pan", "reason": "ValueError: checksum"}])
    skips.record([entry, "[]", entry], step=2)  # the same video twice in a batch counts once
    with pytest.raises(RuntimeError, match="2 damaged videos skipped, more than max_skipped_videos 1"):
        skips.record([json.dumps([{"video": "fast", "reason": "OSError: EIO"}])], step=3)
    shards = _damage(tiny_shards, tmp_path)
    # 0: the read error itself stops the run
    with pytest.raises(ShardReadError, match="video 'pan' array 'frames'.*checksum"):
        train(tiny_config(shards, tmp_path / "b", max_steps=4, max_skipped_videos=0), log=lambda s: None)
