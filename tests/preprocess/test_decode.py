"""decode_video on real files: attrs, resizing, sampling, codecs without vectors, failures."""
from __future__ import annotations


import av
import numpy as np
import pytest

from preprocess.decode import DecodedVideo, decode_video, keep_indices, stored_size
from preprocess.errors import ExtractionError
from preprocess.synthetic import Clip, Scene, render


def median_mv(video: DecodedVideo) -> np.ndarray:
    return np.median(video.mv[video.mv_valid], axis=0)


@pytest.fixture(scope="module")
def pan_clip(video_dir):
    clip = Clip("decode_pan", Scene(num_frames=24, bg_velocity=(2, 1)), bframes=2)
    return clip, clip.write(video_dir)


def test_arrays_and_attrs(pan_clip):
    clip, path = pan_clip
    video = decode_video(path)
    assert video.frames.shape == (24, 128, 160, 3) and video.frames.dtype == np.uint8
    assert video.mv.shape == (24, 16, 20, 2) and video.mv.dtype == np.float32
    assert video.mv_valid.shape == (24, 16, 20) and video.mv_valid.dtype == bool
    assert video.mv_distance.shape == (24, 16, 20) and video.mv_distance.dtype == np.uint8
    assert not video.mv_valid[0].any()
    a = video.attrs
    assert a["source"] == str(path) and a["codec"] == "h264" and a["mv_source"] == "stream"
    assert (a["height"], a["width"], a["source_height"], a["source_width"]) == (128, 160, 128, 160)
    assert a["num_frames"] == 24 and a["fps"] == pytest.approx(25)
    assert set(a["timings"]) == {"decode", "motion_vectors", "ref_distance"}
    assert all(v >= 0 for v in a["timings"].values())
    # frames are the decoded pixels: close to what was encoded (crf 12)
    assert np.abs(video.frames.astype(int) - render(clip.scene).astype(int)).mean() < 3


def test_decoding_is_deterministic(pan_clip):
    a, b = decode_video(pan_clip[1]), decode_video(pan_clip[1])
    np.testing.assert_array_equal(a.mv, b.mv)
    np.testing.assert_array_equal(a.mv_valid, b.mv_valid)
    np.testing.assert_array_equal(a.frames, b.frames)


def test_lower_fps_keeps_nearest_frames_and_scales_mv(pan_clip):
    video = decode_video(pan_clip[1], fps=12.5)
    assert video.attrs["fps"] == 12.5 and video.attrs["native_fps"] == pytest.approx(25)
    assert video.attrs["num_frames"] == 12 == len(video.frames) and video.attrs["native_num_frames"] == 24
    np.testing.assert_array_equal(video.frames, decode_video(pan_clip[1]).frames[::2])
    assert not video.mv_valid[0].any()
    np.testing.assert_allclose(median_mv(video), [4, 2], atol=0.25)  # two native frames per kept one
    assert decode_video(pan_clip[1], fps=50).attrs["num_frames"] == 24  # never upsampled in time


def test_keep_indices():
    times = np.arange(10) / 30.0
    assert keep_indices(times, 15).tolist() == [0, 2, 4, 6, 8]
    assert keep_indices(times, 10).tolist() == [0, 3, 6, 9]
    assert keep_indices(times[:1], 10).tolist() == [0]


@pytest.mark.parametrize("source,short,expected", [
    ((240, 320), 128, (128, 171)),   # 170.67 rounds half up
    ((100, 138), 75, (75, 104)),     # odd short side
    ((320, 240), 128, (171, 128)),   # portrait
    ((128, 160), 256, (128, 160)),   # never upscaled
])
def test_stored_size(source, short, expected):
    assert stored_size(source, short) == expected


def test_resize_scales_frames_and_mv(video_dir):
    clip = Clip("big", Scene(height=240, width=320, num_frames=12, bg_velocity=(4, 2)))
    video = decode_video(clip.write(video_dir), short_side=128)
    assert video.frames.shape == (12, 128, 171, 3) and video.mv.shape == (12, 16, 21, 2)
    a = video.attrs
    assert (a["height"], a["width"], a["source_height"], a["source_width"]) == (128, 171, 240, 320)
    np.testing.assert_allclose(median_mv(video), [4 * 171 / 320, 2 * 128 / 240], atol=0.1)
    assert video.mv_valid[1:].mean() > 0.9


