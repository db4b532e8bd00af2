import shutil

import numpy as np
import pytest
import torch

from shards import open_shards
from train.clips.dataset import (ClipDataset, ClipSampler, ClipSpec, MaskCollate, crop_box, frame_indices, hflip,
                        make_loader, read_clip, read_clip_at, read_clips_at, resample_cells)
from train.pretraining.masks import batch_generator, get_mask
from tests.train.conftest import FLOW_STRIDE, TRAJ_LEN, VIDEOS

ALL = frozenset({"mv", "mv_valid", "flow", "homography", "hog", "traj", "traj_valid", "traj_hog"})


def clip_of(shards, vid, seed=0, **kw):
    spec = ClipSpec(**{**dict(num_frames=4, sampling_rate=2, input_size=32, needs=ALL), **kw})
    with open_shards(shards) as ds:
        return read_clip(ds[vid], spec, np.random.default_rng(seed))


def test_clip_shapes(tiny_shards):
    c = clip_of(tiny_shards, "pan")
    assert c["video"].shape == (3, 4, 32, 32)
    assert c["mv"].shape == (4, 4, 4, 2) and c["flow"].shape == (3, 4, 4, 2)
    assert c["homography"].shape == (3, 3, 3) and c["hog"].shape == (4, 4, 4, 9)
    assert c["traj"].shape == (2, 4, 4, TRAJ_LEN, 2) and c["traj_hog"].shape == (2, 4, 4, TRAJ_LEN, 9)
    assert int(c["frame_step"]) == 2


def test_only_needed_keys_are_read(tiny_shards):
    assert set(clip_of(tiny_shards, "pan", needs=frozenset())) == {"video", "frame_step"}


@pytest.mark.parametrize("rate", [1, 3])
def test_flow_between_clip_frames_composes_the_stride(tiny_shards, rate):
    # crop side = 48 = stored short side, input 48: scale 1, so values are stored px
    c = clip_of(tiny_shards, "slow", sampling_rate=rate, input_size=48, min_crop=1.0)
    pan, vel = map(np.asarray, VIDEOS["slow"])
    flow = c["flow"].reshape(-1, 2)
    # background cells move with the camera, object cells with the object: rate frames each
    assert np.isclose(flow, pan * rate, atol=0.05).all(-1).mean() > 0.6
    assert np.isclose(flow, vel * rate, atol=0.2).all(-1).any()
    assert np.allclose(c["homography"][:, :2, 2], pan * rate, atol=1e-4)


def test_flip_twice_is_identity(tiny_shards):
    c = clip_of(tiny_shards, "pan")
    back = hflip(hflip(c))
    for k in c:
        assert np.allclose(back[k], c[k]), k


def test_flip_mirrors_motion_and_hog(tiny_shards):
    c = clip_of(tiny_shards, "pan")
    f = hflip(c)
    assert np.allclose(f["video"], c["video"][..., ::-1])
    assert np.allclose(f["traj"][..., 0], -c["traj"][:, :, ::-1, ..., 0])
    assert np.allclose(f["traj"][..., 1], c["traj"][:, :, ::-1, ..., 1])
    assert np.allclose(f["mv"][..., 0], -c["mv"][:, :, ::-1, 0])
    assert np.array_equal(f["traj_valid"], c["traj_valid"][:, :, ::-1])
    assert np.allclose(f["hog"][..., 1], c["hog"][:, :, ::-1, 7])     # [20,40) deg -> (140,160]
    # a point x -> x + pan under H becomes W-1-x -> W-1-x - pan under the flipped H
    p = np.array([5.0, 7.0, 1.0])
    q, qf = c["homography"][0] @ p, f["homography"][0] @ np.array([31 - 5.0, 7.0, 1.0])
    assert np.allclose(qf[:2] / qf[2], [31 - q[0] / q[2], q[1] / q[2]], atol=1e-4)


def test_flip_bins_match_hog_of_the_mirrored_image():
    import cv2
    from shards.derived import cell_hog
    img = cv2.GaussianBlur(np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32), (0, 0), 2) * 50 + 128
    hog, hog_of_mirror = cell_hog(img), cell_hog(np.ascontiguousarray(img[:, ::-1]))
    clip = {"video": np.zeros((3, 1, 32, 32), np.float32), "hog": hog}
    assert np.allclose(hflip(clip)["hog"], hog_of_mirror, atol=1e-5)


def test_resample_cells_is_nearest_cell():
    g = np.arange(6 * 8).reshape(1, 6, 8)
    assert np.array_equal(resample_cells(g, 16, 8, 32, 4), g[:, 1:5, 2:6])
    assert np.array_equal(resample_cells(g, 0, 0, 32, 2), g[:, [1, 3]][:, :, [1, 3]])


def test_sampler_resumes_the_same_stream():
    whole = ClipSampler(5, seed=1)
    it = iter(whole)
    stream = [next(it) for _ in range(12)]
    it = iter(ClipSampler(5, seed=1, start=7))
    assert [next(it) for _ in range(5)] == stream[7:]
    assert sorted(v for _, v in stream[:5]) == list(range(5))  # one epoch = every video once


