"""The natural-footage speed benchmark's inputs: crops keep the centre, re-encodes keep the size."""
from __future__ import annotations

import av
import numpy as np

from preprocess.bench_natural import crop_scale, parse_size, reencode
from preprocess.synthetic import Scene, encode, render


def test_crop_scale_keeps_the_centre_at_the_new_aspect():
    rgb = np.zeros((272, 640, 3), np.uint8)
    rgb[:, 320 - 10:320 + 10] = 255  # a bright column at the centre
    out = crop_scale(rgb, 340, 256)
    assert out.shape == (256, 340, 3)
    bright = np.flatnonzero(out[128, :, 0] > 128)
    assert abs(bright.mean() - 169.5) < 1.0  # still at the centre
    tall = crop_scale(np.zeros((720, 400, 3), np.uint8), 456, 256)
    assert tall.shape == (256, 456, 3)


def test_reencode_gives_h264_with_b_frames_at_the_size(tmp_path):
    src = encode(tmp_path / "src", render(Scene(height=96, width=160, num_frames=24, bg_velocity=(1.0, 0.5))))
    out = reencode(str(src), tmp_path / "out.mp4", *parse_size("64x48"))
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        assert (stream.codec_context.name, frames[0].width, frames[0].height) == ("h264", 64, 48)
        assert len(frames) == 24
        assert any(f.pict_type == av.video.frame.PictureType.B for f in frames)
