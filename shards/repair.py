"""Repair a shard set: delete the videos verify finds damaged, so that the extraction redoes them.

    python -m shards verify OUT --repair

Only the damaged videos' own group (zarr) or file (hdf5) is deleted, under the set's writer
lock; every other file of the set is left as it is. The extraction that made the set is then
run again from the config stored in the set (dataset, root, settings): it skips every video
still committed and extracts the deleted ones anew. A video whose source file is gone is not
deleted (re-extracting it would lose it), nor one whose only problem is a missing source of a
`--frames none` set (nothing stored is damaged).
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import fsspec

from .errors import CliError
from .lock import writer_lock

EXTRACT = Path(__file__).resolve().parents[1] / "preprocess" / "extract.py"
# the extractor's flag for each stored config key that selects videos or changes the arrays
FLAGS = {"dataset": "--dataset", "root": "--root", "list_file": "--list", "limit": "--limit",
         "format": "--format", "frames": "--frames", "short_side": "--short-side", "fps": "--fps",
         "max_ref_distance": "--max-ref-distance", "flow_method": "--flow", "dis_preset": "--dis-preset",
         "dis_patch_stride": "--dis-patch-stride", "features": "--features", "compensation": "--compensation",
         "flow_stride": "--flow-stride", "traj_len": "--traj-len", "workers": "--workers"}
SWITCHES = {"allow_images": "--allow-images"}


def repairable(problems: list[tuple[str, str]]) -> bool:
    """Whether re-extracting the video mends it: something stored is damaged (a missing source
    of a --frames none video is not; re-extracting would need that very source)."""
    return any(not (array == "frames" and cause.startswith("source video missing")) for array, cause in problems)


def extract_commands(config: dict, out: str, splits: set[str | None]) -> list[list[str]]:
    """The extraction runs that redo deleted videos of these splits with the set's config: one
    per split when the set was extracted split by split, else one for the whole corpus."""
    args = [sys.executable, str(EXTRACT)]
    for key, flag in FLAGS.items():
        if config.get(key) is not None:
            args += [flag, str(config[key])]
    args += [flag for key, flag in SWITCHES.items() if config.get(key)]
    args += ["--out", out]
    if config.get("split") is None:
        return [args]
    return [args + ["--split", split] for split in sorted(s for s in splits if s is not None)] or [args]


def delete_videos(out: str, fmt: str, ids: list[str]) -> None:
    """Delete these videos' own group (zarr) or file (hdf5) and nothing else, under the writer
    lock (refused while an extraction writes the set)."""
    fs, root = fsspec.core.url_to_fs(os.fspath(out))
    root = root.rstrip("/")
    with writer_lock(out):
        for vid in ids:
            path = f"{root}/videos/{vid}" if fmt == "zarr" else f"{root}/videos/{vid}.h5"
            if fs.exists(path):
                fs.rm(path, recursive=fmt == "zarr")


def check_repairable_set(ds) -> dict:
    """The set's stored extraction config; CliError when the set cannot be repaired in place."""
    if ds.format not in ("zarr", "hdf5"):
        raise CliError(f"{ds.path}: a {ds.format} set is repaired at its source: repair the set it was "
                       f"packed from (python -m shards verify SRC --repair), then pack it again")
    config = ds.attrs.get("config")
    if not isinstance(config, dict) or not config.get("dataset"):
        raise CliError(f"{ds.path}: its root stores no extraction config, so the videos cannot be "
                       f"re-extracted from it; extract the set anew with preprocess/extract.py --overwrite")
    return config


def command_line(cmd: list[str]) -> str:
    return shlex.join(["python" if c == sys.executable else c for c in cmd])
