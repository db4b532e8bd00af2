"""The natural-footage speed benchmark's inputs: crops keep the centre, re-encodes keep the size."""
from __future__ import annotations

import av
import numpy as np

from bench.natural import crop_scale, parse_size, reencode
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


def test_write_corpus_gives_distinct_clips(tmp_path, monkeypatch):
    import bench.natural as bn

    src = encode(tmp_path / "src", render(Scene(height=60, width=160, num_frames=6, bg_velocity=(1.0, 0.0))))
    monkeypatch.setattr(bn, "natural_sources", lambda: [str(src)])
    paths = bn.write_corpus(tmp_path / "corpus", 3, 48, 32)
    assert [p.name for p in paths] == ["src_000.mp4", "src_001.mp4", "src_002.mp4"]
    firsts = []
    for p in paths:
        with av.open(str(p)) as c:
            firsts.append(next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int))
    assert all(f.shape == (32, 48, 3) for f in firsts)
    # other crop windows / mirrored: no two clips start with the same picture
    assert min(np.abs(a - b).mean() for i, a in enumerate(firsts) for b in firsts[i + 1:]) > 1.0


def test_bench_compare_runs_each_checkout_on_the_same_files(tmp_path, capsys):
    from pathlib import Path

    from bench.extract_compare import main

    videos = tmp_path / "videos"
    encode(videos / "a", render(Scene(height=48, width=64, num_frames=6, bg_velocity=(1.0, 0.0))))
    repo = str(Path(__file__).resolve().parents[2])
    main([repo, repo, "--root", str(videos), "--best-of", "1", "--cores", "0,0"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {repo} |")]
    assert len(rows) == 2 and all("| 6 |" in row for row in rows)
