"""Inputs that used to be stored wrong or reported wrong: rotated phone videos, images
renamed .mp4, unreadable folders, symlink loops."""
from __future__ import annotations

import numpy as np
import pytest

from preprocess.decode import decode_video
from preprocess.synthetic import MovingObject, Scene, encode, render

# 64 x 48: multiples of the 8 px cell and of the 16 px macroblock, so a rotated field is
# exactly the rotation of the upright one
SCENE = Scene(height=48, width=64, num_frames=8, seed=5, objects=(MovingObject(16, (8, 16), (3.0, 0.0)),))


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    root = tmp_path_factory.mktemp("rotated")
    frames = render(SCENE)
    return {deg: decode_video(encode(root / f"r{deg}", frames, codec="h264", bframes=2, rotation=deg),
                              short_side=256) for deg in (0, 90, -90, 180)}


@pytest.mark.parametrize("degrees,turns", [(90, 1), (-90, 3), (180, 2)])
def test_rotated_video_is_stored_upright(rotated, degrees, turns):
    plain, rot = rotated[0], rotated[degrees]
    assert rot.attrs["rotation"] == (-180 if degrees == 180 else degrees) and plain.attrs["rotation"] == 0
    assert rot.attrs["display_transform"] == {1: ["transpose=cclock"], 2: ["hflip", "vflip"],
                                              3: ["transpose=clock"]}[turns]
    np.testing.assert_array_equal(rot.frames, np.rot90(plain.frames, turns, axes=(1, 2)))
    assert (rot.attrs["height"], rot.attrs["width"]) == ((64, 48) if turns % 2 else (48, 64))
    assert (rot.attrs["source_height"], rot.attrs["source_width"]) == (rot.attrs["height"], rot.attrs["width"])
    # the codec field turns with the picture: cells move, and so do the vectors' components
    want_valid = np.rot90(plain.mv_valid, turns, axes=(1, 2))
    np.testing.assert_array_equal(rot.mv_valid, want_valid)
    mv = np.rot90(plain.mv, turns, axes=(1, 2))
    dx, dy = mv[..., 0], mv[..., 1]
    want = {1: (dy, -dx), 2: (-dx, -dy), 3: (-dy, dx)}[turns]
    np.testing.assert_allclose(rot.mv, np.stack(want, -1), atol=1e-6)
    np.testing.assert_array_equal(rot.mv_distance, np.rot90(plain.mv_distance, turns, axes=(1, 2)))
    # the object moves right in the coded picture; upright after +90 (ccw) it moves up
    if degrees == 90:
        moving = rot.mv[rot.mv_valid & (np.abs(rot.mv).sum(-1) > 1)]
        assert abs(np.median(moving[:, 1]) + 3.0) < 0.5 and abs(np.median(moving[:, 0])) < 0.5


# A display matrix with a mirror (EXIF orientations 2, 4, 5, 7), written into the mp4's track
# header by hand: PyAV only writes rotations. FFmpeg's autorotate applies these filters; the
# pixel maps are the filters' definitions (libavfilter vf_transpose, hflip, vflip) and the
# vector maps follow, so neither side uses the extractor's own orientation code.
MIRRORS = {  # name: ((a, b, c, d) of the matrix, FFmpeg's filters, frame map, (dx, dy) map)
    "hflip": ((-1, 0, 0, 1), ["hflip"], lambda f: f[:, :, ::-1], lambda dx, dy: (-dx, dy)),
    "vflip": ((1, 0, 0, -1), ["vflip"], lambda f: f[:, ::-1], lambda dx, dy: (dx, -dy)),
    "transpose": ((0, 1, 1, 0), ["transpose=cclock_flip"], lambda f: f.transpose(0, 2, 1, 3),
                  lambda dx, dy: (dy, dx)),
    "antitranspose": ((0, -1, -1, 0), ["transpose=clock_flip"], lambda f: f[:, ::-1, ::-1].transpose(0, 2, 1, 3),
                      lambda dx, dy: (-dy, -dx)),
}