def test_batches_do_not_depend_on_workers(tiny_shards):
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, needs=ALL)
    ds = ClipDataset(tiny_shards, spec, seed=5)
    a = next(iter(make_loader(ds, 2, start_step=1, seed=5, num_workers=0)))
    b = next(iter(make_loader(ds, 2, start_step=1, seed=5, num_workers=2)))
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("mask, repeats", [("tube", 1), ("mgm", 1), ("mgmae", 1), ("mgmae", 2)])
def test_masks_are_made_with_the_batch_from_its_first_sample(tiny_shards, mask, repeats):
    # the loader's workers make the masks (the trainer's main process only moves batches): one
    # generator per batch from (seed, its first global sample), so the masks depend on neither
    # the worker count nor a resume, and equal the strategy called on the collated batch
    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, needs=ALL, repeated_aug=repeats)
    ds = ClipDataset(tiny_shards, spec, seed=5)
    grid, ratio, batch = (2, 4, 4), 0.75, 2 * repeats
    masks = MaskCollate(mask, grid, ratio, seed=5, repeats=repeats)
    fresh = iter(make_loader(ds, batch, seed=5, num_workers=0, masks=masks))
    steps = [next(fresh) for _ in range(3)]
    resumed = next(iter(make_loader(ds, batch, start_step=2, seed=5, num_workers=2, masks=masks)))
    plain = next(iter(make_loader(ds, batch, start_step=2, seed=5, num_workers=0)))
    assert set(resumed) == set(plain) | {"mask"}
    for k in resumed:
        assert torch.equal(resumed[k], steps[2][k]), k
    first = 2 * batch // repeats           # step 2's first global sample (one rank)
    expected = get_mask(mask)(plain, grid, ratio, batch_generator(5, first))
    assert torch.equal(resumed["mask"], expected)
    assert resumed["mask"].shape == (batch, 32) and resumed["mask"].dtype == torch.bool
    assert (resumed["mask"].reshape(batch, 2, 16).sum(-1) == 12).all()   # round(0.75 * 16) per slice
    assert not torch.equal(steps[0]["mask"], steps[1]["mask"]) or mask != "tube"


def test_repeated_crops_read_once_equal_one_read_per_crop(tiny_shards):
    # MGMAE's num_sample: arrays read and flow chained once, then cropped per box; the dataset
    # draws boxes and flips in the order it drew them one clip at a time (same clips per seed)
    spec = ClipSpec(num_frames=4, sampling_rate=3, input_size=32, min_crop=0.5, needs=ALL, repeated_aug=3)
    ds = ClipDataset(tiny_shards, spec, seed=2)
    with open_shards(tiny_shards) as s:
        video = s["pan"]
        rng = np.random.default_rng([2, 1])   # sample 1: flips False, True, True
        idx, rate = frame_indices(int(video.attrs["num_frames"]), spec, rng)
        expected = []
        for _ in range(3):
            box = crop_box(int(video.attrs["height"]), int(video.attrs["width"]), spec, rng)
            clip = read_clip_at(video, spec, idx, rate, box)
            expected.append(hflip(clip) if rng.random() < 0.5 else clip)
        boxes = [crop_box(48, 64, spec, np.random.default_rng(k)) for k in range(3)]
        together = read_clips_at(video, spec, idx, rate, boxes)
        for box, clip in zip(boxes, together):
            one = read_clip_at(video, spec, idx, rate, box)
            assert set(clip) == set(one) and all(np.array_equal(clip[k], one[k]) for k in one)
    got = ds[(1, ds.ids.index("pan"))]
    assert len(got) == 3 and len({c["video"].sum().item() for c in got}) == 3
    for clip, exp in zip(got, expected):
        assert set(clip) == set(exp) and all(np.array_equal(clip[k].numpy(), np.ascontiguousarray(exp[k]))
                                             for k in exp)


def write_set(path, names):
    from shards.writer import open_writer
    from tests.train.conftest import synthetic_video

    writer = open_writer(path)
    for k, vid in enumerate(names):
        writer.write_video(vid, *synthetic_video(*VIDEOS[vid], seed=k))
    writer.finalize()


def test_a_set_rewritten_under_the_loader_is_a_clear_error(tmp_path):
    path = tmp_path / "set"
    write_set(path, ("still", "pan"))
    ds = ClipDataset(path, ClipSpec(num_frames=4, sampling_rate=2, input_size=32), seed=0)
    shutil.rmtree(path)
    write_set(path, ("still",))  # re-extracted without "pan" while training
    assert ds[(0, ds.ids.index("still"))]["video"].shape == (3, 4, 32, 32)
    with pytest.raises(RuntimeError, match="changed under the loader: video 'pan'"):
        ds[(0, ds.ids.index("pan"))]