@pytest.mark.parametrize("short_side,hw", [(256, (100, 138)), (75, (75, 104))])
def test_sizes_that_are_not_multiples_of_the_cell(video_dir, short_side, hw):
    clip = Clip("odd", Scene(height=100, width=138, num_frames=12, bg_velocity=(2, -1)))
    video = decode_video(clip.write(video_dir), short_side=short_side)
    assert video.frames.shape[1:3] == hw and video.mv.shape[1:3] == (hw[0] // 8, hw[1] // 8)
    scale = np.array([hw[1] / 138, hw[0] / 100])
    np.testing.assert_allclose(median_mv(video), np.array([2, -1]) * scale, atol=0.25)
    assert video.mv_valid[1:].mean() > 0.9


def test_grey_content_and_grey_pixel_format(video_dir):
    video = decode_video(Clip("grey", Scene(num_frames=12, bg_velocity=(2, 1), gray=True)).write(video_dir))
    assert np.abs(np.diff(video.frames.astype(int), axis=-1)).max() <= 2
    np.testing.assert_allclose(median_mv(video), [2, 1], atol=0.25)
    path = video_dir / "grey_fmt.mkv"
    frames = render(Scene(num_frames=4, gray=True))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "gray"
        for img in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img[..., 0], format="gray")))
        out.mux(stream.encode())
    video = decode_video(path)
    assert video.frames.shape == (4, 128, 160, 3)
    np.testing.assert_array_equal(video.frames, frames)  # lossless, replicated to 3 channels


@pytest.mark.parametrize("codec", ["mjpeg", "ffv1"])
def test_intra_only_codecs_give_an_all_invalid_field(video_dir, codec):
    video = decode_video(Clip(f"intra_{codec}", Scene(num_frames=8, bg_velocity=(2, 1)), codec=codec).write(video_dir))
    assert video.attrs["mv_source"] == "none: intra-only codec" and video.attrs["codec"] == codec
    assert video.mv.shape == (8, 16, 20, 2) and not video.mv_valid.any() and not video.mv.any()


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_single_frame_video(video_dir, codec):
    video = decode_video(Clip(f"one_{codec}", Scene(num_frames=1), codec=codec).write(video_dir))
    assert video.frames.shape == (1, 128, 160, 3) and video.mv.shape == (1, 16, 20, 2)
    assert not video.mv_valid.any()


def test_transcode_handles_odd_stored_sizes(video_dir):
    clip = Clip("vp9_odd", Scene(height=100, width=138, num_frames=10, bg_velocity=(2, 1)), codec="vp9")
    video = decode_video(clip.write(video_dir), short_side=75)
    assert video.attrs["mv_source"] == "transcoded-h264" and video.frames.shape[1:3] == (75, 104)
    np.testing.assert_allclose(median_mv(video), [2 * 104 / 138, 1 * 75 / 100], atol=0.25)


# ---- failures -----------------------------------------------------------------------------

def expect_failure(path, stage: str, words: str) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        decode_video(path)
    assert info.value.stage == stage
    assert words in info.value.reason and "\n" not in info.value.reason
    return info.value


def test_missing_and_empty_files(tmp_path):
    expect_failure(tmp_path / "nope.mp4", "open", "file not found")
    (tmp_path / "empty.mp4").write_bytes(b"")
    expect_failure(tmp_path / "empty.mp4", "open", "empty file")
    expect_failure(tmp_path, "open", "not a regular file")


def test_garbage_and_truncated_files(tmp_path, pan_clip):
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    expect_failure(tmp_path / "garbage.mp4", "open", "not a readable video")
    data = pan_clip[1].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the moov atom is at the end
    expect_failure(tmp_path / "truncated.mp4", "open", "not a readable video")


def test_stream_without_decodable_frames(tmp_path):
    # a valid container whose video packets are cut: it opens, then nothing decodes
    path = Clip("cut", Scene(num_frames=4)).write(tmp_path)
    mkv = tmp_path / "cut.mkv"
    with av.open(str(path)) as src, av.open(str(mkv), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None and not packet.is_keyframe:
                packet.stream = stream
                dst.mux(packet)
    expect_failure(mkv, "decode", "zero decodable frames")


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    expect_failure(path, "open", "no video stream (streams: audio)")
