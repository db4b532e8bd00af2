"""The deterministic test views of a labelled split (`train.clips.sampling.multi_views`): read and decoded
from the shards (`Views`), or from a uint8 copy decoded once (`CachedViews`, `cached_views`).

A linear probe reads every train and val view of its shard set, and every checkpoint of a study
reads the same ones: same clips, same crops, same resize for a given clip geometry. Decoding them
costs ~23 ms a clip on the busy 2-core machine (4096 videos x 2 clips: ~3 minutes a probe), the
encoder's pass over them seconds. So the views are decoded once per (shard set, split, ids,
num_frames, sampling_rate, input_size, clips, crops, tsn) into

    <root>/<split>_<T>f<rate>s_<S>px_<clips>x<crops>[_tsn]_<hash of the shard path>/
        views.npy   (videos * views, T, S, S, 3) uint8, item i = view i % views of video i // views
        key.json    what it was decoded from (`view_key`), written last

and read back through a memmap, normalized by `train.clips.dataset.normalize`, the same table lookup the
shard reader applies: the clips are bit for bit the ones `Views` gives (tests/train/eval/test_view_cache.py).

The cache is filled with the levels the reader stops at when a clip is assembled as "uint8"
(`Views(..., levels=True)`: cropped and resized by `train.clips.dataset.read_clip_at`, not normalized),
so the crop and resize stay in one place.

Staleness: the key holds the shard set's signature (its top-level files' and folders' names,
sizes and modification times, hashed: `shard_signature` says why that suffices) and the split's ids; a cache whose key differs is rebuilt, never
read. A cache is built in a temporary folder next to it and renamed into place when complete,
so a killed build never leaves one that counts as done.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from train.clips.keys import ITEM, LEVELS, VIDEO, VIDEO_U8
from train.clips.dataset import ClipSpec, normalize, read_clip_at
from train.clips.sampling import multi_views
from shards import ShardRef, open_shards

MANIFEST = "manifest.json"  # preprocess.manifest.MANIFEST: the extraction's record, not read by training
ROOT_METADATA = "zarr.json"  # a zarr set's root group: its index of videos, rewritten by every finalize
CACHE_VERSION = 2  # 2: crops resized bilinear at every scale (train.clips.dataset.RESIZE); 1 used INTER_AREA down


class Views(Dataset):
    """Item i = view i % per_video of video i // per_video (`train.clips.sampling.multi_views`, clip-major:
    clips x crops): {"video" (3,T,S,S) float32, "item"}, read and decoded from the shards; with
    `levels`, {"levels" (T,S,S,3) uint8, "item"}: the same clip before its normalization."""

    def __init__(self, shards, ids: list[str], spec: ClipSpec, clips: int, crops: int = 1, tsn: bool = False,
                 levels: bool = False):
        self.shards = ShardRef.of(shards)  # a path, or a ShardRef (a --frames none set's videos moved)
        self.path, self.ids, self.clips, self.crops, self.tsn = self.shards.path, ids, clips, crops, tsn
        self.spec, self.levels = (replace(spec, assemble="uint8") if levels else spec), levels
        self.per_video = clips * crops
        self._ds = None  # opened per worker process

    def __len__(self) -> int:
        return len(self.ids) * self.per_video

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self._ds is None:
            self._ds = open_shards(self.shards)
        v, view = divmod(item, self.per_video)
        video = self._ds[self.ids[v]]
        a = video.attrs
        views = multi_views(int(a["num_frames"]), int(a["height"]), int(a["width"]), self.spec, self.clips,
                            self.crops, self.tsn)
        idx, rate, box = views[view]
        clip = read_clip_at(video, self.spec, idx, rate, box)
        key = LEVELS if self.levels else VIDEO
        return {key: torch.from_numpy(np.ascontiguousarray(clip[VIDEO_U8 if self.levels else VIDEO])),
                ITEM: torch.tensor(item)}

    def __getstate__(self):
        return {**self.__dict__, "_ds": None}


class CachedViews(Dataset):
    """The same items as `Views` from a cache folder (`cached_views`): a memmap, normalized per item."""

    def __init__(self, folder: Path, ids: list[str], per_video: int):
        self.folder, self.ids, self.per_video = Path(folder), ids, per_video
        self._levels = None  # opened lazily (and per worker process)

    def __len__(self) -> int:
        return len(self.ids) * self.per_video

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        if self._levels is None:
            self._levels = np.load(self.folder / "views.npy", mmap_mode="r")
        return {VIDEO: torch.from_numpy(normalize(np.asarray(self._levels[item]))), ITEM: torch.tensor(item)}

    def __getstate__(self):
        return {**self.__dict__, "_levels": None}


def shard_signature(path: Path) -> str:
    """A hash of the shard set's top-level entries: the root metadata (zarr.json) by content, the
    other entries by name, size and modification time; the manifest (the record of the last
    extraction run, which training never reads) left out.

    Not a walk of every file: the 512-video natural set has 6660 files in 12291 folders and its
    walk took 0.7 s on the busy machine, so ~5-6 s for the study's 4096 videos, twice a probe. Every write through `shards.writer` ends in
    `finalize`, which rewrites the root metadata (zarr.json, with the index of every video; an
    HDF5 or packed set's shard files are top-level files themselves), so a re-extracted or
    extended set changes it; a chunk edited by hand outside the writer would not. By content, not
    time: an extraction run that finds every video done (the study runs one at every start)
    rewrites the same zarr.json and a new manifest, and the cache stays valid (by time, every
    restart of the study decoded its views again, ~70 s per split)."""
    path = Path(path)
    entries = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name) if path.is_dir() else [path]:
        name = Path(entry).name
        if path.is_dir() and name == MANIFEST:
            continue
        if path.is_dir() and name == ROOT_METADATA:
            entries.append(f"{name}\t{hashlib.sha256(Path(entry).read_bytes()).hexdigest()}")
            continue
        st = os.stat(entry)
        entries.append(f"{name}\t{st.st_size if Path(entry).is_file() else -1}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def view_key(path: Path, split: str, ids: list[str], spec: ClipSpec, clips: int, crops: int, tsn: bool) -> dict:
    """What a cache holds: the views of `ids` of `split` of the shard set at `path` in this geometry."""
    return {"version": CACHE_VERSION, "shards": str(Path(path).resolve()), "signature": shard_signature(path),
            "split": split, "ids": list(ids), "num_frames": spec.num_frames, "sampling_rate": spec.sampling_rate,
            "input_size": spec.input_size, "clips": clips, "crops": crops, "tsn": bool(tsn)}


def cache_folder(root: Path, key: dict) -> Path:
    name = (f"{key['split']}_{key['num_frames']}f{key['sampling_rate']}s_{key['input_size']}px_"
            f"{key['clips']}x{key['crops']}{'_tsn' if key['tsn'] else ''}_"
            f"{hashlib.sha256(key['shards'].encode()).hexdigest()[:8]}")
    return Path(root) / name


def read_key(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "key.json").read_text())
    except (OSError, ValueError):
        return None


def cached_views(root: Path, shards, split: str, ids: list[str], spec: ClipSpec, clips: int, crops: int = 1,
                 tsn: bool = False, batch_size: int = 32, num_workers: int = 0, log=lambda s: None,
                 build: bool = True) -> CachedViews:
    """The views of `Views(shards, ids, spec, clips, crops, tsn)` from the cache under `root`: reused
    when its key matches, else (`build`) decoded once into it; `build` False waits for another
    process (a torchrun rank) to finish it."""
    shards = ShardRef.of(shards)
    key = view_key(Path(shards.path), split, ids, spec, clips, crops, tsn)  # the views do not depend on where the videos are
    folder = cache_folder(root, key)
    per_video = clips * crops
    if read_key(folder) == key:
        return CachedViews(folder, list(ids), per_video)
    if not build:
        raise FileNotFoundError(f"{folder}: no view cache matching the shards (the building rank failed?)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # one builder at a time per cache root (a lock on the folder itself, no lock file): processes
    # probing side by side (the study) that find a view set stale or missing would otherwise each
    # replace it while the other reads it
    lock = os.open(folder.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_key(folder) == key:  # built by another process while this one waited
            return CachedViews(folder, list(ids), per_video)
        return _build(folder, key, shards, ids, spec, clips, crops, tsn, batch_size, num_workers, log)
    finally:
        os.close(lock)  # releases the lock


def _build(folder: Path, key: dict, shards: ShardRef, ids: list[str], spec: ClipSpec, clips: int, crops: int,
           tsn: bool, batch_size: int, num_workers: int, log) -> CachedViews:
    """Decode the views into `folder` (a temporary folder renamed into place; a stale one removed)."""
    per_video = clips * crops
    start = time.perf_counter()
    views = Views(shards, list(ids), spec, clips, crops, tsn, levels=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shape = (len(views), spec.num_frames, spec.input_size, spec.input_size, 3)
        levels = np.lib.format.open_memmap(tmp / "views.npy", mode="w+", dtype=np.uint8, shape=shape)
        loader = DataLoader(views, batch_size=batch_size, num_workers=num_workers)
        for batch in loader:  # sequential: batch items are consecutive
            for item, clip in zip(batch[ITEM].tolist(), batch[LEVELS].numpy()):
                levels[item] = clip
        levels.flush()
        del levels
        (tmp / "key.json").write_text(json.dumps(key))
        if folder.exists():   # stale: the shard set changed since, or half removed
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:       # another process renamed its copy in first: use it if it is this one
            if read_key(folder) != key:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"view cache {folder.name}: {len(views)} views decoded in {time.perf_counter() - start:.1f} s "
        f"({(folder / 'views.npy').stat().st_size / 2 ** 20:.0f} MiB)")
    return CachedViews(folder, list(ids), per_video)
