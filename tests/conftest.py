"""Shared fixtures: real encoded videos with motion known by construction."""
from __future__ import annotations

import os

import pytest

# One thread per process keeps tests deterministic and leaves the second core to xdist/Dask.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")
