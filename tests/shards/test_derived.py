"""Arrays derived when read (schema 3): HOG from the stored frames, trajectories from the
stored flow. The tolerances are those the extractor's own tracker and HOG were held to."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from shards import open_shards, open_writer
from shards.derived import cell_hog, track
from shards.schema import encode
from shards.tracks import positions

from .helpers import make_arrays, video_attrs


def reference_hog(gray: np.ndarray) -> np.ndarray:
    """The extractor's HOG of schema 2 (preprocess/hog.py), written out pixel by pixel."""
    n, h, w = gray.shape
    hc, wc = h // 8, w // 8
    out = np.zeros((n, hc, wc, 9))
    for t in range(n):
        img = np.asarray(gray[t], np.float32)
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
        mag = np.hypot(gx, gy)[:hc * 8, :wc * 8]
        b = (np.degrees(np.arctan2(gy, gx)) % 180 // 20).astype(int)[:hc * 8, :wc * 8]
        for k in range(9):
            out[t, ..., k] = np.where(b == k, mag, 0).reshape(hc, 8, wc, 8).mean((1, 3))
    return out


def test_cell_hog_is_the_extractors_hog():
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.uniform(0, 255, (3, 40, 56)).astype(np.float32), (0, 0), 1.5)
    got, want = cell_hog(gray), reference_hog(gray)
    # cartToPolar's angle is good to ~0.3 deg: a pixel at a bin edge may land in the neighbour
    assert np.abs(got - want).sum() <= 0.002 * want.sum()
    assert np.abs(got - want).max() <= 0.05 * want.max()


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_hog_is_that_of_the_stored_frames(tmp_path, fmt):
    attrs = video_attrs(num_frames=6)
    arrays = make_arrays(attrs, seed=3)
    open_writer(tmp_path / "s", format=fmt).write_video("v", arrays, attrs)
    v = open_shards(tmp_path / "s")["v"]
    rows = encode("frames", arrays["frames"])
    luma = np.stack([cv2.imdecode(r, cv2.IMREAD_GRAYSCALE) for r in rows])
    np.testing.assert_array_equal(v["hog"][:], cell_hog(luma))
    np.testing.assert_array_equal(v["hog"][[4, 1]], cell_hog(luma[[4, 1]]))
    # the luma of the JPEG is the grey of its decoded RGB up to rounding: same histograms
    rgb_gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v["frames"][:]])
    ref = cell_hog(rgb_gray)
    assert np.abs(v["hog"][:] - ref).max() <= 0.05 * ref.max()


