"""Global batch -> per-process micro-batches and gradient accumulation; repeated augmentation."""
import numpy as np
import pytest
import torch

import train.clips.dataset as data
from train.pretraining.config import TrainConfig
from train.clips.dataset import ClipDataset, ClipSpec, make_loader
from train.pretraining.engine import CHECKPOINT, load_checkpoint, train

from tests.train.pretraining.test_engine import tiny_config


@pytest.mark.parametrize("batch, world, cap, repeats, expected", [
    (2048, 64, 0, 1, (32, 1)),      # VideoMAE: 64 GPUs x 32
    (2048, 8, 0, 1, (256, 1)),      # the same recipe on 8 GPUs, no cap: 256 per forward
    (2048, 8, 64, 1, (64, 4)),      # ... capped at 64 per device: 4 micro-batches
    (2048, 1, 48, 1, (32, 64)),     # one GPU, cap 48: the largest divisor of 2048 under 48
    (1536, 16, 0, 4, (96, 1)),      # MGMAE: 16 GPUs x 24 videos x 4 crops
    (1536, 8, 100, 4, (96, 2)),     # 8 GPUs: 192 clips each, 2 x 96 (24 videos x 4)
    (768, 1, 32, 1, (32, 24)),      # MME's 768 on one device
])
def test_micro_batches(batch, world, cap, repeats, expected):
    cfg = TrainConfig(batch_size=batch, batch_per_device=cap, repeated_aug=repeats)
    micro, accum = cfg.micro_batches(world)
    assert (micro, accum) == expected
    assert micro * accum * world == batch and micro % repeats == 0


def test_micro_batches_refuse_what_does_not_split():
    with pytest.raises(ValueError, match="does not split"):
        TrainConfig(batch_size=10).micro_batches(3)
    with pytest.raises(ValueError, match="repeated_aug"):
        TrainConfig(batch_size=8, batch_per_device=2, repeated_aug=4).micro_batches(1)
    with pytest.raises(ValueError, match="multiple of repeated_aug"):
        TrainConfig(batch_size=6, repeated_aug=4).validate()


def test_lr_scales_with_videos_per_step():
    """base_lr * videos / 256, min_lr alike (VideoMAE / MGMAE / MME scale all of them)."""
    assert TrainConfig(batch_size=2048, base_lr=1.5e-4).lr() == pytest.approx(1.2e-3)
    mgmae = TrainConfig(batch_size=1536, repeated_aug=4, base_lr=1e-3, min_lr=1e-5)
    assert mgmae.lr() == pytest.approx(1.5e-3) and mgmae.final_lr() == pytest.approx(1.5e-5)


def test_accumulation_equals_one_step_on_the_larger_batch(tiny_shards, tmp_path):
    """k micro-batches of b clips and one batch of k*b clips: the same clips, the same masks
    (one generator stream), the same mean loss -> the same weights after each step."""
    kw = dict(mask="tube", target="pixel", batch_size=4, max_steps=2, warmup_steps=1, seed=5, base_lr=0.05)
    one = train(tiny_config(tiny_shards, tmp_path / "one", **kw), log=lambda s: None)
    acc = train(tiny_config(tiny_shards, tmp_path / "acc", batch_per_device=1, **kw), log=lambda s: None)
    start = train(tiny_config(tiny_shards, tmp_path / "start", **{**kw, "max_steps": 2, "stop_at": 1}),
                  log=lambda s: None)
    a = load_checkpoint(tmp_path / "one" / CHECKPOINT)["model"]
    b = load_checkpoint(tmp_path / "acc" / CHECKPOINT)["model"]
    s1 = load_checkpoint(tmp_path / "start" / CHECKPOINT)["model"]
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    update = max((a[k] - s1[k]).abs().max().item() for k in a)   # what the second step moved
    # lr 0.05 * 4 / 256 = 7.8e-4: a step moves weights ~1e-3; float rounding of the summed
    # gradients, amplified by Adam where gradients are tiny, stays ~1e-6
    assert diff < 1e-5 < update / 50, (diff, update)
    assert one["first_loss"] == pytest.approx(acc["first_loss"], rel=1e-5)
    assert one["step"] == acc["step"] == 2 and start["step"] == 1


def test_repeated_augmentation_crops_one_window(tiny_shards, monkeypatch):
    """MGMAE's num_sample: a video read yields r clips of the same frames, each its own crop;
    the loader flattens them into one batch, a video's clips side by side."""
    calls = []
    real = data.read_clips_at

    def spy(video, spec, idx, rate, boxes):
        calls.extend((tuple(idx), box) for box in boxes)
        return real(video, spec, idx, rate, boxes)

    monkeypatch.setattr(data, "read_clips_at", spy)
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, min_crop=0.5, repeated_aug=4)
    ds = ClipDataset(tiny_shards, spec, seed=0)
    clips = ds[(0, 1)]
    assert len(clips) == 4 and len({c[0] for c in calls}) == 1 and len({c[1] for c in calls}) > 1
    batch = next(iter(make_loader(ds, 8, num_workers=0)))
    assert batch["video"].shape == (8, 3, 4, 32, 32)
    assert len({c[0] for c in calls[4:8]}) == 1     # clips 0-3 of the batch: one video's window
    with pytest.raises(ValueError, match="whole videos"):
        make_loader(ds, 6, num_workers=0)


def test_repeated_augmentation_trains_with_epochs_in_videos(tiny_shards, tmp_path):
    lines = []
    summary = train(tiny_config(tiny_shards, tmp_path, batch_size=4, repeated_aug=2, max_steps=0, epochs=1,
                                warmup_steps=0), log=lines.append)
    # 4 videos, 2 videos (4 clips) per step -> 2 steps per epoch
    assert summary["step"] == 2 and any("2 steps/epoch" in s for s in lines)
    assert np.isfinite(summary["last_loss"])


@pytest.mark.slow
def test_torchrun_two_ranks_accumulate(tiny_shards, tmp_path):
    """DDP on CPU (gloo) with accumulation: the global batch of 4 runs as 2 ranks x 2 micro-batches
    x 1 clip, DDP skipping the all-reduce on the first micro-batch (no_sync); rank 0 saves step 2."""
    import os
    import subprocess
    import sys

    from train.pretraining.config import REPO_ROOT

    flags = ["--config", "demo.yaml", "--shards", str(tiny_shards), "--split", "", "--num-frames", "4",
             "--sampling-rate", "2", "--input-size", "32", "--num-workers", "0", "--batch-size", "4",
             "--batch-per-device", "1", "--max-steps", "2", "--log-every", "1", "--out", str(tmp_path)]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(REPO_ROOT / "train" / "pretrain.py"), *flags], env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "batch 4 clips/step = 2 processes x 2 micro-batches x 1 clips" in run.stdout
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 2
