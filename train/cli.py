"""What the training-side commands (pretrain, evaluate, visualize, export, study) share on the
command line: early checks of paths and devices (the parser is `shards.cli.ArgumentParser`, the
one every command uses).

Every check here runs before a model is built or a shard is read, so a mistyped flag is
answered in about the time it takes to import torch. The one-line errors themselves are
`shards.cli` (UsageError: exit 2, CliError: exit 1, `run_main`, `--debug`).
"""
from __future__ import annotations

from pathlib import Path

from shards.cli import CliError, UsageError
from train.pretraining.config import DEMO_SHARDS, resolve_shards
from shards import ShardRef, open_shards


def names(registry) -> str:
    """The keys of a registry as the help and the errors list them: "tube, random, mgm"."""
    return ", ".join(registry)


def existing_file(path: str, flag: str, what: str) -> Path:
    """`path` when it is a file; else CliError naming the flag and what was expected."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{flag} {path}: no such file (expected {what})")
    if p.is_dir():
        raise CliError(f"{flag} {path}: is a folder (expected {what})")
    return p


def existing_shards(path: Path, flag: str = "--shards") -> Path:
    """`path` when it exists; the extraction command to make one otherwise."""
    if not path.exists():
        how = "--dataset demo" if path == resolve_shards(DEMO_SHARDS) else f"--dataset ... --out {path}"
        raise CliError(f"{flag} {path}: no such shard set; extract one with `python preprocess/extract.py {how}`")
    return path


def shard_meta(path: Path) -> dict[str, dict]:
    """id -> {label, split, num_frames} of a shard set; a folder that is not one is a CliError."""
    try:
        with open_shards(path) as ds:
            return ds.meta()
    except FileNotFoundError as e:
        raise CliError(str(e)) from e


def check_sources(shards: ShardRef) -> None:
    """A set extracted with --frames none decodes frames from its videos: a missing one is a
    CliError naming it and the flag, before the run starts (checked on the first video)."""
    import os

    with open_shards(shards) as ds:
        ids = ds.ids()
        source = ds[ids[0]].frames_source if ids else None
    if source is not None and not os.path.isfile(source):
        where = f"under --source-root {shards.source_root}" if shards.source_root else "where extraction found it"
        raise CliError(f"{shards}: video {ids[0]!r}: its source {source} is missing ({where}); the set was "
                       f"extracted with --frames none and decodes frames from the videos: give "
                       f"--source-root DIR, the folder the corpus moved to")


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """`path` when it is a folder or does not exist yet; an existing file is a usage error."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path}: is a file, expected a folder (give a folder path)")
    return p


def check_device(name: str) -> None:
    """`--device cuda...` on a machine without a visible GPU fails here, not at the first .to()."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {name}: no CUDA GPU is visible to torch here; use --device cpu "
                       "(or auto: cuda when available, else cpu)")
