"""The view cache (train/eval/view_cache.py): the views read back from it are the shard reader's bit for bit,
a probe gives the same features and result with and without it, and a cache that no longer matches
its shards (changed shard set, another key, a half-written folder) is rebuilt, never read."""
import json
import os

import numpy as np
import pytest
import torch

from shards import open_shards
from tests.train.eval.test_evaluate import TINY, checkpoint, labelled_shards  # noqa: F401 (fixtures)
from train.clips.dataset import ClipSpec
from train.pretraining.engine import Dist
from train.eval.classifier import VideoClassifier, load_encoder
from train.eval.config import EvalConfig
from train.eval.evaluation import linear_probe, run_views
from train.eval.view_cache import CachedViews, Views, cached_views

SPEC = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, tubelet=2)


def ids_of(path, split="train"):
    with open_shards(path) as ds:
        return ds.ids(split)


def build(root, path, ids, logs, **geometry):
    return cached_views(root, path, "train", ids, geometry.pop("spec", SPEC), geometry.pop("clips", 2),
                        log=logs.append, **geometry)


@pytest.mark.parametrize("clips,crops,tsn", [(2, 3, False), (3, 1, True)])
def test_cached_views_are_the_readers_bit_for_bit(tiny_shards, tmp_path, clips, crops, tsn):
    ids = ids_of(tiny_shards)
    logs = []
    cached = build(tmp_path, tiny_shards, ids, logs, clips=clips, crops=crops, tsn=tsn)
    direct = Views(tiny_shards, ids, SPEC, clips, crops, tsn)
    assert isinstance(cached, CachedViews) and len(cached) == len(direct) == 4 * clips * crops
    for item in range(len(direct)):
        a, b = direct[item], cached[item]
        assert a["video"].dtype == b["video"].dtype == torch.float32 and a["video"].shape == (3, 4, 32, 32)
        assert torch.equal(a["video"], b["video"]) and int(a["item"]) == int(b["item"]) == item
    stored = np.load(cached.folder / "views.npy", mmap_mode="r")
    assert stored.dtype == np.uint8 and stored.shape == (4 * clips * crops, 4, 32, 32, 3)
    assert len(logs) == 1 and "decoded" in logs[0]
    again = build(tmp_path, tiny_shards, ids, logs, clips=clips, crops=crops, tsn=tsn)
    assert len(logs) == 1 and again.folder == cached.folder               # reused: nothing decoded


def test_probe_features_and_result_identical_with_cache(labelled_shards, checkpoint, tmp_path):  # noqa: F811
    cfg = EvalConfig(checkpoint=str(checkpoint), shards=str(labelled_shards), **TINY)
    mae, cfg, _ = load_encoder(cfg)
    encode = VideoClassifier(mae, 2).eval().forward_features
    ids = ids_of(labelled_shards, "val")
    direct = run_views(encode, Views(labelled_shards, ids, cfg.spec(), 2, 3), cfg, torch.device("cpu"), Dist())
    cached = run_views(encode, cached_views(tmp_path, labelled_shards, "val", ids, cfg.spec(), 2, 3), cfg,
                       torch.device("cpu"), Dist())
    assert direct.shape == (len(ids), 6, mae.norm.normalized_shape[0]) and torch.equal(direct, cached)
    assert direct.std() > 0

    plain = linear_probe(checkpoint, labelled_shards, **TINY)
    first = linear_probe(checkpoint, labelled_shards, view_cache=str(tmp_path / "cache"), **TINY)   # decodes
    second = linear_probe(checkpoint, labelled_shards, view_cache=str(tmp_path / "cache"), **TINY)  # reads
    assert len(list((tmp_path / "cache").iterdir())) == 2                  # train and val views
    for r in (first, second):
        assert r["predictions"] == plain["predictions"] and r["top1"] == plain["top1"]
        assert r["probes"] == plain["probes"]                              # penalties, cv losses, intervals


def test_stale_cache_is_rebuilt(tiny_shards, tmp_path_factory):
    import shutil

    shards = tmp_path_factory.mktemp("stale") / "shards"
    shutil.copytree(tiny_shards, shards)
    ids = ids_of(shards)
    root = tmp_path_factory.mktemp("cache")
    logs = []
    folder = build(root, shards, ids, logs).folder
    assert len(logs) == 1

    key = json.loads((folder / "key.json").read_text())            # a key that says other videos
    (folder / "key.json").write_text(json.dumps({**key, "ids": ids[:2]}))
    assert build(root, shards, ids, logs).folder == folder and len(logs) == 2
    assert json.loads((folder / "key.json").read_text()) == key

    assert build(root, shards, ids[:3], logs).folder == folder and len(logs) == 3   # fewer videos asked for
    assert len(build(root, shards, ids[:3], logs)) == 3 * 2 and len(logs) == 3

    # an extraction run with nothing to do rewrites the same root metadata and a new manifest: kept
    target = shards / "zarr.json"
    text = target.read_text()
    target.write_text(text)
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (shards / "manifest.json").write_text(json.dumps({"run": {"done": 0}}))  # module-scoped fixture: ours
    assert len(build(root, shards, ids[:3], logs)) == 6 and len(logs) == 3

    stored = np.load(folder / "views.npy")      # the shards change under the cache (a writer's finalize)
    doc = json.loads(text)
    doc["attributes"]["edited"] = True
    target.write_text(json.dumps(doc))
    assert len(build(root, shards, ids[:3], logs)) == 6 and len(logs) == 4
    assert np.array_equal(np.load(folder / "views.npy"), stored)   # same bytes: only the signature moved
    target.write_text(text)

    (folder / "key.json").unlink()                                 # a folder without its key (killed mid-way)
    build(root, shards, ids[:3], logs)
    assert len(logs) == 5 and not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary left


def test_builders_side_by_side_wait_for_one_another(tiny_shards, tmp_path):
    """Two probes at once (the study's probe_workers) finding the cache stale: one rebuilds it under a
    lock, the other waits and reads that copy; neither reads a folder the other removes."""
    from concurrent.futures import ThreadPoolExecutor

    ids = ids_of(tiny_shards)
    logs = []
    first = build(tmp_path, tiny_shards, ids, logs)
    key = json.loads((first.folder / "key.json").read_text())
    (first.folder / "key.json").write_text(json.dumps({**key, "version": -1}))   # stale
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: build(tmp_path, tiny_shards, ids, logs), range(2)))
    assert len(logs) == 2                                                  # the first build + one rebuild
    direct = Views(tiny_shards, ids, SPEC, 2, 1, False)
    for cached in got:
        assert all(torch.equal(cached[i]["video"], direct[i]["video"]) for i in range(len(direct)))
