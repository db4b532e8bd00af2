"""Where corpora and shard sets live unless told otherwise: $MOTION_MAE_DATA or <repo>/data.

Both halves agree on it through here: the extractor writes `default_shards(name)` when given
no --out, the trainer reads the demo shards from the same place.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_ENV = "MOTION_MAE_DATA"


def data_dir() -> Path:
    """$MOTION_MAE_DATA, or <repo>/data without it."""
    return Path(os.environ.get(DATA_ENV) or REPO / "data").expanduser()


def default_shards(dataset: str) -> Path:
    """The shard set of corpus `dataset` when no path is given: <data dir>/shards/<dataset>."""
    return data_dir() / "shards" / dataset
