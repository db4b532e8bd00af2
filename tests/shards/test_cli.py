"""`python -m shards verify / inspect`: exit codes and problem lines."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from shards import open_writer
from shards.__main__ import main
from shards.cli import CliError

from .helpers import make_arrays, video_attrs

ROOT = Path(__file__).resolve().parents[2]


def good_set(path, fmt):
    w = open_writer(path, format=fmt, config={"demo": True})
    for i in range(2):
        attrs = video_attrs(num_frames=6 + i)
        w.write_video(f"v{i}", make_arrays(attrs, seed=i), attrs)
    w.write_failure("bad", {"source": "bad.mp4", "reason": "no video stream", "stage": "open"})
    w.finalize()


def put_nan(path, fmt):
    if fmt == "zarr":
        zarr.open_array(str(path / "videos" / "v1" / "homography"), mode="r+")[0, 0, 0] = np.nan
    else:
        with h5py.File(path / "videos" / "v1.h5", "r+") as f:
            f["homography"][0, 0, 0] = np.nan


def drop_array(path, fmt):
    if fmt == "zarr":
        shutil.rmtree(path / "videos" / "v1" / "flow")  # the consolidated metadata still names it
    else:
        with h5py.File(path / "videos" / "v1.h5", "r+") as f:
            del f["flow"]


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_verify_exit_codes(tmp_path, fmt, capsys):
    path = tmp_path / "s"
    good_set(path, fmt)
    assert main(["verify", str(path)]) == 0
    assert "0 problems" in capsys.readouterr().out
    put_nan(path, fmt)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "v1 / homography / 1 non-finite values" in out and "1 problems in 1 videos" in out


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_verify_missing_array(tmp_path, fmt, capsys):
    path = tmp_path / "s"
    good_set(path, fmt)
    drop_array(path, fmt)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "v1 / flow / missing" in out
    assert "v1 / traj / cannot be derived: ['flow'] missing" in out  # derived from it


def test_verify_reports_uncommitted_video(tmp_path, capsys):
    path = tmp_path / "s"
    good_set(path, "zarr")
    zarr.open_group(str(path / "videos" / "v0"), mode="r+", use_consolidated=False
                    ).update_attributes({"complete": False})
    assert main(["verify", str(path)]) == 1
    assert "v0 / - / no commit marker" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_inspect(tmp_path, fmt, capsys):
    path = tmp_path / "s"
    good_set(path, fmt)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "videos: 2 committed" in out and "frames: 13" in out and "failures: 1" in out
    assert all(name in out for name in ("frames", "traj", "hog"))
    assert main(["inspect", str(path), "v0"]) == 0
    assert "traj_valid" in capsys.readouterr().out
    with pytest.raises(CliError, match="nope"):
        main(["inspect", str(path), "nope"])


def test_cli_subprocess(tmp_path):
    """The module entry point itself, as a user runs it."""
    path = tmp_path / "s"
    good_set(path, "hdf5")
    run = subprocess.run([sys.executable, "-m", "shards", "verify", str(path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # spawned workers must import the checker (functions of __main__ do not unpickle in them)
    par = subprocess.run([sys.executable, "-m", "shards", "verify", str(path), "--workers", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert par.returncode == 0 and par.stdout == run.stdout, par.stdout + par.stderr
    assert "0 problems in 0 videos" in par.stdout
    run = subprocess.run([sys.executable, "-m", "shards", "verify", str(tmp_path / "none")],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1 and "not a shard set" in run.stderr
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