def test_track_uniform_flow_with_a_pan():
    """Compensated flow (1.5, -0.5) px everywhere, camera pan (2, 0): each step is the flow,
    points move by flow + pan, leave at the right edge, and the video's end stops them."""
    T, H, W, L, stride = 10, 32, 64, 4, 4
    flow = np.zeros((T - 1, H // stride, W // stride, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.5, -0.5
    hom = np.tile(np.eye(3, dtype=np.float32), (T - 1, 1, 1))
    hom[:, 0, 2] = 2.0
    starts = np.arange(T)
    traj, valid, pos = track(flow, hom, 0, starts, T, H, W, L, stride)
    x0 = (np.arange(W // 8) * 8 + 3.5)[None, None, :]
    y0 = (np.arange(H // 8) * 8 + 3.5)[None, :, None]
    for l in range(L):
        inside = (x0 + 3.5 * (l + 1) <= W - 1) & (y0 - 0.5 * (l + 1) >= 0)
        in_video = (starts + l <= T - 2)[:, None, None]
        assert np.array_equal(valid[..., l], inside & in_video), l
    assert np.allclose(traj[valid], [1.5, -0.5]) and np.all(traj[~valid] == 0)
    # positions: the start at the cell centre, then flow + pan per valid step
    np.testing.assert_allclose(pos, positions(traj, valid, hom), atol=1e-4)
    assert np.allclose(pos[0, 0, 0, 1], (3.5 + 3.5, 3.5 - 0.5))
    # a window of the flow gives the same tracks as the whole, and so does a box of cells
    part, part_valid, _ = track(flow[3:9], hom[3:9], 3, np.array([3, 5]), T, H, W, L, stride)
    np.testing.assert_array_equal(part, traj[[3, 5]])
    np.testing.assert_array_equal(part_valid, valid[[3, 5]])
    box, box_valid, box_pos = track(flow, hom, 0, starts, T, H, W, L, stride, rows=(1, 3), cols=(2, 5))
    np.testing.assert_array_equal(box, traj[:, 1:3, 2:5])
    np.testing.assert_array_equal(box_valid, valid[:, 1:3, 2:5])
    np.testing.assert_array_equal(box_pos, pos[:, 1:3, 2:5])
    # a loader's resampled grid (`cells`): the picked points' tracks, bit for bit
    r, c = np.array([0, 2, 3]), np.array([1, 2, 6, 7])
    got = track(flow, hom, 0, starts, T, H, W, L, stride, cells=(r, c))
    for g, want in zip(got, (traj, valid, pos)):
        np.testing.assert_array_equal(g, want[:, r][:, :, c])


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_object_tracked_through_the_shards_while_camera_pans(tmp_path, fmt):
    """tests/preprocess/test_trajectories.py's tolerance (endpoint error < 1 px after L steps on
    the object, every object point valid), now on trajectories derived from the stored flow."""
    from preprocess.config import ExtractConfig
    from preprocess.synthetic import MovingObject, Scene, encode as encode_video, render
    from preprocess.video import extract_video
    from tests.preprocess.test_trajectories import endpoint_errors, object_points

    L = 6
    scene = Scene(height=128, width=160, num_frames=12, bg_velocity=(2.0, 1.0),
                  objects=(MovingObject(64, (40, 24), (-1.5, 0.5)),), seed=5)
    path = encode_video(tmp_path / "panobj", render(scene), codec="h264")
    cfg = ExtractConfig(short_side=128, traj_len=L)
    arrays, attrs = extract_video(str(path), cfg)
    assert (attrs["height"], attrs["width"]) == (128, 160)
    open_writer(tmp_path / "s", format=fmt).write_video("v", arrays, {**attrs, "source": str(path)})
    v = open_shards(tmp_path / "s")["v"]
    traj, valid = v["traj"][:], v["traj_valid"][:]
    pos = positions(traj, valid, v["homography"][:])
    starts = range(0, 12 - L)
    assert all(valid[t][object_points(scene, t, 12)].all() for t in starts)
    assert endpoint_errors(scene, pos, starts).max() < 1.0
    steps = np.concatenate([traj[t][object_points(scene, t, 12)] for t in starts])
    assert np.allclose(np.median(steps.reshape(-1, 2), axis=0), np.subtract((-1.5, 0.5), (2.0, 1.0)), atol=0.1)
    np.testing.assert_array_equal(v["traj"][[2, 4]], traj[[2, 4]])


@pytest.mark.parametrize("rows, cols", [((0, 8), (0, 10)), ((2, 5), (3, 7)), ((0, 1), (9, 10)), ((7, 8), (0, 3))])
def test_hog_of_a_box_is_the_box_of_the_hog(rows, cols):
    from shards.derived import cell_hog_box

    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.uniform(0, 255, (2, 64, 80)).astype(np.float32), (0, 0), 1.0).astype(np.uint8)
    want = cell_hog(gray)[:, rows[0]:rows[1], cols[0]:cols[1]]
    np.testing.assert_allclose(cell_hog_box(gray, rows, cols), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows, cols", [((0, 8), (0, 10)), ((2, 5), (3, 7)), ((7, 8), (9, 10))])
def test_uint8_gradients_are_the_float_sobel(rows, cols):
    """Grey uint8 frames take cv2.spatialGradient's int16 Sobel: bit for bit the float Sobel."""
    from shards.derived import cell_hog_box

    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (3, 64, 80), dtype=np.uint8)
    gray[1] = cv2.GaussianBlur(gray[1], (0, 0), 2.0)
    np.testing.assert_array_equal(cell_hog_box(gray, rows, cols), cell_hog_box(gray.astype(np.float32), rows, cols))


@pytest.mark.parametrize("rows, cols", [((0, 8), (0, 10)), ((2, 5), (3, 7)), ((7, 8), (9, 10))])
def test_frames_stacked_in_groups_give_each_frames_own_hog(rows, cols, monkeypatch):
    """cell_hog_box stacks small frames for single calls: the same numbers as frame by frame."""
    import shards.derived as derived

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (9, 64, 80), dtype=np.uint8)
    grouped = derived.cell_hog_box(gray, rows, cols)
    monkeypatch.setattr(derived, "STACK_PIXELS", 1)  # one frame per group
    np.testing.assert_array_equal(grouped, derived.cell_hog_box(gray, rows, cols))
    np.testing.assert_array_equal(grouped[4:5], derived.cell_hog_box(gray[4:5], rows, cols))


def as_schema2(path, video_id: str, arrays: dict, traj, valid, hog) -> None:
    """Turn a freshly written HDF5 set into what schema 2 wrote: traj / traj_valid / hog stored,
    flow in 1/6 px steps, version 2 in the root and video attrs."""
    import json

    import h5py

    from shards.hdf5_store import ROOT_FILE, _dataset_kwargs
    from shards.schema import ARRAYS_V2, ROOT_KEY

    root = json.loads((path / ROOT_FILE).read_text())
    root[ROOT_KEY]["schema_version"] = 2
    (path / ROOT_FILE).write_text(json.dumps(root))
    with h5py.File(path / "videos" / f"{video_id}.h5", "r+") as f:
        f.attrs[ROOT_KEY] = json.dumps(root)
        f.attrs["attrs"] = json.dumps({**json.loads(f.attrs["attrs"]), "schema_version": 2})
        del f["flow"]
        for name, values in {"flow": arrays["flow"], "traj": traj, "traj_valid": valid, "hog": hog}.items():
            data = encode(name, values, ARRAYS_V2[name])
            f.create_dataset(name, data=data, **_dataset_kwargs(name, data.shape))


def test_a_schema2_set_is_read_as_stored(tmp_path):
    """Schema 2's stored traj / hog are what a reader of it gets (nothing is derived), its flow
    is dequantized with its own 1/6 px step; writing more videos into it is refused."""
    from shards.schema import ARRAYS_V2, SchemaVersionError, decode

    attrs = video_attrs(num_frames=8)
    arrays = make_arrays(attrs, seed=4)
    rng = np.random.default_rng(4)
    shape = (8, 8, 10, attrs["traj_len"])
    traj = rng.uniform(-20, 20, shape + (2,)).astype(np.float32)
    valid = rng.random(shape) < 0.7
    hog = rng.uniform(0, 50, (8, 8, 10, 9)).astype(np.float32)
    open_writer(tmp_path / "s", format="hdf5").write_video("v", arrays, attrs)
    as_schema2(tmp_path / "s", "v", arrays, traj, valid, hog)
    v = open_shards(tmp_path / "s")["v"]
    stored = lambda name, x: decode(name, encode(name, x, ARRAYS_V2[name]), ARRAYS_V2[name])  # noqa: E731
    np.testing.assert_array_equal(v["traj"][[1, 5]], stored("traj", traj)[[1, 5]])
    np.testing.assert_array_equal(v["traj_valid"][:], valid)
    np.testing.assert_array_equal(v["hog"][2:6], stored("hog", hog)[2:6])
    np.testing.assert_array_equal(v["flow"][:], stored("flow", arrays["flow"]))
    assert np.abs(v["flow"][:] - arrays["flow"]).max() <= 1 / 12 + 1e-6  # its half step, not 1/8
    t2, valid2, _ = v.tracks(np.array([1, 5]), traj_len=2)  # a shorter length: the stored steps cut
    np.testing.assert_array_equal(t2, stored("traj", traj)[[1, 5]][..., :2, :])
    np.testing.assert_array_equal(valid2, valid[[1, 5]][..., :2])
    r, c = np.array([1, 2, 5]), np.array([0, 3])
    t3, valid3, _ = v.tracks(np.array([1, 5]), traj_len=2, cells=(r, c))  # picked cells of the stored steps
    np.testing.assert_array_equal(t3, t2[:, r][:, :, c])
    np.testing.assert_array_equal(valid3, valid2[:, r][:, :, c])
    with pytest.raises(ValueError, match="stores 4 trajectory steps, 7 asked"):
        v.tracks(np.array([1]), traj_len=7)
    box = v.hog_box(np.array([2, 3]), (1, 4), (2, 5))
    np.testing.assert_array_equal(box, stored("hog", hog)[2:4, 1:4, 2:5])
    with pytest.raises(SchemaVersionError, match="read by this motion-mae but not written"):
        open_writer(tmp_path / "s", format="hdf5")


def test_bilinear_sample_equals_the_fancy_index_formula():
    """np.take gathers (the faster path) give bit-identical samples to indexing the rows."""
    from shards.tracks import bilinear_sample

    rng = np.random.default_rng(3)
    field = rng.normal(size=(5, 7, 9, 3)).astype(np.float32)
    frame = np.array([0, 4, 2])
    p = rng.uniform(-2, 11, size=(3, 4, 6, 2))  # some outside: clamped to the border
    x, y = np.clip(p[..., 0], 0, 8), np.clip(p[..., 1], 0, 6)
    x0, y0 = np.minimum(x.astype(np.intp), 7), np.minimum(y.astype(np.intp), 5)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    i00 = frame.reshape(-1, 1, 1) * 63 + y0 * 9 + x0
    flat = field.reshape(-1, 3)
    want = ((flat[i00] * (1 - fx) + flat[i00 + 1] * fx) * (1 - fy)
            + (flat[i00 + 9] * (1 - fx) + flat[i00 + 10] * fx) * fy)
    np.testing.assert_array_equal(bilinear_sample(field, frame, p), want)
    # float32 weights and sums (the loader's HOG along tracks): within float32 rounding
    fast = bilinear_sample(field, frame, p, np.float32)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, want, rtol=1e-6, atol=1e-6)
