"""Fine-tuning as the papers fine-tune: clip-wide augmentation, TSN sampling, multi-view testing,
mixup / cutmix on videos, repeated augmentation, and an end-to-end run on the labelled test set."""
import copy
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from timm.data import Mixup

from tests.train.eval.test_evaluate import TINY, check_metrics, checkpoint, labelled_shards  # noqa: F401 (fixtures)
from train.clips.augment import erase_clip, randaugment_clip
from train.clips.dataset import ClipDataset, ClipSampler, ClipSpec, eval_views, read_clip_at
from train.eval.config import EvalConfig
from train.eval.evaluation import finetune, run_views
from train.eval.view_cache import Views
from train.pretraining.engine import Dist
from train.eval.classifier import VideoClassifier, load_encoder
from train.eval.finetune import (FinetuneClips, RepeatedSampler, check, make_criterion, make_mixup, mix_clips,
                                 train_classifier)
from train.clips.sampling import multi_views, random_resized_box, spatial_crops, tsn_indices, tsn_test_indices

POLICY = "rand-m7-n4-mstd0.5-inc1"  # VideoMAE's


def textured_frames(T: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    """(T,S,S,3) uint8; frames 0, 2 and 5 equal, the others different."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8)
    frames[2] = frames[5] = frames[0]
    return frames


# ---- clip-wide augmentation -------------------------------------------------------------------

def test_randaugment_applies_the_same_ops_to_every_frame():
    frames = textured_frames()
    changed = 0
    for seed in range(10):
        out = randaugment_clip(frames, POLICY, seed)
        assert out.shape == frames.shape and out.dtype == np.uint8
        assert np.array_equal(out[0], out[2]) and np.array_equal(out[0], out[5])     # equal frames stay equal
        for t in (1, 3):  # each frame went through the same draw as if it were augmented alone
            assert np.array_equal(out[t], randaugment_clip(frames[t:t + 1], POLICY, seed)[0])
        changed += not np.array_equal(out, frames)
    assert changed >= 8                                       # 4 ops at magnitude ~7: almost always a change
    a, b = randaugment_clip(frames, POLICY, 0), randaugment_clip(frames, POLICY, 1)
    assert not np.array_equal(a, b)                           # another clip, another draw


def test_clip_augmentation_leaves_the_global_generators_alone():
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    randaugment_clip(textured_frames(), POLICY, 3)
    erase_clip(torch.zeros(3, 4, 16, 16), 1.0, 3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_random_erasing_cuts_one_box_on_every_frame():
    clip = torch.zeros(3, 4, 32, 32)
    erased = erase_clip(clip.clone(), 1.0, seed=7) != 0                    # (3,T,S,S) the filled pixels
    box = erased[0, 0]
    assert 0 < box.sum() < 32 * 32
    assert all(torch.equal(erased[c, t], box) for c in range(3) for t in range(4))
    assert torch.equal(erase_clip(torch.zeros(3, 4, 32, 32), 0.0, seed=7), torch.zeros(3, 4, 32, 32))


# ---- temporal sampling and test views ---------------------------------------------------------

def test_tsn_picks_one_frame_per_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_indices(160, 16, rng) for _ in range(200)])         # 16 segments of 10 frames
    assert ((draws // 10) == np.arange(16)).all()                            # frame k lies in segment k
    assert set(np.unique(draws % 10)) == set(range(10))                      # anywhere in its segment
    short = tsn_indices(10, 16, rng)                                         # fewer frames than segments
    assert (np.diff(short) >= 0).all() and set(short) == set(range(10))
    # VideoMAE's two SSv2 test clips: the segment starts and the segment centres
    assert np.array_equal(tsn_test_indices(160, 16, 0, 2), np.arange(16) * 10)
    assert np.array_equal(tsn_test_indices(160, 16, 1, 2), np.arange(16) * 10 + 5)
    assert np.array_equal(tsn_test_indices(45, 16, 1, 2), (45 / 16 * (np.arange(16) + 0.5)).astype(int))


def test_spatial_crops_span_the_long_side():
    assert spatial_crops(48, 64, 3) == [(0, 0, 48), (8, 0, 48), (16, 0, 48)]   # left, centre, right
    assert spatial_crops(256, 340, 3) == [(0, 0, 256), (40, 0, 256), (80, 0, 256)]
    assert spatial_crops(340, 256, 3) == [(0, 0, 256), (0, 40, 256), (0, 80, 256)]  # portrait: top to bottom
    spec = ClipSpec(4, 2, 32, 2)
    assert spatial_crops(48, 64, 1) == [eval_views(20, 48, 64, spec, 1)[0][2]]    # 1 crop: the centre, as before


def test_test_views_are_clips_times_crops_clip_major():
    spec = ClipSpec(4, 2, 32, 2)
    views = multi_views(20, 48, 64, spec, clips=2, crops=3)
    assert len(views) == 6
    windows = eval_views(20, 48, 64, spec, 2)
    for k, (idx, rate, box) in enumerate(views):
        assert np.array_equal(idx, windows[k // 3][0]) and rate == 2
        assert box == spatial_crops(48, 64, 3)[k % 3]
    tsn = multi_views(160, 48, 64, ClipSpec(16, 2, 32, 2), clips=2, crops=3, tsn=True)
    assert len(tsn) == 6 and np.array_equal(tsn[3][0], np.arange(16) * 10 + 5)


def test_random_resized_box():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, w, h = random_resized_box(256, 340, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= x0 and x0 + w <= 340 and 0 <= y0 and y0 + h <= 256
        assert 0.08 * 256 * 340 * 0.95 <= w * h <= 256 * 340
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    boxes = [random_resized_box(256, 340, (0.08, 1.0), (3 / 4, 4 / 3), np.random.default_rng([1, g])) for g in (3, 3)]
    assert boxes[0] == boxes[1]                                               # a function of the sample's generator


# ---- mixing -----------------------------------------------------------------------------------

def test_cutmix_cuts_one_box_on_every_frame_and_weights_the_label_by_its_area():
    mixup = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=3)
    np.random.seed(0)
    video = torch.zeros(2, 3, 4, 32, 32)
    video[1] = 1.0                                                            # clip 1 all ones, clip 0 all zeros
    mixed, target = mix_clips(mixup, video, torch.tensor([0, 2]))
    assert mixed.shape == (2, 3, 4, 32, 32)
    box = mixed[0, 0, 0] == 1                                                 # clip 1's pixels inside clip 0
    assert box.any() and all(torch.equal(mixed[0, c, t] == 1, box) for c in range(3) for t in range(4))
    assert target[0, 2].item() == pytest.approx(box.float().mean().item())    # label weight = box area
    assert target[0, 0].item() == pytest.approx(1 - box.float().mean().item())


def test_mixup_with_label_smoothing_gives_soft_targets():
    cfg = EvalConfig(mixup=0.8, cutmix=0.0, smoothing=0.1)
    mixup = make_mixup(cfg, num_classes=4)
    np.random.seed(1)
    video = torch.stack([torch.zeros(3, 2, 8, 8), torch.ones(3, 2, 8, 8)])
    mixed, target = mix_clips(mixup, video, torch.tensor([1, 3]))
    lam = 1 - mixed[0].mean().item()                                          # clip 0 = lam * 0 + (1 - lam) * 1
    assert torch.allclose(target.sum(1), torch.ones(2))
    assert target[0, 1].item() == pytest.approx(lam * 0.9 + 0.1 / 4, abs=1e-5)
    assert target[0, 0].item() == pytest.approx(0.1 / 4, abs=1e-6)           # smoothing mass on other classes
    assert type(make_criterion(cfg, mixup)).__name__ == "SoftTargetCrossEntropy"
    assert type(make_criterion(EvalConfig(smoothing=0.1), None)).__name__ == "LabelSmoothingCrossEntropy"
    assert make_mixup(EvalConfig(), 4) is None


def test_repeated_sampler_repeats_each_video_with_distinct_samples():
    items = []
    for item in RepeatedSampler(ClipSampler(5, seed=0), repeats=3):
        items.append(item)
        if len(items) == 12:
            break
    gs = [g for g, _ in items]
    assert len(set(gs)) == 12
    videos = [v for _, v in items]
    assert all(videos[3 * k] == videos[3 * k + 1] == videos[3 * k + 2] for k in range(4))


# ---- on the labelled shard set ----------------------------------------------------------------

IDS = ["train_move_a", "train_move_b", "train_still_a"]


def test_with_every_option_off_the_clips_are_the_pretraining_clips(labelled_shards):
    cfg = EvalConfig(shards=str(labelled_shards), **{**TINY, "tubelet": 2})
    ours = FinetuneClips(labelled_shards, cfg, IDS, {i: 0 for i in IDS})
    theirs = ClipDataset(labelled_shards, cfg.spec(train=True), cfg.seed)
    for g in range(4):
        a = ours[(g, 1)]["video"]
        b = theirs[(g, theirs.ids.index(IDS[1]))]["video"]
        assert torch.equal(a, b)


def test_augmented_clips_are_finite_and_vary(labelled_shards):
    cfg = EvalConfig(shards=str(labelled_shards), randaug=POLICY, reprob=0.25, min_area=0.08, tsn=True,
                     **{**TINY, "tubelet": 2})
    ds = FinetuneClips(labelled_shards, cfg, IDS, {i: k for k, i in enumerate(IDS)})
    clips = [ds[(g, 0)] for g in range(3)]
    assert all(c["video"].shape == (3, 4, 32, 32) and torch.isfinite(c["video"]).all() for c in clips)
    assert not torch.equal(clips[0]["video"], clips[1]["video"]) and clips[2]["label"].item() == 0
    assert torch.equal(ds[(1, 0)]["video"], clips[1]["video"])               # a function of the sample number


def test_multi_view_test_reads_every_view_at_its_position(labelled_shards):
    from shards import open_shards

    spec = ClipSpec(4, 2, 32, 2, 1.0, flip=False)
    ids = ["val_move_a", "val_still_a"]
    views = Views(labelled_shards, ids, spec, clips=2, crops=3)
    assert len(views) == 12 and views.per_video == 6
    cfg = EvalConfig(encode_batch=4, num_workers=0)
    means = run_views(lambda v: v.mean((1, 2, 3, 4))[:, None], views, cfg, torch.device("cpu"), Dist())
    assert means.shape == (2, 6, 1)
    with open_shards(labelled_shards) as ds:
        for v, vid in enumerate(ids):
            video = ds[vid]
            windows = eval_views(20, 48, 64, spec, 2)                         # the fixture: 20 frames, 48 x 64
            for k in range(6):
                idx, rate, _ = windows[k // 3]
                box = [(0, 0, 48), (8, 0, 48), (16, 0, 48)][k % 3]            # left, centre, right
                expected = read_clip_at(video, spec, idx, rate, box)["video"].mean()
                assert means[v, k, 0].item() == pytest.approx(float(expected), abs=1e-5)
        assert means[0, 0, 0] != means[0, 2, 0]                               # the crops are different pixels


def test_finetune_with_the_papers_regularization_and_multi_view_testing(labelled_shards, checkpoint):  # noqa: F811
    result = finetune(checkpoint, labelled_shards, max_steps=2, base_lr=1.0, num_workers=0, device="cpu",
                      batch_size=2, repeated_aug=2, mixup=0.8, cutmix=1.0, smoothing=0.1, randaug=POLICY,
                      reprob=0.25, min_area=0.08, clips=2, test_crops=3, tsn=True, log_every=1)
    check_metrics(result)
    assert result["views_per_video"] == 6
    assert result["finetune"]["steps"] == 2 and result["finetune"]["clips_per_step"] == 4
    assert np.isfinite(result["finetune"]["last_loss"])


def test_an_odd_batch_under_mixup_is_refused(labelled_shards):
    with pytest.raises(ValueError, match="even batch"):
        finetune("random", labelled_shards, model="vit_pico", mixup=0.8, **{**TINY, "batch_size": 3})
    with pytest.raises(ValueError, match="even batch"):   # 4 videos over 4 processes: 1 clip per forward
        check(EvalConfig(batch_size=4, mixup=0.8), world=4)
    check(EvalConfig(batch_size=4, repeated_aug=2, mixup=0.8), world=4)


# ---- the global batch -------------------------------------------------------------------------

@pytest.mark.parametrize("videos, repeats, world, cap, expected", [
    (384, 2, 64, 0, (12, 1)),       # VideoMAE K400: 6 videos x 2 clips on each of 64 GPUs
    (384, 2, 8, 0, (96, 1)),        # the same recipe on 8 GPUs, no cap: 48 videos per forward
    (384, 2, 8, 24, (24, 4)),       # ... capped at 24 clips per device: 4 micro-batches of 12 videos
    (128, 2, 1, 16, (16, 16)),      # VideoMAE UCF101 on one device
])
def test_fine_tuning_splits_the_global_batch_of_videos(videos, repeats, world, cap, expected):
    cfg = EvalConfig(batch_size=videos, repeated_aug=repeats, batch_per_device=cap)
    micro, accum = cfg.micro_batches(world)
    assert (micro, accum) == expected and micro * accum * world == videos * repeats and micro % repeats == 0
    with pytest.raises(ValueError, match="does not split"):
        EvalConfig(batch_size=6).micro_batches(4)


def test_fine_tuning_lr_scales_with_the_global_batch_of_videos(labelled_shards):
    """VideoMAE: lr = base_lr * batch_size * update_freq * world / 256, num_sample not counted."""
    assert EvalConfig(batch_size=384, repeated_aug=2, base_lr=5e-4).lr() == pytest.approx(7.5e-4)
    assert EvalConfig(batch_size=384, repeated_aug=2, base_lr=5e-4, batch_per_device=24).lr() == pytest.approx(7.5e-4)
    lines = []
    finetune("random", labelled_shards, log=lines.append, model="vit_pico", max_steps=1, base_lr=2.56,
             **{**TINY, "batch_size": 4, "batch_per_device": 2})
    started = next(s for s in lines if s.startswith("fine-tuning:"))
    assert "lr 0.04," in started and "batch 4 videos x 1 clips/step = 1 processes x 2 micro-batches x 2 clips" \
        in started, started


def test_an_accumulated_fine_tuning_step_equals_one_step_on_the_whole_batch(labelled_shards):
    """2 micro-batches of 1 video x 2 clips and one batch of 2 videos x 2 clips: the same clips in
    the same order, the mean of the micro-batches' mean losses -> the same weights after each step."""
    cfg = EvalConfig(checkpoint="random", shards=str(labelled_shards), model="vit_pico", finetune=True,
                     drop_path=0.0, batch_size=2, repeated_aug=2, max_steps=2, warmup_epochs=0.0, base_lr=1.0,
                     randaug=POLICY, reprob=0.25, min_area=0.08, **{k: v for k, v in TINY.items() if k != "batch_size"})
    mae, cfg, _ = load_encoder(cfg)
    torch.manual_seed(0)
    start = VideoClassifier(mae, 2)
    labels = {i: int("move" in i) for i in IDS}
    models, summaries = {}, {}
    for cap in (0, 2):
        model = copy.deepcopy(start)
        summaries[cap] = train_classifier(model, replace(cfg, batch_per_device=cap), IDS, labels,
                                          torch.device("cpu"), Dist(), log=lambda s: None)
        models[cap] = model.state_dict()
    one, acc = models[0], models[2]
    diff = max((one[k] - acc[k]).abs().max().item() for k in one)
    update = max((one[k] - start.state_dict()[k]).abs().max().item() for k in one)
    # lr 1.0 * 2 / 256: a step moves weights ~8e-3. The key bias of attention has an exact-zero gradient
    # (the softmax ignores it); its float rounding, normalized by Adam, moves it ~3e-5 by step 2
    assert diff < update / 100, (diff, update)
    assert summaries[0]["first_loss"] == pytest.approx(summaries[2]["first_loss"], rel=1e-5)
    assert summaries[0]["clips_per_step"] == summaries[2]["clips_per_step"] == 4


@pytest.mark.parametrize("name, per_gpu, gpus", [("finetune_k400.yaml", 6, 64), ("finetune_ssv2.yaml", 6, 64),
                                                  ("finetune_ucf101.yaml", 16, 8), ("finetune_demo.yaml", 4, 1)])
def test_every_finetune_config_loads_and_runs_a_step(name, per_gpu, gpus, labelled_shards, tmp_path):
    from dataclasses import asdict

    from train.pretraining.config import load_file
    from train.evaluate import main, parse_args

    values = load_file(name)
    defaults = asdict(EvalConfig())
    for key, value in values.items():  # yaml's 5e-4 is a string, 5.0e-4 a float: each value typed as its field
        if defaults[key] is not None:
            assert type(value) is type(defaults[key]) or isinstance(defaults[key], float) and type(value) is int, key
    cfg = parse_args(["--checkpoint", "random", "--config", name, "--shards", str(labelled_shards)])
    assert cfg.finetune and cfg.mixup == 0.8 and cfg.cutmix == 1.0 and cfg.smoothing == 0.1 and cfg.randaug
    assert cfg.batch_size == per_gpu * gpus        # the papers' global batch: per-GPU batch x GPUs
    assert cfg.micro_batches(gpus) == (per_gpu * cfg.repeated_aug, 1)   # on their GPUs, their forward
    check(cfg, world=gpus)
    out = tmp_path / "result.json"
    result = main(["--checkpoint", "random", "--config", name, "--shards", str(labelled_shards), "--model", "vit_pico",
                   "--num-frames", "4", "--sampling-rate", "2", "--input-size", "32", "--batch-size", "2",
                   "--batch-per-device", "2", "--max-steps", "1", "--num-workers", "0", "--device", "cpu",
                   "--out", str(out)])
    check_metrics(result)
    assert result["views_per_video"] == cfg.clips * cfg.test_crops and out.exists()


def test_a_config_file_sets_defaults_that_flags_override(tmp_path, labelled_shards):
    from shards.cli import UsageError
    from train.evaluate import parse_args

    path = tmp_path / "ft.yaml"
    path.write_text("finetune: true\nmixup: 0.5\nepochs: 7\n")
    shards = ["--shards", str(labelled_shards)]
    cfg = parse_args(["--checkpoint", "random", "--config", str(path), "--epochs", "3", *shards])
    assert cfg.finetune and cfg.mixup == 0.5 and cfg.epochs == 3 and cfg.cutmix == 0.0
    path.write_text("mixupp: 0.5\n")
    with pytest.raises(UsageError, match=r"unknown EvalConfig keys \['mixupp'\]"):
        parse_args(["--checkpoint", "random", "--config", str(path), *shards])
