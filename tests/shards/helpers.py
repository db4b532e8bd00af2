"""Arrays of the schema's shapes with values in range, known by construction."""
from __future__ import annotations

import numpy as np

from shards.schema import ARRAYS, dims_for


def video_attrs(num_frames=9, height=64, width=80, traj_len=4, flow_stride=2, **extra) -> dict:
    return {
        "source": "synthetic.mp4", "fps": 25.0, "height": height, "width": width,
        "source_height": height * 2, "source_width": width * 2, "num_frames": num_frames,
        "codec": "h264", "traj_len": traj_len, "flow_stride": flow_stride, **extra,
    }


def as_stored(name: str, values: np.ndarray) -> np.ndarray:
    """What a reader returns for `values`: through the schema's quantization and back."""
    from shards.schema import decode, encode

    return decode(name, encode(name, values))


def smooth_frames(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a textured pattern (preprocess.synthetic.texture)."""
    from preprocess.synthetic import texture

    t, h, w, c = shape
    tex = texture(h + t, w, seed)
    return np.stack([np.repeat(tex[i:i + h, :, None], c, axis=2) for i in range(t)]).astype(np.uint8)


def make_arrays(attrs: dict, seed: int = 0, frames: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Random arrays in each array's representable range, reader dtypes."""
    rng = np.random.default_rng(seed)
    dims = dims_for(attrs["num_frames"], attrs["height"], attrs["width"], attrs["traj_len"],
                    attrs["flow_stride"])
    out = {}
    for name, spec in ARRAYS.items():
        if spec.derived:  # computed when read, never written
            continue
        shape = spec.shape(dims)
        if spec.dtype == "bool":
            out[name] = rng.random(shape) < 0.7
        elif spec.transform == "jpeg":  # smooth content: what JPEG is for
            out[name] = smooth_frames(shape, seed)
        elif name == "homography":
            h = np.eye(3, dtype=np.float32) + rng.normal(0, 0.01, shape).astype(np.float32)
            out[name] = h.astype(np.float32)
        elif name == "hog":
            out[name] = rng.uniform(0, 50, shape).astype(np.float32)
        elif name == "mv":
            out[name] = rng.uniform(-30, 30, shape).astype(np.float32)
        else:  # flow, traj: clipped to +-20 px before storing
            out[name] = rng.uniform(-20, 20, shape).astype(np.float32)
    if frames is not None:
        out["frames"] = frames
    return out


def write_videos(path: str, fmt: str, video_ids: list[str], seed: int) -> None:
    """A writer process: reopen the existing root (no config) and write its own videos."""
    from shards import open_writer

    w = open_writer(path, format=fmt)
    for k, video_id in enumerate(video_ids):
        attrs = video_attrs(num_frames=5 + k)
        w.write_video(video_id, make_arrays(attrs, seed=seed + k), attrs)
