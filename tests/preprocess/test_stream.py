"""Bounded-memory extraction: windows of frames give the arrays of the whole-video computation,
and the shard writer's appends give the shards of `write_video`."""
from __future__ import annotations

import numpy as np
import pytest

import preprocess.video
from preprocess.config import ExtractConfig
from preprocess.decode import FrameStream, decode_video
from preprocess.flow import downsample_frame, iter_warped_flow
from preprocess.synthetic import MovingObject, Scene, encode, render
from preprocess.video import extract_video, flow_config, to_gray
from shards import open_shards
from shards.schema import ARRAYS, STORED
from shards.writer import open_writer

OBJ = (MovingObject(20, (30, 24), (1.5, 0.5)),)
# (frames, window): shorter than a window; several windows, the last short, frame counts
# that are not a multiple of any chunk (mv 8, flow 4, homography 64); a window of 3 frames
CASES = {"short": (5, 32), "windows": (37, 8), "tiny_windows": (13, 3)}


def whole_video(path, cfg: ExtractConfig) -> dict[str, np.ndarray]:
    """The arrays as the extractor computed them before windows: every frame decoded, flow
    streamed over the whole video (schema 3 stores no trajectories or HOG)."""
    decoded = decode_video(path, short_side=cfg.short_side, max_ref_distance=cfg.max_ref_distance)
    gray = to_gray(decoded.frames)
    n, height, width = gray.shape
    flow = np.empty((max(n - 1, 0), height // cfg.flow_stride, width // cfg.flow_stride, 2), np.float32)
    homography = np.empty((max(n - 1, 0), 3, 3), np.float32)
    ok = np.zeros(max(n - 1, 0), bool)
    for t, (comp, h, ok[t]) in enumerate(iter_warped_flow(gray, flow_config(cfg), decoded.mv, decoded.mv_valid)):
        homography[t] = h
        downsample_frame(comp, cfg.flow_stride, flow[t])
    return {"frames": decoded.frames, "mv": decoded.mv, "mv_valid": decoded.mv_valid, "flow": flow,
            "homography": homography, "homography_ok": ok}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return {name: encode(root / name, render(Scene(height=72, width=100, num_frames=n, bg_velocity=(1.0, 0.5),
                                                   objects=OBJ, seed=3)), codec="h264", bframes=2, refs=3)
            for name, (n, _) in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_windows_give_the_whole_video_arrays(name, videos, monkeypatch):
    monkeypatch.setattr(preprocess.video, "WINDOW_FRAMES", CASES[name][1])
    cfg = ExtractConfig()
    arrays, attrs = extract_video(str(videos[name]), cfg)
    want = whole_video(videos[name], cfg)
    assert attrs["num_frames"] == CASES[name][0] == len(arrays["frames"])
    assert set(arrays) == set(want) == set(STORED)
    for key in STORED:
        assert arrays[key].dtype == want[key].dtype and arrays[key].shape == want[key].shape, key
        np.testing.assert_array_equal(arrays[key], want[key], err_msg=key)  # bit for bit


def test_frame_stream_is_decode_video_one_frame_at_a_time(videos):
    stream = FrameStream(videos["windows"])
    items = list(stream)
    video = decode_video(videos["windows"])
    assert stream.attrs == {**video.attrs, "timings": stream.attrs["timings"]}
    for got, want in zip(zip(*items), (video.frames, video.mv, video.mv_valid, video.mv_distance)):
        np.testing.assert_array_equal(np.stack(got), want)



# codecs without exported vectors: two passes (transcode, then decode beside it), an odd
# stored size (padded for x264), a one-frame HEVC video, intra-only codecs (no transcode)
CODEC_CASES = {"hevc": ("hevc", 72, 100, 12, None), "vp9_odd": ("vp9", 100, 138, 10, 75),
               "hevc_one": ("hevc", 64, 80, 1, None), "mjpeg": ("mjpeg", 64, 80, 6, None),
               "ffv1": ("ffv1", 64, 80, 6, None)}


@pytest.mark.parametrize("name", sorted(CODEC_CASES))
def test_frame_stream_of_codecs_without_vectors_is_decode_video(name, tmp_path):
    codec, height, width, n, short_side = CODEC_CASES[name]
    path = encode(tmp_path / name, render(Scene(height=height, width=width, num_frames=n, bg_velocity=(2.0, 1.0),
                                                objects=OBJ, seed=9)), codec=codec)
    kw = {"short_side": short_side} if short_side else {}
    stream = FrameStream(path, **kw)
    items = list(stream)
    video = decode_video(path, **kw)
    assert stream.attrs == {**video.attrs, "timings": stream.attrs["timings"]}
    assert video.attrs["mv_source"] == ("transcoded-h264" if codec in ("hevc", "vp9") else "none: intra-only codec")
    for got, want in zip(zip(*items), (video.frames, video.mv, video.mv_valid, video.mv_distance)):
        np.testing.assert_array_equal(np.stack(got), want)
    if video.attrs["mv_source"] == "transcoded-h264" and n > 1:
        assert video.mv_valid[1:].any()  # the transcode's vectors, not an empty field



@pytest.mark.parametrize("codec,fps", [("h264", 12.5), ("h264", 10.0), ("h264", 30.0), ("vp9", 12.5)])
def test_frame_stream_at_a_lower_fps_is_decode_video(codec, fps, tmp_path):
    """--fps below the native 25: the kept frames come from a timestamp-only first pass, their
    fields scaled by the native frames they span, as decode_video's subsample_field does."""
    path = encode(tmp_path / codec, render(Scene(height=64, width=80, num_frames=23, bg_velocity=(2.0, 1.0),
                                                 objects=OBJ, seed=10)), codec=codec, bframes=2 if codec == "h264" else 0)
    stream = FrameStream(path, fps=fps)
    items = list(stream)
    video = decode_video(path, fps=fps)
    assert stream.attrs == {**video.attrs, "timings": stream.attrs["timings"]}
    assert video.attrs["num_frames"] == {12.5: 12, 10.0: 10, 30.0: 23}[fps] == len(items)
    for got, want in zip(zip(*items), (video.frames, video.mv, video.mv_valid, video.mv_distance)):
        np.testing.assert_array_equal(np.stack(got), want)


def _arrays(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays of the schema for an n-frame 40x56 video (values in the stored ranges)."""
    rng = np.random.default_rng(seed)
    attrs = {"source": "x.mp4", "fps": 25.0, "height": 40, "width": 56, "source_height": 40, "source_width": 56,
             "num_frames": n, "codec": "h264", "traj_len": 3, "flow_stride": 4}
    from shards.schema import dims_from_attrs

    dims = dims_from_attrs(attrs)
    out = {}
    for name in STORED:
        spec = ARRAYS[name]
        shape = spec.shape(dims)
        if spec.dtype == "bool":
            out[name] = rng.random(shape) < 0.5
        elif spec.dtype == "uint8":
            out[name] = rng.integers(0, 256, shape, np.uint8)
        else:
            out[name] = rng.normal(0, 3, shape).astype(np.float32)
    return out, attrs


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
@pytest.mark.parametrize("n", [1, 70, 200])
def test_appended_video_reads_as_written_whole(fmt, n, tmp_path):
    """70 and 200 frames with 64-frame shards: streamed, the last shard partial; 1: one write."""
    arrays, attrs = _arrays(n)
    w = open_writer(tmp_path / "set", format=fmt, config={})
    w.write_video("whole", arrays, attrs)
    video = w.begin_video("streamed", {k: attrs[k] for k in ("height", "width", "traj_len", "flow_stride")},
                          shard_frames=64)
    rng = np.random.default_rng(1)
    for name in STORED:  # uneven blocks, arrays interleaved as the pipeline does
        bounds = np.unique(np.r_[0, np.sort(rng.integers(0, len(arrays[name]) + 1, 5)), len(arrays[name])])
        for a, b in zip(bounds[:-1], bounds[1:]):
            video.append(name, arrays[name][a:b])
    assert video.streaming == (n > 64)
    assert "streamed" not in w.done_ids()  # not listed before the commit
    video.commit(attrs)
    w.finalize()
    ds = open_shards(tmp_path / "set")
    assert ds.ids() == ["streamed", "whole"]
    whole, streamed = ds["whole"], ds["streamed"]
    for name in STORED:
        np.testing.assert_array_equal(streamed[name][:], whole[name][:], err_msg=name)
    assert streamed.attrs["num_frames"] == n and streamed.attrs["complete"] is True


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_interrupted_streamed_video_is_never_listed_and_is_redone(fmt, tmp_path):
    from shards.verify import video_problems

    arrays, attrs = _arrays(150)
    shape_attrs = {k: attrs[k] for k in ("height", "width", "traj_len", "flow_stride")}
    w = open_writer(tmp_path / "set", format=fmt, config={})
    killed = w.begin_video("v", shape_attrs, shard_frames=64)
    for name in STORED:
        killed.append(name, arrays[name][:100])  # shards on disk, no commit: a killed worker
    assert killed.streaming and "v" not in w.done_ids()
    if fmt == "zarr":
        assert not open_shards(tmp_path / "set").ids()
        assert video_problems(open_shards(tmp_path / "set"), "v")[0][1].startswith("no commit marker")
    # the resumed run begins the video again over what the killed one left
    w2 = open_writer(tmp_path / "set", format=fmt)
    video = w2.begin_video("v", shape_attrs, shard_frames=64)
    for name in STORED:
        video.append(name, arrays[name])
    video.commit(attrs)
    w2.finalize()
    ds = open_shards(tmp_path / "set")
    assert ds.ids() == ["v"] and video_problems(ds, "v") == []
    np.testing.assert_array_equal(ds["v"]["homography_ok"][:], arrays["homography_ok"])


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_wrong_lengths_are_refused_and_aborted_video_leaves_nothing(fmt, tmp_path):
    arrays, attrs = _arrays(100)
    w = open_writer(tmp_path / "set", format=fmt, config={})
    video = w.begin_video("v", {k: attrs[k] for k in ("height", "width", "traj_len", "flow_stride")},
                          shard_frames=64)
    for name in STORED:
        video.append(name, arrays[name][:-1] if name == "flow" else arrays[name])
    with pytest.raises(ValueError, match="flow: 98 rows"):
        video.commit(attrs)
    video.abort()
    with pytest.raises(ValueError, match="rows of shape"):
        w.begin_video("u", {**attrs, "width": 64}).append("mv", arrays["mv"])
    leftovers = sorted(p.name for p in (tmp_path / "set" / "videos").iterdir())
    assert leftovers == ([] if fmt == "hdf5" else ["zarr.json"])



@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_extract_streams_a_long_video_into_the_same_shards(fmt, tmp_path, monkeypatch):
    """The CLI's path end to end: with 64-frame shards a 150-frame video is written while it is
    decoded (windows of 8 frames); it reads back as the whole-video extraction, and a failed
    video in the same run leaves a failure record and no half-written group."""
    import shards.video_writer
    from preprocess.extract import run

    src = tmp_path / "src"
    encode(src / "long", render(Scene(height=48, width=64, num_frames=150, bg_velocity=(1.0, 0.5), objects=OBJ,
                                      seed=8)), codec="h264", bframes=2)
    (src / "broken.mp4").write_bytes(b"not a video")
    cfg = dict(dataset="folder", root=str(src), workers=0, format=fmt)
    run(ExtractConfig(out=str(tmp_path / "whole"), **cfg), log=lambda _: None)
    monkeypatch.setattr(shards.video_writer, "STREAM_SHARD_FRAMES", 64)
    monkeypatch.setattr(preprocess.video, "WINDOW_FRAMES", 8)
    summary = run(ExtractConfig(out=str(tmp_path / "streamed"), **cfg), log=lambda _: None)
    assert (summary["done"], summary["failed"]) == (1, 1)
    whole, streamed = open_shards(tmp_path / "whole"), open_shards(tmp_path / "streamed")
    assert streamed.ids() == ["long"] and [f["id"] for f in streamed.failures()] == ["broken"]
    for name in STORED:
        np.testing.assert_array_equal(streamed["long"][name][:], whole["long"][name][:], err_msg=name)
    leftovers = {p.name for p in (tmp_path / "streamed" / "videos").iterdir()}
    assert leftovers == ({"long.h5"} if fmt == "hdf5" else {"long", "zarr.json"})
    if fmt == "zarr":  # 150 frames in 64-frame shards: three shard files per array
        shard_files = [p for p in (tmp_path / "streamed" / "videos" / "long" / "mv").rglob("*") if p.is_file()
                       and p.name != "zarr.json"]
        assert len(shard_files) == 3


@pytest.mark.slow
def test_long_video_peak_rss_is_bounded(tmp_path):
    """A 70 s 256p video (2,100 frames) whose arrays held whole need ~1.2 GB (frames alone
    550 MB) is extracted in one process under 450 MB peak RSS (measured 2026-11-30: ~300 MB
    for 1,200 and 2,400 frames alike, docs/benchmarks.md "Memory and video length")."""
    import itertools
    import sys
    from pathlib import Path

    from bench.long_video import peak_rss

    clip = render(Scene(height=256, width=340, num_frames=60, bg_velocity=(1.0, 0.4), objects=OBJ, seed=4))
    encode(tmp_path / "src" / "long", itertools.islice(itertools.cycle(clip), 2100), codec="h264", fps=30,
           bframes=2, refs=3, crf=20)
    repo = Path(__file__).resolve().parents[2]
    peak_mb, _ = peak_rss([sys.executable, "preprocess/extract.py", "--dataset", "folder", "--root",
                           str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--workers", "0"], repo)
    assert open_shards(tmp_path / "out")["long"].attrs["num_frames"] == 2100
    assert peak_mb < 450, f"peak RSS {peak_mb:.0f} MB"
