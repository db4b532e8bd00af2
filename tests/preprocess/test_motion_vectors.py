"""Codec motion vectors -> per-cell forward field: signs, painting, reference distance.

Pure-function tests use hand-made side data; accuracy tests decode real encodes of
synthetic scenes whose motion is known by construction.
"""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.decode import decode_video
from preprocess.motion_vectors import (block_velocities, default_distances, drop_unused_lists,
                                       frame_field, recover_distances)
from preprocess.synthetic import Clip, MovingObject, Scene, render

# PyAV's MOTION_VECTORS dtype (FFmpeg's AVMotionVector), without the alignment padding.
MV_DTYPE = np.dtype([("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"),
                     ("dst_x", "<i2"), ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"),
                     ("motion_y", "<i4"), ("motion_scale", "<u2")])


def vectors(*rows: tuple) -> np.ndarray:
    """Side data from (source, x0, y0, w, h, src_minus_dst_x, src_minus_dst_y) rows, quarter-pel."""
    out = np.zeros(len(rows), MV_DTYPE)
    for i, (source, x0, y0, w, h, mx, my) in enumerate(rows):
        out[i] = (source, w, h, 0, 0, x0 + w // 2, y0 + h // 2, 0, round(mx * 4), round(my * 4), 4)
    out["src_x"] = out["dst_x"] + out["motion_x"] // 4
    out["src_y"] = out["dst_y"] + out["motion_y"] // 4
    return out


# ---- pure functions ---------------------------------------------------------------------

def test_signs_past_and_future_references():
    # content moving +2 px/frame in x: from a past frame src is 2 px left of dst, from a
    # future frame 2 px right (FFmpeg: src = dst + motion / motion_scale)
    v = vectors((-1, 0, 0, 16, 16, -2, -1), (1, 0, 0, 16, 16, 2, 1), (1, 16, 0, 16, 16, 4, 2))
    d = np.array([-1, 1, 2])
    np.testing.assert_allclose(block_velocities(v, d), [[2, 1], [2, 1], [2, 1]])
    np.testing.assert_array_equal(default_distances(v), [-1, 1, 1])


def test_cells_need_majority_coverage_and_average_by_area():
    v = vectors((-1, 0, 0, 4, 8, -1, 0), (-1, 4, 0, 4, 4, -5, 0),   # cell (0,0): 3/4 covered
                (-1, 8, 0, 4, 8, -3, 0))                            # cell (0,1): 1/2 covered
    mv, valid, dist = frame_field(v, (16, 16), (16, 16))
    assert valid.tolist() == [[True, False], [False, False]]
    np.testing.assert_allclose(mv[0, 0], [(32 * 1 + 16 * 5) / 48, 0], rtol=1e-6)
    assert dist[0, 0] == 1 and dist[0, 1] == 0


def test_bipredicted_block_takes_its_past_estimate():
    # mv[t] is the motion t-1 -> t: the list-1 half (t -> t+2, 4 px/frame) would differ at a
    # change of speed, so a cell with a past-referenced block keeps only that one
    v = vectors((-1, 0, 0, 8, 8, -2, 0), (1, 0, 0, 8, 8, 8, 0))
    mv, valid, dist = frame_field(v, (8, 8), (8, 8), np.array([-1, 2]))
    assert valid[0, 0] and dist[0, 0] == 1
    np.testing.assert_allclose(mv[0, 0], [2, 0])


def test_future_only_block_is_kept():
    v = vectors((1, 0, 0, 8, 8, 8, 0))
    mv, valid, dist = frame_field(v, (8, 8), (8, 8), np.array([2]))
    assert valid[0, 0] and dist[0, 0] == 2
    np.testing.assert_allclose(mv[0, 0], [4, 0])  # motion / (scale d) = 8 / 2


def test_field_in_stored_pixels_after_resize():
    # 64x32 source stored at 32x16: a 16x16 source block is one 8x8 stored cell
    v = vectors((-1, 16, 0, 16, 16, -4, -2))
    mv, valid, _ = frame_field(v, (32, 64), (16, 32))
    assert mv.shape == (2, 4, 2) and valid.sum() == 1 and valid[0, 1]
    np.testing.assert_allclose(mv[0, 1], [2, 1])


def test_unknown_distance_and_empty_frames_are_invalid():
    v = vectors((-1, 0, 0, 8, 8, -2, 0))
    assert not frame_field(v, (8, 8), (8, 8), np.array([0]))[1].any()
    mv, valid, dist = frame_field(None, (20, 30), (20, 30))
    assert mv.shape == (2, 3, 2) and not valid.any() and not dist.any()


def test_drop_unused_lists_removes_placeholder_zeros_only():
    v = vectors((-1, 0, 0, 8, 16, 0, 0), (1, 0, 0, 8, 16, 3, 0),   # L1 partition + L0 placeholder
                (-1, 8, 0, 8, 16, 0, 0), (1, 8, 0, 8, 16, 0, 0))   # truly static bi-pred
    kept = drop_unused_lists(v)
    assert len(kept) == 3 and (kept["motion_x"] == 12).sum() == 1


@pytest.fixture(scope="module")
def pan_frames() -> np.ndarray:
    """Grey frames of a textured pan of exactly (+2, +1) px/frame."""
    rgb = render(Scene(height=64, width=64, num_frames=8, bg_velocity=(2, 1), seed=3))
    return rgb.mean(axis=-1).astype(np.float32)


@pytest.mark.parametrize("source,t,k", [(-1, 5, 1), (-1, 5, 3), (-1, 6, 4), (1, 1, 2), (1, 2, 4)])
def test_recover_distance_by_block_matching(pan_frames, source, t, k):
    v = vectors((source, 16, 16, 16, 16, -2 * k * -source, -1 * k * -source),
                (source, 32, 32, 8, 8, 0, 0))
    refs = {d: pan_frames[t + d] for d in range(-4, 5) if d and 0 <= t + d < len(pan_frames)}
    d = recover_distances(v, pan_frames[t], refs, max_ref_distance=4)
    assert d.tolist() == [source * k, source]  # the zero vector keeps the adjacent frame
    np.testing.assert_allclose(block_velocities(v, d)[0], [2, 1])


def test_reference_beyond_the_range_is_unknown(pan_frames):
    v = vectors((-1, 16, 16, 16, 16, -10, -5))  # spans 5 frames
    refs = {d: pan_frames[7 + d] for d in range(-4, 0)}
    assert recover_distances(v, pan_frames[7], refs, max_ref_distance=4).tolist() == [0]


# ---- real encodes -------------------------------------------------------------------------

def pan(velocity, **scene) -> Scene:
    return Scene(height=128, width=160, num_frames=16, bg_velocity=velocity, **scene)


def pan_errors(video, velocity) -> np.ndarray:
    """Per valid cell max(|dx|, |dy|) error against the pan, frames 1.."""
    return np.abs(video.mv[video.mv_valid] - np.asarray(velocity)).max(axis=1)


PANS = {
    "h264": Clip("h264", pan((2, 1))),
    "h264_frac": Clip("h264_frac", pan((1.5, -0.75))),
    "h264_b2": Clip("h264_b2", pan((2, 1)), bframes=2),
    "h264_b2_frac": Clip("h264_b2_frac", pan((1.5, -0.75)), bframes=2),
    # P-frames reach 3 and 6 frames back, B-frames 1-4: multi-reference really used
    "h264_b2_refs3": Clip("h264_b2_refs3", pan((1.5, -0.75)), bframes=2, refs=3),
    "hevc": Clip("hevc", pan((1.5, -0.75)), codec="hevc"),
    "vp9": Clip("vp9", pan((2, 1)), codec="vp9"),
    "mpeg4": Clip("mpeg4", pan((1.5, -0.75)), codec="mpeg4"),
}


@pytest.fixture(scope="module")
def decoded_pans(video_dir) -> dict:
    return {name: (clip, decode_video(clip.write(video_dir / "mv_pans"))) for name, clip in PANS.items()}


@pytest.mark.parametrize("name", list(PANS))
def test_pan_median_matches_the_camera(decoded_pans, name):
    clip, video = decoded_pans[name]
    velocity = clip.scene.bg_velocity
    assert not video.mv_valid[0].any()
    assert video.mv_valid[1:].mean() > (0.2 if name == "mpeg4" else 0.75)  # mpeg4: B-frames dropped
    np.testing.assert_allclose(np.median(video.mv[video.mv_valid], axis=0), velocity, atol=0.5)
    assert (pan_errors(video, velocity) > 1.0).mean() < 0.03
    assert video.attrs["mv_source"] == ("transcoded-h264" if name in ("hevc", "vp9") else "stream")


@pytest.mark.parametrize("name", ["h264_b2", "h264_b2_refs3"])
def test_distance_recovery_is_what_makes_multi_frame_vectors_right(video_dir, decoded_pans, name):
    clip, recovered = decoded_pans[name]
    naive = decode_video(video_dir / "mv_pans" / f"{name}.mp4", recover_distance=False)
    velocity = clip.scene.bg_velocity
    assert np.median(pan_errors(naive, velocity)) >= 0.75  # P-frames 3 apart inflate 3x
    assert np.percentile(pan_errors(naive, velocity), 90) >= 1.5
    assert np.percentile(pan_errors(recovered, velocity), 99) <= 0.3
    assert set(np.unique(recovered.mv_distance[recovered.mv_valid])) >= {1, 2, 3}


def test_moving_object_on_static_camera(video_dir):
    obj = MovingObject(size=48, start=(30, 20), velocity=(3, 2))
    clip = Clip("object", Scene(num_frames=16, objects=(obj,)), bframes=2)
    video = decode_video(clip.write(video_dir))
    pos = clip.scene.object_positions(0)
    inside, outside = [], []
    for t in range(1, 16):
        x, y = pos[t]
        cx, cy = np.arange(20) * 8, np.arange(16) * 8  # cell top-left corners
        inner = ((cx[None] >= x + 8) & (cx[None] + 8 <= x + obj.size - 8)
                 & (cy[:, None] >= y + 8) & (cy[:, None] + 8 <= y + obj.size - 8))
        far = ((cx[None] + 8 < x - 16) | (cx[None] > x + obj.size + 16)
               | (cy[:, None] + 8 < y - 16) | (cy[:, None] > y + obj.size + 16))
        inside.append(video.mv[t][inner & video.mv_valid[t]])
        outside.append(video.mv[t][far & video.mv_valid[t]])
    inside, outside = np.concatenate(inside), np.concatenate(outside)
    assert len(inside) > 50 and len(outside) > 500
    np.testing.assert_allclose(np.median(inside, axis=0), [3, 2], atol=0.5)
    assert np.percentile(np.abs(outside).max(axis=1), 95) <= 0.25


@pytest.mark.parametrize("bframes", [0, 2])
def test_speed_change_shows_at_the_right_frame(video_dir, bframes):
    steps = np.array([(2.0, 0.0)] * 10 + [(-1.0, 1.5)] * 13)  # steps[t]: frame t -> t+1
    clip = Clip(f"speed_b{bframes}", Scene(num_frames=24, bg_velocities=tuple(map(tuple, steps))),
                bframes=bframes)
    video = decode_video(clip.write(video_dir))
    expected = steps.copy()
    if bframes:
        # P-frame 12 predicts from frame 9: one vector for three frames gives their mean
        assert set(np.unique(video.mv_distance[12][video.mv_valid[12]])) == {3}
        expected[11] = steps[9:12].mean(axis=0)
    for t in range(1, 24):
        assert video.mv_valid[t].mean() > 0.9, f"frame {t}"
        np.testing.assert_allclose(np.median(video.mv[t][video.mv_valid[t]], axis=0), expected[t - 1],
                                   atol=0.25, err_msg=f"frame {t}")


def test_sample_many_blocks_beyond_remap_row_limit():
    """A 720p frame has ~3600 16-row blocks: more rows than cv2.remap takes at once."""
    from preprocess.motion_vectors import _sample

    img = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    n = 4000
    ys = np.tile(np.arange(16, dtype=np.float32), (n, 1))
    xs = np.tile(np.arange(16, dtype=np.float32), (n, 1)) + 3
    out = _sample(img, ys, xs)
    assert out.shape == (n, 16, 16)
    np.testing.assert_array_equal(out[-1], img[:16, 3:19])