def with_display_matrix(src, dst, abcd):
    """A copy of the mp4 `src` whose track header holds the matrix [[a, b, 0], [c, d, 0], [0, 0, 1]]."""
    import struct

    identity = struct.pack(">9i", 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
    data = src.read_bytes()
    at = data.index(identity, data.index(b"tkhd"))
    a, b, c, d = (v << 16 for v in abcd)
    dst.write_bytes(data[:at] + struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30) + data[at + 36:])
    return dst


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_mirrored_video_is_stored_as_ffmpeg_shows_it(name, tmp_path):
    matrix, filters, frame_map, vector_map = MIRRORS[name]
    src = encode(tmp_path / "plain", render(SCENE), codec="h264", bframes=2)
    plain = decode_video(src, short_side=256)
    shown = decode_video(with_display_matrix(src, tmp_path / f"{name}.mp4", matrix), short_side=256)
    assert shown.attrs["display_transform"] == filters and plain.attrs["display_transform"] == []
    np.testing.assert_array_equal(shown.frames, frame_map(plain.frames))
    np.testing.assert_array_equal(shown.mv_valid, frame_map(plain.mv_valid[..., None])[..., 0])
    np.testing.assert_array_equal(shown.mv_distance, frame_map(plain.mv_distance[..., None])[..., 0])
    mv = frame_map(plain.mv)
    np.testing.assert_allclose(shown.mv, np.stack(vector_map(mv[..., 0], mv[..., 1]), -1), atol=1e-6)


# ------------------------------------------------------------------ files that are not videos

@pytest.fixture(scope="module")
def odd_corpus(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("odd")
    encode(root / "good", render(SCENE), codec="h264")
    encode(root / "phone", render(SCENE), codec="h264", rotation=-90)  # shot upright on a phone
    cv2.imwrite(str(root / "still.png"), np.full((48, 64, 3), 128, np.uint8))
    (root / "still.png").rename(root / "still.mp4")
    cv2.imwrite(str(root / "photo.jpg"), np.full((48, 64, 3), 90, np.uint8))
    (root / "photo.jpg").rename(root / "photo.mov")
    (root / "loop.mp4").symlink_to("loop.mp4")
    (root / "dangling.mp4").symlink_to("nowhere.mp4")
    (root / "private").mkdir()
    encode(root / "private" / "hidden_from_us", render(SCENE), codec="h264")
    return root


def _extract(root, out, monkeypatch=None, **kw):
    from preprocess.config import ExtractConfig
    from preprocess.extract import run

    lines: list[str] = []
    summary = run(ExtractConfig(dataset="folder", root=str(root), out=str(out), short_side=64, workers=0, **kw),
                  log=lines.append)
    return summary, lines


def _unreadable(monkeypatch, folder):
    """`folder` raises EACCES as for a process without read permission (tests run as root,
    whom chmod 000 does not stop)."""
    import errno
    import os

    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_odd_inputs_are_recorded_with_what_they_are(odd_corpus, tmp_path, monkeypatch):
    import json

    from shards import open_shards

    _unreadable(monkeypatch, odd_corpus / "private")
    summary, lines = _extract(odd_corpus, tmp_path / "s")
    ds = open_shards(str(tmp_path / "s"))
    assert ds.ids() == ["good", "phone"]
    assert ds["phone"].attrs["rotation"] == -90 and ds["phone"]["frames"].shape[1:3] == (64, 48)
    reasons = {f["id"]: f["reason"] for f in ds.failures()}
    assert reasons["still"].startswith("image, not a video (png read by FFmpeg's png_pipe demuxer)")
    assert reasons["photo"].startswith("image, not a video (mjpeg read by FFmpeg's jpeg_pipe")
    assert reasons["loop"].startswith("symlink loop: ") and "leads back to itself" in reasons["loop"]
    assert reasons["dangling"].startswith("broken symlink: ") and "nowhere.mp4 does not exist" in reasons["dangling"]
    want = f"{odd_corpus / 'private'}: Permission denied"
    assert any(x == f"warning: cannot read folder {want}; its videos are not listed" for x in lines)
    assert f"warning:  cannot read folder {want}" in lines[-1]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["run"]["unreadable_folders"] == [want]


def test_images_allowed_by_flag(odd_corpus, tmp_path):
    summary, _ = _extract(odd_corpus, tmp_path / "s", allow_images=True)
    from shards import open_shards

    ds = open_shards(str(tmp_path / "s"))
    assert ds["still"]["frames"].shape == (1, 48, 64, 3) and int(ds["still"]["frames"][0].mean()) in (127, 128, 129)
