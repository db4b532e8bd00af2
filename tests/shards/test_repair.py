"""`python -m shards verify OUT --repair`: the damaged video is deleted and re-extracted from the
set's stored config, every other video's files stay exactly as they were, and verify passes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import build_parser, run
from shards.repair import FLAGS, SWITCHES, extract_commands
from tests.videos import pan_clips

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return pan_clips(tmp_path_factory.mktemp("corpus"), 3, seed=30)


def _files(out: Path, vid: str, fmt: str) -> dict[str, tuple[int, bytes]]:
    paths = [out / "videos" / f"{vid}.h5"] if fmt == "hdf5" else \
        [p for p in (out / "videos" / vid).rglob("*") if p.is_file()]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


def _damage_one_chunk(out: Path, fmt: str) -> None:
    if fmt == "zarr":
        (shard,) = [p for p in (out / "videos" / "clip1" / "mv" / "c").rglob("*") if p.is_file()]
        data = bytearray(shard.read_bytes())
        mid = len(data) // 3
    else:
        shard = out / "videos" / "clip1.h5"
        with h5py.File(shard, "r") as f:
            info = f["mv"].id.get_chunk_info(0)
        data = bytearray(shard.read_bytes())
        mid = info.byte_offset + info.size // 2
    data[mid:mid + 4] = bytes(b ^ 0xFF for b in data[mid:mid + 4])
    shard.write_bytes(bytes(data))


def _verify(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shards", "verify", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_repair_redoes_exactly_the_damaged_video(corpus, tmp_path, fmt):
    out = tmp_path / "s"
    run(ExtractConfig(dataset="folder", root=str(corpus), out=str(out), format=fmt, short_side=48, workers=0),
        log=lambda line: None)
    _damage_one_chunk(out, fmt)
    before = {vid: _files(out, vid, fmt) for vid in ("clip0", "clip2")}
    assert _verify(out).returncode == 1

    repaired = _verify(out, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repair: deleted 1 damaged videos (clip1)" in repaired.stdout
    assert "repair: 1 of 1 damaged videos re-extracted and verified" in repaired.stdout
    again = _verify(out)
    assert again.returncode == 0, again.stdout
    assert {vid: _files(out, vid, fmt) for vid in ("clip0", "clip2")} == before  # untouched, to the byte


def test_the_repair_command_uses_flags_the_extractor_has(tmp_path):
    cfg = ExtractConfig(dataset="folder", root=str(tmp_path), allow_images=True, fps=12.5, split="val")
    (cmd,) = extract_commands(cfg.to_dict(), str(tmp_path / "s"), {"val"})
    parsed = vars(build_parser().parse_args(cmd[2:]))
    for key in (*FLAGS, *SWITCHES):
        assert parsed[key] == getattr(cfg, key), key
    assert parsed["split"] == "val" and parsed["out"] == str(tmp_path / "s")
