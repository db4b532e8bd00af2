"""Write with both formats, read back the same values (within quantization)."""
from __future__ import annotations

import numpy as np
import pytest

from shards import ARRAYS, open_shards, open_writer
from shards.schema import DERIVED, SCHEMA_VERSION, STORED, dims_from_attrs

from .helpers import make_arrays, video_attrs

FORMATS = ["zarr", "hdf5"]


def assert_close(name: str, got: np.ndarray, want: np.ndarray) -> None:
    spec = ARRAYS[name]
    assert got.dtype == np.dtype(spec.dtype), name
    assert got.shape == want.shape, name
    if spec.transform == "jpeg":
        mse = np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-12)) > 35, (name, mse)
    elif spec.transform == "sqrt":  # step in sqrt(v) is scale: |dv| <= sqrt(v) * scale + (scale/2)^2
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        assert (err <= np.sqrt(want) * spec.scale + spec.scale ** 2 / 4 + 1e-5).all(), name
    elif spec.dtype in ("bool", "uint8"):
        np.testing.assert_array_equal(got, want, err_msg=name)
    elif spec.stored_dtype == "float16":
        np.testing.assert_allclose(got, want, rtol=2 ** -11, atol=0, err_msg=name)
    elif spec.stored_dtype == "float32":
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:  # integer quantization: round to nearest
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        assert err.max(initial=0) <= spec.scale / 2 + 1e-6, (name, err.max())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [dict(num_frames=9, height=64, width=80),
                                  dict(num_frames=7, height=100, width=138, flow_stride=4),
                                  dict(num_frames=1, height=32, width=40)],
                         ids=["small", "odd", "T1"])
