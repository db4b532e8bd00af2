"""Clips finished on the training device: with `assemble: device` the loader ships JPEG bytes, crop
and flip, and train/clips/assemble.py decodes, crops, resizes, flips and normalizes where the model runs;
with `assemble: uint8` the loader ships the clip's levels and the device normalizes them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.clips.assemble import HOG_KEYS, assemble, jpeg_lengths, normalize_levels, resolve
from train.clips.keys import CROP, FLIP, JPEG, JPEG_LEN, VIDEO_U8
from train.pretraining.config import TrainConfig
from train.clips.dataset import ClipDataset, ClipSpec, MaskCollate, make_loader, normalize
from train.pretraining.engine import train
from train.pretraining.targets.pixel import STD

from tests.train.clips.test_dataset import ALL
from tests.train.pretraining.test_engine import tiny_config

LEVEL = 1 / (255 * min(STD))  # one grey level in normalized units, the widest channel


def batches(shards, assemble_on, **kw):
    spec = ClipSpec(**{**dict(num_frames=4, sampling_rate=2, input_size=32, needs=ALL, min_crop=0.5), **kw},
                    assemble=assemble_on)
    ds = ClipDataset(shards, spec, seed=7)
    repeats = spec.repeated_aug
    loader = make_loader(ds, 4 * repeats, seed=7, num_workers=0,
                         masks=MaskCollate("mgmae", (spec.num_frames // 2, spec.input_size // 8, spec.input_size // 8),
                                           0.75, seed=7, repeats=repeats))
    it = iter(loader)
    return [next(it) for _ in range(3)]


@pytest.mark.parametrize("kw", [{}, {"repeated_aug": 2}, {"input_size": 48, "min_crop": 0.3},
                                {"num_frames": 12, "sampling_rate": 4}])   # last: a video shorter than the clip
def test_device_assembly_is_the_loaders_clip_within_a_grey_level(tiny_shards, kw):
    loader, device = batches(tiny_shards, "loader", **kw), batches(tiny_shards, "device", **kw)
    flips = torch.cat([b[FLIP] for b in device])
    assert flips.any() and not flips.all()                    # both branches of the flip ran
    for a, b in zip(loader, device):
        assert set(b) == set(a) - {"video", "traj_hog"} | {JPEG, JPEG_LEN, CROP, FLIP} | set(HOG_KEYS)
        assert b[JPEG].dtype == torch.uint8 and b[JPEG].shape[:2] == a["video"].shape[:1] + a["video"].shape[2:3]
        made = assemble(b, a["video"].shape[-1], torch.device("cpu"))
        assert set(made) == set(a)
        diff = (made["video"] - a["video"]).abs()
        # torchvision and OpenCV decode with the same libjpeg-turbo; the resize rounds once either way
        assert diff.max() <= LEVEL * 1.01, diff.max() / LEVEL
        assert diff.mean() < 0.15 * LEVEL       # most values equal (32 px: upsampled, more rounding ties)
        for k in a:
            if k == "video":
                continue
            if k in ("hog", "traj_hog"):  # the clip frames' luma: JPEG's Y plane here, cvtColor of RGB in the loader
                assert (made[k] - a[k]).abs().mean() < 0.02 * a[k].abs().mean(), k   # 1 % measured
            else:
                assert torch.equal(made[k], a[k]), k      # the same draws: crops, flips, masks, motion


@pytest.mark.parametrize("kw", [{}, {"repeated_aug": 2}, {"input_size": 48, "min_crop": 0.3}])
def test_uint8_assembly_is_the_loaders_clip_bit_for_bit(tiny_shards, kw):
    loader, levels = batches(tiny_shards, "loader", **kw), batches(tiny_shards, "uint8", **kw)
    for a, b in zip(loader, levels):
        assert set(b) == set(a) - {"video"} | {VIDEO_U8}
        B, _, T, S, _ = a["video"].shape
        assert b[VIDEO_U8].dtype == torch.uint8 and b[VIDEO_U8].shape == (B, T, S, S, 3)   # a quarter of the bytes
        made = assemble(b, S, torch.device("cpu"))
        assert set(made) == set(a)
        for k in a:   # the frames (flipped ones too), and every other key: the same draws
            assert torch.equal(made[k], a[k]), k


def test_normalize_levels_is_the_loaders_table():
    levels = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)   # (B,T,H,W,3)
    made = normalize_levels(torch.from_numpy(levels))
    assert made.shape == (2, 3, 3, 5, 7) and made.dtype == torch.float32
    assert np.array_equal(made.numpy(), np.stack([normalize(clip) for clip in levels]))
    all_levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).expand(1, 1, 256, 3)
    assert np.array_equal(normalize_levels(all_levels)[:, 0, 0].numpy(), normalize(all_levels.numpy())[:, 0, 0])


def test_auto_is_uint8_on_cuda_and_loader_elsewhere():
    assert resolve("auto", torch.device("cuda")) == "uint8" and resolve("auto", torch.device("cpu")) == "loader"
    assert resolve("device", torch.device("cpu")) == "device"
    with pytest.raises(ValueError, match="unknown assemble 'gpu'; known: auto, loader, uint8, device"):
        resolve("gpu", torch.device("cpu"))
    assert TrainConfig().assemble == "auto"
    with pytest.raises(ValueError, match="unknown assemble"):
        TrainConfig(assemble="gpu").validate()


def test_jpeg_lengths_strip_the_padding_only():
    rows = np.zeros((3, 8), np.uint8)
    rows[0, :5] = [0xFF, 0xD8, 0, 0xFF, 0xD9]    # zeros inside a JPEG are kept
    rows[1, :8] = 7
    assert jpeg_lengths(rows).tolist() == [5, 8, 0]
    assert jpeg_lengths(np.zeros((2, 0), np.uint8)).tolist() == [0, 0]


def test_a_batch_without_jpeg_passes_through():
    batch = {"video": torch.zeros(1, 3, 2, 8, 8)}
    assert assemble(batch, 8, torch.device("cpu")) is batch


@pytest.mark.parametrize("mask, target", [("mgm", "pixel"), ("tube", "mme")])
def test_pretraining_with_device_assembly_trains_the_same_run(tiny_shards, tmp_path, mask, target):
    runs = {}
    for where in ("loader", "device", "uint8"):
        summary = train(tiny_config(tiny_shards, tmp_path / where, max_steps=3, mask=mask, target=target,
                                    assemble=where), log=lambda s: None)
        assert summary["step"] == 3
        runs[where] = [json.loads(r)["loss"] for r in (tmp_path / where / "metrics.jsonl").read_text().splitlines()]
    # the same clips, masks and weights; frames equal within a grey level ("device"), or bit for bit
    assert np.allclose(runs["device"], runs["loader"], rtol=0.02), runs
    assert np.allclose(runs["uint8"], runs["loader"], rtol=1e-5), runs


def test_a_set_without_frames_refuses_device_assembly_and_takes_uint8(tmp_path):
    from .test_source_frames import none_set  # noqa: F401  (the fixture's maker, called below)
    from preprocess.config import ExtractConfig
    from preprocess.extract import run
    from preprocess.synthetic import MovingObject, Scene, encode, render

    scene = Scene(height=48, width=64, num_frames=8, seed=0, objects=(MovingObject(16, (10, 10), (2.0, 1.0)),))
    encode(tmp_path / "v" / "clip0", render(scene), codec="h264")
    out = tmp_path / "none"
    run(ExtractConfig(dataset="folder", root=str(tmp_path / "v"), out=str(out), workers=0, frames="none"),
        log=lambda s: None)
    with pytest.raises(ValueError, match=r"keeps no frames .*--frames none.*assemble 'loader'"):
        ClipDataset(out, ClipSpec(num_frames=4, sampling_rate=1, input_size=32, assemble="device"))
    with pytest.raises(ValueError, match="unknown assemble"):
        ClipSpec(assemble="gpu")
    # uint8: the loader decodes the source as with "loader", the device only normalizes
    clips = {where: ClipDataset(out, ClipSpec(num_frames=4, sampling_rate=1, input_size=32, assemble=where),
                                seed=3)[(0, 0)] for where in ("loader", "uint8")}
    made = assemble({k: v[None] for k, v in clips["uint8"].items()}, 32, torch.device("cpu"))
    assert torch.equal(made["video"][0], clips["loader"]["video"])


@pytest.mark.parametrize("box", [(0, 6, 0, 8), (1, 4, 2, 7), (3, 6, 5, 8)])   # frame edges and the inside
def test_device_hog_is_the_readers_hog(box):
    from shards.derived import cell_hog_box as reader_hog
    from train.clips.assemble import cell_hog_box

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 48, 64), dtype=np.uint8)
    frames[0] = np.clip(np.arange(64) * 3 + np.arange(48)[:, None], 0, 255)   # a ramp: one bin (26.6 deg)
    ref = reader_hog(frames, box[:2], box[2:])
    made = cell_hog_box(torch.from_numpy(frames)[:, None], box).numpy()
    assert made.shape == ref.shape
    assert np.allclose(made[0], ref[0], atol=1e-5)            # no pixel near a bin's edge: equal
    # noise: OpenCV's angle is within ~0.3 deg, so a few pixels on a bin's edge change bins
    assert np.abs(made - ref).mean() < 2e-3 * np.abs(ref).mean()
    assert np.allclose(made.sum(-1), ref.sum(-1), rtol=1e-4)  # the magnitudes themselves are the same


def test_device_sampling_is_the_readers_bilinear_sample():
    from shards.tracks import bilinear_sample
    from train.clips.assemble import sample_along

    rng = np.random.default_rng(1)
    hog = rng.random((4, 5, 6, 9)).astype(np.float32)
    at = rng.uniform(-1, 7, (2, 3, 3, 4, 2)).astype(np.float32)      # some outside: clamped
    frame = rng.integers(0, 4, (2, 4))
    made = sample_along(torch.from_numpy(hog), torch.from_numpy(frame), torch.from_numpy(at)).numpy()
    for l in range(4):
        ref = bilinear_sample(hog, frame[:, l], at[..., l, :].astype(np.float64), np.float32)
        assert np.allclose(made[..., l, :], ref, atol=1e-6)


def test_normalizing_in_the_trainer_leaves_forked_workers_working(tiny_shards):
    """The trainer normalizes "uint8" batches itself; a loader forked after that must still read
    (an OpenCV call there once left every later worker blocked on the thread pool's lock)."""
    import subprocess
    import sys

    code = f"""
import torch
from train.clips.assemble import assemble
from train.clips.dataset import ClipDataset, ClipSpec, MaskCollate, make_loader
spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, assemble="uint8")
for round in range(2):   # the second loader forks after the first batch was normalized here
    loader = make_loader(ClipDataset({str(tiny_shards)!r}, spec, seed=round), 2, seed=round, num_workers=1,
                         masks=MaskCollate("tube", (2, 4, 4), 0.75, seed=round))
    batch = assemble(next(iter(loader)), 32, torch.device("cpu"))
    assert batch["video"].shape == (2, 3, 4, 32, 32)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=str(Path(__file__).resolve().parents[3]))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_an_opencv_call_before_the_fork_leaves_workers_working(tiny_shards):
    """OpenCV's thread pool, once started in the training process, was inherited by a forked
    loader worker in a state where `seed_worker`'s cv2.setNumThreads(1) waited forever. Now any
    fork of a process that imported train.clips.dataset first quiets the pool (train.clips.dataset)."""
    import subprocess
    import sys

    code = f"""
import cv2, numpy as np
from train.clips.dataset import ClipDataset, ClipSpec, make_loader
cv2.setNumThreads(2)
cv2.LUT(np.zeros((1000, 1000), np.uint8), np.arange(256, dtype=np.float32))   # starts the pool here
spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32)
batch = next(iter(make_loader(ClipDataset({str(tiny_shards)!r}, spec), 2, num_workers=1)))
assert batch["video"].shape == (2, 3, 4, 32, 32)
assert cv2.getNumThreads() == 2
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[3]))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
