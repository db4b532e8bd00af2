"""The direct shard-file read returns what zarr returns, checks the crc32c, and declines
layouts it does not read (zarr reads those)."""
import numpy as np
import pytest
import zarr

from shards.shard_file import read_frames
from shards.zarr_store import ZarrReader, codecs_for


def _array(tmp_path, name, values, per_chunk, per_shard):
    store = zarr.storage.LocalStore(str(tmp_path))
    arr = zarr.create_array(store, name=name, shape=values.shape, dtype=values.dtype,
                            chunks=(per_chunk,) + values.shape[1:], shards=(per_shard,) + values.shape[1:],
                            compressors=codecs_for(name))
    arr[:] = values
    return arr


@pytest.mark.parametrize("name,dtype,per_chunk,per_shard", [
    ("frames", np.uint8, 1, 20), ("flow", np.int8, 4, 12), ("homography", np.float32, 8, 24)])
def test_read_frames_equals_zarr(tmp_path, name, dtype, per_chunk, per_shard):
    rng = np.random.default_rng(0)
    values = (rng.normal(size=(30, 5, 3)) * 40).astype(dtype)  # 30 frames: the last chunk and shard are partial
    arr = _array(tmp_path, name, values, per_chunk, per_shard)
    for frames in [np.arange(30), np.arange(2, 29, 4), np.array([0, 11, 12, 29]), np.arange(10, 14)]:
        got = read_frames(arr, frames)
        assert got is not None and got.dtype == values.dtype
        np.testing.assert_array_equal(got, values[frames])
        np.testing.assert_array_equal(ZarrReader.read(arr, frames), values[frames])
    np.testing.assert_array_equal(ZarrReader.read(arr, slice(3, 27, 3)), values[3:27:3])


def test_flipped_byte_fails_the_checksum(tmp_path):
    values = np.arange(4 * 64, dtype=np.uint8).reshape(4, 64)
    arr = _array(tmp_path, "frames", values, 1, 4)
    path = tmp_path / "frames" / "c" / "0" / "0"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside chunk 0 (the index is at the end)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        read_frames(arr, np.arange(4))


def test_declines_what_it_does_not_read(tmp_path):
    unsharded = zarr.create_array(zarr.storage.LocalStore(str(tmp_path)), name="plain", shape=(4, 3),
                                  dtype=np.uint8, chunks=(1, 3))
    assert read_frames(unsharded, np.arange(4)) is None
    arr = _array(tmp_path, "frames", np.ones((4, 8), np.uint8), 1, 4)
    (tmp_path / "frames" / "c" / "0" / "0").unlink()  # zarr's store decides what a lost file means
    assert read_frames(arr, np.arange(4)) is None
