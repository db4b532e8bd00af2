"""End to end: a folder of real videos (one of them broken) -> shards, through the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import main, run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    pan = Scene(height=96, width=128, num_frames=10, bg_velocity=(2.0, 0.0), seed=3)
    obj = Scene(height=96, width=128, num_frames=10, seed=4,
                objects=(MovingObject(24, (30, 30), (2.0, 1.0)),))
    encode(root / "pan", render(pan), codec="h264")
    encode(root / "sub" / "object", render(obj), codec="h264", bframes=2)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root


def _cfg(corpus: Path, out: Path, **kw) -> ExtractConfig:
    return ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=96, **kw)


def test_folder_in_process_then_resume(corpus, tmp_path):
    out = tmp_path / "shards"
    summary = run(_cfg(corpus, out, workers=0), log=lambda s: None)
    assert (summary["done"], summary["failed"]) == (2, 1)
    ds = open_shards(str(out))
    assert sorted(ds.ids()) == ["object", "pan"]
    v = ds["pan"]
    assert v["frames"].shape == (10, 96, 128, 3)
    assert v["traj"].shape == (10, 12, 16, 6, 2)
    # the pan is 2 px/frame to the right: codec vectors and the homography both say so
    mv = np.asarray(v["mv"])[np.asarray(v["mv_valid"])]
    assert abs(np.median(mv[:, 0]) - 2.0) < 0.5
    assert abs(float(np.median(np.asarray(v["homography"])[:, 0, 2])) - 2.0) < 0.5
    (failure,) = ds.failures()
    assert failure["source"].endswith("broken.mp4") and failure["stage"] in ("open", "decode")
    # a second run skips what is done and only retries the failure
    again = run(_cfg(corpus, out, workers=0), log=lambda s: None)
    assert (again["skipped"], again["done"], again["failed"]) == (2, 0, 1)


def test_dask_two_workers_same_arrays(corpus, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run(_cfg(corpus, serial, workers=0), log=lambda s: None)
    summary = run(_cfg(corpus, parallel, workers=2), log=lambda s: None)
    assert (summary["done"], summary["failed"]) == (2, 1)
    a, b = open_shards(str(serial)), open_shards(str(parallel))
    for vid in a.ids():
        for name in ("mv", "flow", "traj", "hog"):
            np.testing.assert_array_equal(np.asarray(a[vid][name]), np.asarray(b[vid][name]))


def test_cli_help_and_exit_status(corpus, tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "preprocess" / "extract.py"), "--help"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and "--dataset" in res.stdout
    out = tmp_path / "s"
    assert main(["--dataset", "folder", "--root", str(corpus), "--out", str(out),
                 "--workers", "0", "--short-side", "96"]) == 1  # one video failed


def test_missing_root_is_one_clear_message(tmp_path, capsys):
    code = main(["--dataset", "folder", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "--workers", "0"])
    assert code == 2
    assert "nope" in capsys.readouterr().err
