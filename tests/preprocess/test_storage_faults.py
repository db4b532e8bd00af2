"""A storage that refuses writes stops the run: one line naming the path and the free space,
what was finished is committed, no video is recorded as failed, and the same command resumes.

The refusal is real: the extraction runs in a child process whose file size is capped
(RLIMIT_FSIZE, with SIGXFSZ ignored so that a write past the cap fails with EFBIG, as on a
file system with a file size limit), so the big video's chunk file cannot be written."""
from __future__ import annotations

import errno
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from preprocess.errors import storage_fault
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards

REPO = Path(__file__).resolve().parents[2]
CAP = 256_000  # bytes: every file of the small videos fits, the big video's frames do not


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, seed in (("a_small", 1), ("c_small", 2)):
        encode(root / name, render(Scene(height=48, width=64, num_frames=6, bg_velocity=(1.0, 0.0), seed=seed,
                                         objects=(MovingObject(12, (10, 10), (1.0, 1.0)),))), codec="h264")
    # noise compresses badly: its JPEG frames alone are several times the cap
    noise = np.random.default_rng(0).integers(0, 256, (40, 256, 320, 3), dtype=np.uint8)
    encode(root / "b_big", noise, codec="h264")
    return root


def _capped(cap: int):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited across exec: EFBIG, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    return limit


def _extract(corpus: Path, out: Path, fmt: str, workers: int, cap: int | None = None):
    cmd = [sys.executable, str(REPO / "preprocess" / "extract.py"), "--dataset", "folder", "--root", str(corpus),
           "--out", str(out), "--format", fmt, "--workers", str(workers), "--short-side", "256", "--retries", "1"]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=_capped(cap) if cap else None)


@pytest.mark.parametrize("fmt,workers", [("zarr", 0), ("hdf5", 0), ("zarr", 1)])
def test_a_file_size_cap_stops_the_run_and_the_same_command_resumes(corpus, tmp_path, fmt, workers):
    out = tmp_path / "s"
    res = _extract(corpus, out, fmt, workers, cap=CAP)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("python preprocess/extract.py: error: ") and str(out) in lines[0]
    assert "file too large" in lines[0] and "(errno EFBIG)" in lines[0]
    assert " free on " in lines[0] and "run the same command to resume" in lines[0]
    with open_shards(str(out)) as ds:
        assert ds.failures() == []  # the video is fine; the disk was not
        assert "b_big" not in ds.ids() and "a_small" in ds.ids()
        finished = ds.ids()
    assert set(finished) <= {"a_small", "c_small"}
    assert (out / "manifest.json").exists()

    again = _extract(corpus, out, fmt, workers)
    assert again.returncode == 0, again.stderr
    with open_shards(str(out)) as ds:
        assert sorted(ds.ids()) == ["a_small", "b_big", "c_small"] and ds.failures() == []
    verify = subprocess.run([sys.executable, "-m", "shards", "verify", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS])
def test_storage_faults_are_found_behind_other_errors(code):
    direct = OSError(code, "refused", "/x/y")
    assert storage_fault(direct) is direct
    try:
        try:
            raise direct
        except OSError as inner:
            raise RuntimeError("Can't decrement id ref count") from inner
    except RuntimeError as outer:
        assert storage_fault(outer) is direct
    hdf5 = OSError(f"Can't write data (file write failed: errno = {code}, error message = 'x')")
    assert storage_fault(hdf5).errno == code
    assert storage_fault(OSError(errno.EACCES, "denied")) is None and storage_fault(ValueError("x")) is None
