"""`--frames none`: the reader decodes frames from the source video, the very frames extraction
would have stored (same native frames, size, rotation), with seeking; a moved corpus is found
under source_root, a missing one is one clear error naming the video."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from preprocess.config import ExtractConfig
from preprocess.decode import decode_video
from preprocess.extract import run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import ShardReadError, ShardRef, open_shards
from shards.source_frames import SourceMissing, build_index
from shards.verify import video_problems

SCENE = Scene(height=96, width=128, num_frames=40, bg_velocity=(1.5, 0.5), seed=7,
              objects=(MovingObject(24, (30, 30), (2.0, 1.0)),))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    frames = render(SCENE)
    # a keyframe every 12 frames, so that clips seek; 2 B-frames, 3 references (x264 reorders)
    encode(root / "bframes", frames, codec="h264", bframes=2, refs=3, gop=12)
    # a phone video shot upright: coded landscape, display matrix -90 degrees
    encode(root / "sub" / "rotated", frames, codec="h264", bframes=2, gop=12, rotation=-90)
    return root


def _extract(corpus: Path, out: Path, frames: str, **kw) -> Path:
    cfg = ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=64, workers=0,
                        frames=frames, **kw)
    summary = run(cfg, log=lambda s: None)
    assert (summary["done"], summary["failed"]) == (2, 0)
    return out


@pytest.fixture(scope="module")
def both(corpus, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("sets")
    return _extract(corpus, out / "jpeg", "jpeg"), _extract(corpus, out / "none", "none")


CLIPS = [np.arange(0, 40, 4), np.arange(13, 40, 2), np.array([0, 1, 2, 35, 36, 39]),
         np.array([5]), np.array([39, 0, 20, 20])]  # the last: unsorted, repeated


def test_frames_from_source_equal_the_stored_frames(both, corpus):
    jpeg_set, none_set = both
    with open_shards(jpeg_set) as js, open_shards(none_set) as ns:
        assert ns.ids() == js.ids() == ["bframes", "rotated"]
        for vid in ns.ids():
            stored, source = js[vid], ns[vid]
            assert "frames" not in source._raws and "frames" in source and "frames" in source.keys()
            assert source.attrs["frames_storage"] == "none" and stored.attrs["frames_storage"] == "jpeg"
            assert source["frames"].shape == stored["frames"].shape and source["frames"].dtype == np.uint8
            exact = decode_video(source.frames_source, short_side=64, recover_distance=False).frames
            for idx in CLIPS:
                got = source["frames"][idx]
                # exactly what extraction decoded; the JPEG path is that plus q90's loss
                np.testing.assert_array_equal(got, exact[idx])
                # JPEG q90 of these sharp synthetic textures: 39.0 dB, mean |diff| 2.2, p99 8 levels
                err = got.astype(np.float64) - stored["frames"][idx]
                assert 10 * np.log10(255 ** 2 / np.mean(err ** 2)) > 37 and np.percentile(np.abs(err), 99) <= 10
            np.testing.assert_array_equal(source["frames"][10:20], exact[10:20])
            np.testing.assert_array_equal(source["frames"][-1], exact[-1])
            np.testing.assert_array_equal(source.read_frames([3, 7]), exact[[3, 7]])
    # the rotated video is stored upright: 64 wide as coded, 64 * 128 / 96 = 85 tall
    with open_shards(none_set) as ns:
        assert ns["rotated"]["frames"].shape == (40, 85, 64, 3)
        assert ns["rotated"].attrs["rotation"] == -90


def test_index_seeks_by_keyframe(corpus):
    index = build_index(str(corpus / "bframes.mp4"), 40)
    assert index.seekable and len(index.pts) == 40 and np.all(np.diff(index.pts) > 0)
    assert np.flatnonzero(index.keyframe).tolist() == [0, 12, 24, 36]


def test_fps_resampling_keeps_the_same_frames(corpus, tmp_path):
    out = _extract(corpus, tmp_path / "fps10", "none", fps=10.0)
    with open_shards(out) as ns:
        v = ns["bframes"]
        exact = decode_video(v.frames_source, short_side=64, fps=10.0, recover_distance=False).frames
        # 25 -> 10 fps: every other target falls halfway between two frames, a tie that only
        # the same timestamps and the same rule break the same way
        assert v.attrs["num_frames"] == len(exact) == 17 and v.attrs["native_num_frames"] == 40
        np.testing.assert_array_equal(v["frames"][:], exact)


def test_verify_passes_and_the_set_records_none(both):
    _, none_set = both
    with open_shards(none_set) as ns:
        assert ns.attrs["config"]["frames"] == "none"
        assert ns.nbytes("bframes")["frames"] == 0
        for vid in ns.ids():
            assert video_problems(ns, vid) == []


def test_moved_sources_are_found_under_source_root_and_a_missing_one_names_the_video(both, corpus, tmp_path):
    _, none_set = both
    moved = tmp_path / "moved"
    shutil.copytree(none_set, moved / "set")
    with open_shards(moved / "set") as ns:
        v = ns["rotated"]
        assert v.frames_source == str(corpus / "sub" / "rotated.mp4")
        expected = v["frames"][[0, 20]]
    shutil.copytree(corpus, moved / "videos")
    relocated = moved / "videos"
    original = corpus.with_name(corpus.name + "-away")
    corpus.rename(original)
    try:
        with open_shards(moved / "set") as ns:
            with pytest.raises(SourceMissing, match=r"video 'rotated': its source .*rotated\.mp4 is missing"):
                ns["rotated"]["frames"][0:4]
            assert isinstance(SourceMissing("x"), ShardReadError)
            assert any("source video missing" in why for _, why in video_problems(ns, "rotated"))
        from shards.__main__ import main as shards_cli

        assert shards_cli(["verify", str(moved / "set")]) == 1
        assert shards_cli(["verify", str(moved / "set"), "--source-root", str(relocated), "--workers", "2"]) == 0
        with open_shards(moved / "set", source_root=relocated) as ns:
            assert ns["rotated"].frames_source == str(relocated / "sub" / "rotated.mp4")
            np.testing.assert_array_equal(ns["rotated"]["frames"][[0, 20]], expected)
    finally:
        original.rename(corpus)


def test_a_shard_ref_carries_the_source_root_into_every_open(both, corpus, tmp_path):
    """`open_shards(ShardRef(path, root))` is `open_shards(path, root)`, and so is every reopening
    of the set it gives (a DataLoader worker's, by pickling)."""
    import pickle

    _, none_set = both
    relocated = tmp_path / "videos"
    shutil.copytree(corpus, relocated)
    ref = ShardRef(none_set, relocated)
    assert ref == ShardRef(str(none_set), str(relocated)) and str(ref) == str(none_set)
    assert ShardRef(none_set, "").source_root is None and ShardRef.of(ref) is ref
    with pytest.raises(TypeError, match="carries its source root"):
        open_shards(ref, source_root=relocated)
    with open_shards(ref) as ns:
        assert ns.ref == ref
        assert ns["rotated"].frames_source == str(relocated / "sub" / "rotated.mp4")
        again = pickle.loads(pickle.dumps(ns))
    with again:
        assert again.ref == ref and again["rotated"].frames_source == str(relocated / "sub" / "rotated.mp4")


def test_an_unreadable_source_is_a_read_error_naming_the_video(both, tmp_path):
    _, none_set = both
    broken = tmp_path / "broken"
    (broken / "sub").mkdir(parents=True)
    (broken / "bframes.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video any more")
    with open_shards(none_set, source_root=broken) as ns:
        with pytest.raises(ShardReadError, match="video 'bframes' frames .*cannot decode them from its source"):
            ns["bframes"]["frames"][0:2]


def test_the_flag_and_a_resume_with_the_other_storage_is_refused(both, corpus):
    from preprocess.extract import parse_args
    from shards.cli import CliError

    assert parse_args(["--dataset", "folder", "--frames", "none"]).frames == "none"
    assert parse_args(["--dataset", "folder"]).frames == "jpeg"
    _, none_set = both
    with pytest.raises(CliError, match="frames: 'none' there vs 'jpeg' now"):
        _extract(corpus, none_set, "jpeg")


def test_hdf5_sets_read_the_same_frames(both, corpus, tmp_path):
    _, none_set = both
    out = _extract(corpus, tmp_path / "h5", "none", format="hdf5")
    with open_shards(out) as hs, open_shards(none_set) as zs:
        assert hs.format == "hdf5" and hs.nbytes("bframes")["frames"] == 0
        np.testing.assert_array_equal(hs["bframes"]["frames"][5:30:4], zs["bframes"]["frames"][5:30:4])
        assert video_problems(hs, "rotated") == []


@pytest.mark.parametrize("name", ["hflip", "antitranspose"])
def test_mirrored_sources_read_as_extraction_stored_them(name, tmp_path):
    """A display matrix with a mirror (applied as FFmpeg's autorotate does at extraction) is
    applied the same way when a --frames none set decodes the source."""
    from tests.preprocess.test_inputs import MIRRORS, with_display_matrix

    root = tmp_path / "src"
    root.mkdir()
    plain = encode(tmp_path / "plain", render(SCENE), codec="h264", bframes=2, gop=12)
    with_display_matrix(plain, root / f"{name}.mp4", MIRRORS[name][0])
    cfg = ExtractConfig(dataset="folder", root=str(root), out=str(tmp_path / "none"), short_side=64,
                        workers=0, frames="none")
    assert run(cfg, log=lambda s: None)["done"] == 1
    expected = decode_video(str(root / f"{name}.mp4"), short_side=64).frames
    with open_shards(tmp_path / "none") as ds:
        v = ds[name]
        assert v.attrs["display_transform"] == MIRRORS[name][1]
        np.testing.assert_array_equal(v["frames"][[0, 13, 39]], expected[[0, 13, 39]])