def test_open_videos_are_bounded_and_split_ids_come_from_the_index(tiny_shards, monkeypatch):
    """A worker keeps at most OPEN_VIDEOS videos open (least recently read go first), and a
    split's ids come from the corpus index, not from opening every video."""
    import train.clips.dataset as data

    spec = ClipSpec(num_frames=4, sampling_rate=1, input_size=32)
    assert ClipDataset(tiny_shards, spec, split="train").ids == sorted(VIDEOS)
    with pytest.raises(ValueError, match="no videos with split 'val'"):
        ClipDataset(tiny_shards, spec, split="val")
    ds = ClipDataset(tiny_shards, spec)
    monkeypatch.setattr(data, "OPEN_VIDEOS", 2)
    for i in range(3):
        ds[(i, i)]
    assert list(ds._videos) == ds.ids[1:3]
    ds[(3, 1)]  # read again: now the most recent
    assert list(ds._videos) == [ds.ids[2], ds.ids[1]]


@pytest.mark.parametrize("vid, size, min_crop", [("pan", 32, 0.66), ("slow", 48, 1.0), ("fast", 24, 0.5)])
def test_clip_trajectories_are_the_whole_video_arrays_cut(tiny_shards, vid, size, min_crop):
    """The loader tracks only the points of the crop and computes HOG only on the cells they
    visit (shard schema 3 derives both when read); what it returns is the whole-video arrays
    (`v["traj"]`, `v["hog"]` sampled along the positions) cut and resampled like every grid."""
    from shards.tracks import along_trajectories, positions
    from train.clips.dataset import crop_box, frame_indices, read_clip_at

    spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=size, min_crop=min_crop, needs=ALL)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        with open_shards(tiny_shards) as ds:
            v = ds[vid]
            idx, rate = frame_indices(int(v.attrs["num_frames"]), spec, rng)
            box = crop_box(int(v.attrs["height"]), int(v.attrs["width"]), spec, rng)
            c = read_clip_at(v, spec, idx, rate, box)
            starts, n = idx[::spec.tubelet], int(v.attrs["num_frames"])
            traj, valid, hom, hog = v["traj"][starts], v["traj_valid"][starts], v["homography"][:], v["hog"][:]
        ref_hog = np.concatenate([
            along_trajectories(hog[s:min(s + TRAJ_LEN, n)], positions(traj[k:k + 1], valid[k:k + 1], hom[s:]),
                               valid[k:k + 1]) for k, s in enumerate(starts)])
        x0, y0, side = box
        cut = lambda g: resample_cells(g, x0, y0, side, size // 8)  # noqa: E731
        np.testing.assert_allclose(c["traj"], cut(traj) * np.float32(size / side), atol=1e-5)
        np.testing.assert_array_equal(c["traj_valid"], cut(valid))
        # the clip's own frames give their luma from the decoded RGB (no second decode), the
        # other visited frames the JPEG's Y plane: the two differ by rounding only
        want = cut(ref_hog)
        err = np.abs(c["traj_hog"] - want)
        assert err.mean() <= 0.01 * want.mean() and err.max() <= 0.1 * want.max(), seed


def test_a_shorter_traj_len_is_the_first_steps_of_the_stored_one(tiny_shards):
    """`ClipSpec.traj_len` (MME's K400 script trains L = 4 on any shards): tracking is causal,
    so the clip's L = 2 trajectories are the first 2 steps of its full-length ones, the HOG
    along them too; a longer length than stored tracks further (schema 3); heads follow."""
    from train.clips.dataset import read_clip_at

    full_spec = ClipSpec(num_frames=4, sampling_rate=2, input_size=32, min_crop=1.0, flip=False, needs=ALL)
    with open_shards(tiny_shards) as ds:
        v = ds["pan"]
        idx, box = np.array([0, 2, 4, 6]), (0, 0, 32)
        full = read_clip_at(v, full_spec, idx, 2, box)
        short = read_clip_at(v, ClipSpec(**{**full_spec.__dict__, "traj_len": 2}), idx, 2, box)
        longer = read_clip_at(v, ClipSpec(**{**full_spec.__dict__, "traj_len": TRAJ_LEN + 2}), idx, 2, box)
    assert short["traj"].shape == (2, 4, 4, 2, 2) and short["traj_hog"].shape == (2, 4, 4, 2, 9)
    np.testing.assert_array_equal(short["traj"], full["traj"][..., :2, :])
    np.testing.assert_array_equal(short["traj_valid"], full["traj_valid"][..., :2])
    np.testing.assert_allclose(short["traj_hog"], full["traj_hog"][..., :2, :], rtol=1e-6, atol=1e-6)
    assert longer["traj"].shape[-2] == TRAJ_LEN + 2
    np.testing.assert_array_equal(longer["traj"][..., :TRAJ_LEN, :], full["traj"])
    ds = ClipDataset(tiny_shards, ClipSpec(num_frames=4, sampling_rate=2, input_size=32, traj_len=3), seed=0)
    assert ds.traj_len == 3


def test_normalize_is_the_imagenet_formula_channel_first():
    from train.clips.dataset import normalize
    from train.pretraining.targets.pixel import MEAN, STD

    frames = np.random.default_rng(5).integers(0, 256, (3, 16, 24, 3), np.uint8)
    want = ((frames.astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(normalize(frames), want)
    assert normalize(frames[:0]).shape == (3, 0, 16, 24)