def test_roundtrip(tmp_path, fmt, size):
    attrs = video_attrs(**size, note={"nested": [1, 2]})
    arrays = make_arrays(attrs, seed=1)
    w = open_writer(tmp_path / "s", format=fmt, config={"flow": "dis"})
    w.write_video("vid_a", arrays, attrs)
    w.finalize()
    with open_shards(tmp_path / "s") as ds:
        assert ds.format == fmt
        assert ds.ids() == ["vid_a"] and len(ds) == 1 and "vid_a" in ds and list(ds) == ["vid_a"]
        assert ds.attrs["config"] == {"flow": "dis"}
        assert ds.attrs["motion_mae"]["schema_version"] == SCHEMA_VERSION
        v = ds["vid_a"]
        assert v.attrs["schema_version"] == SCHEMA_VERSION and v.attrs["complete"] is True
        assert v.attrs["note"] == {"nested": [1, 2]}
        assert v.keys() == list(ARRAYS)
        for name in STORED:
            lazy = v[name]
            assert lazy.shape == arrays[name].shape and len(lazy) == arrays[name].shape[0]
            assert lazy.dtype == np.dtype(ARRAYS[name].dtype)
            assert_close(name, np.asarray(lazy), arrays[name])
        dims = dims_from_attrs(v.attrs)
        for name in DERIVED:  # computed when read: values in tests/shards/test_derived.py
            got = v[name][:]
            assert got.shape == v[name].shape == ARRAYS[name].shape(dims), name
            assert got.dtype == np.dtype(ARRAYS[name].dtype), name
    if size["num_frames"] == 1:
        assert arrays["flow"].shape[0] == 0 and arrays["homography"].shape == (0, 3, 3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_indexing_matches_numpy(tmp_path, fmt):
    attrs = video_attrs(num_frames=20)
    arrays = make_arrays(attrs, seed=2)
    open_writer(tmp_path / "s", format=fmt).write_video("v", arrays, attrs)
    v = open_shards(tmp_path / "s")["v"]
    for name in ("frames", "traj", "homography_ok"):
        ref = np.asarray(v[name])
        keys = [slice(4, 12), slice(None, None, 3), slice(15, 2, -2), 5, -1, (slice(2, 6), 3),
                (Ellipsis, 0), (slice(1, 3), slice(None), 2), np.array([7, 2, 2, -1]),
                [0, 1, 4], np.arange(len(ref)) % 2 == 0, slice(30, 40), (3, None)]
        for key in keys:
            if isinstance(key, tuple) and sum(k not in (None, Ellipsis) for k in key) > ref.ndim:
                continue
            got = v[name][key]
            np.testing.assert_array_equal(got, ref[key], err_msg=f"{name}[{key!r}]")
        with pytest.raises(IndexError):
            v[name][len(ref) + 1]


def test_time_slice_reads_only_its_chunks(tmp_path, monkeypatch):
    """A 4-frame read of a 24-frame zarr video fetches about 4/24 of the frames shard."""
    import zarr

    import shards.zarr_store as zs

    attrs = video_attrs(num_frames=24, height=64, width=80)
    arrays = make_arrays(attrs, seed=3)
    open_writer(tmp_path / "s", format="zarr").write_video("v", arrays, attrs)
    shard = tmp_path / "s" / "videos" / "v" / "frames" / "c" / "0" / "0"  # frames are (T, bytes) on disk
    shard_size = shard.stat().st_size

    read = []

    class CountingStore(zarr.storage.WrapperStore):
        async def get(self, key, prototype, byte_range=None):
            buf = await self._store.get(key, prototype, byte_range)
            if buf is not None and key.startswith("videos/v/frames/c/"):
                read.append(len(buf))
            return buf

    make_store = zs.make_store
    monkeypatch.setattr(zs, "make_store", lambda path, read_only: CountingStore(make_store(path, read_only)))
    v = open_shards(tmp_path / "s")["v"]
    np.testing.assert_array_equal(v["frames"][10:14], np.asarray(v["frames"])[10:14])
    read.clear()
    v["frames"][10:14]
    print(f"\nread {sum(read)} of {shard_size} shard bytes in {len(read)} requests")
    assert 0 < sum(read) < 6 / 24 * shard_size + 1024


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_refuses_bad_input(tmp_path, fmt):
    w = open_writer(tmp_path / "s", format=fmt)
    attrs = video_attrs()
    good = make_arrays(attrs)
    for bad, match in [
        ({k: v for k, v in good.items() if k != "flow"}, "missing"),
        ({**good, "extra": good["flow"]}, "unknown"),
        ({**good, "hog": np.zeros((9, 8, 10, 9), np.float32)}, r"\['hog'\] are derived when read"),
        ({**good, "flow": good["flow"][:-1]}, "flow: shape"),
        ({**good, "mv_valid": good["mv_valid"].astype(np.uint8)}, "expected bool"),
        ({**good, "homography": np.where(np.eye(3, dtype=bool), np.nan, good["homography"])}, "non-finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            w.write_video("v", bad, attrs)
    with pytest.raises(ValueError, match="lack"):
        w.write_video("v", good, {k: v for k, v in attrs.items() if k != "traj_len"})
    for bad_id in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid video id"):
            w.write_video(bad_id, good, attrs)
    assert w.done_ids() == set()


def test_jpeg_frames_decode_to_the_same_rgb_with_or_without_imread_color_rgb(monkeypatch):
    """OpenCV >= 4.11 lets libjpeg-turbo write RGB (IMREAD_COLOR_RGB); older ones decode BGR and
    convert: the same levels, channel order checked on a frame with one strong channel each."""
    import cv2

    from shards.schema import _jpeg_decode, _jpeg_encode

    frames = np.zeros((3, 32, 48, 3), np.uint8)
    for c in range(3):
        frames[c, :, :, c] = 200                                # red, green, blue frames
    frames[:, 8:24, 8:40] += np.arange(32, dtype=np.uint8)[None, None, :, None]
    rows = _jpeg_encode(frames)
    got = _jpeg_decode(rows)
    assert [int(np.argmax(f.reshape(-1, 3).mean(0))) for f in got] == [0, 1, 2]
    if hasattr(cv2, "IMREAD_COLOR_RGB"):
        monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB")
        np.testing.assert_array_equal(_jpeg_decode(rows), got)
