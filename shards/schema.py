"""The shard schema: the one place that says what is stored, how, and what it means.

Both sides use it: `preprocess` quantizes arrays with `encode`, `shards` readers dequantize
with `decode` and refuse versions they do not know. `docs/shards.md` is the prose twin of
this file; `tests/shards/test_schema.py` checks that the two agree.

Shape alphabet: T frames, H x W stored pixels, Hc = H // 8, Wc = W // 8 cells,
h x w the stored flow grid (H // flow_stride, W // flow_stride), L trajectory steps.

Conventions (also written into every shard set's attrs under "conventions"):
- Coordinates are pixels of the *stored* resolution, pixel centres at integers
  (OpenCV convention), x before y in every last axis of size 2.
- Every displacement is *forward*: where content at time t is at time t+1.
- `mv[t]` is the displacement of content from frame t-1 to frame t, on the cell grid of
  frame t (the codec's destination blocks); `mv[0]` is never valid.
- `flow[t]` is the camera-compensated displacement from frame t to frame t+1, on frame
  t's grid; `homography[t]` maps pixel coordinates of frame t to frame t+1, so the
  camera-inclusive flow at p is `flow[t](p) + (H p - p)`.
- `traj[t, i, j, l]` is the l-th camera-compensated step of the point that starts at the
  centre of cell (i, j) of frame t, i.e. at (8 j + 3.5, 8 i + 3.5). The point itself moves
  with its actual motion: p_{l+1} = homography[t + l](p_l + traj[t, i, j, l]).
  `traj_valid[t, i, j, l]` is False once the point has left the frame or the video ended.
- `hog[t, i, j, b]` is the mean Sobel gradient magnitude (grey levels 0-255 per pixel)
  of cell (i, j) whose unsigned orientation atan2(gy, gx) mod 180 deg (y pointing down)
  falls in [20 b, 20 b + 20) degrees. No block normalization.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import cv2
import numpy as np

from .errors import SchemaVersionError

# Names a video id never takes: the store's own file beside the videos' groups (zarr's group
# document `zarr.json`; a chunk key `c/...` lives inside an array, so a group may be named `c`).
# Compared case-insensitively: a case-insensitive file system holds only one of ZARR.JSON and
# zarr.json. Ids starting with `.` (hidden, and the writers' temporary files) are refused too.
RESERVED_IDS = frozenset({"zarr.json"})


def video_id_problem(video_id) -> str | None:
    """Why `video_id` cannot name a video in a shard set, or None when it can."""
    if (not isinstance(video_id, str) or not video_id or video_id.startswith(".")
            or any(c in video_id for c in "/\\") or not video_id.isprintable()):
        return (f"invalid video id {video_id!r}: need a non-empty printable name without '/' or '\\' "
                f"that does not start with '.'")
    if video_id.casefold() in RESERVED_IDS:
        return f"invalid video id {video_id!r}: the name of a file of the store ({', '.join(sorted(RESERVED_IDS))})"
    return None


# 2: every chunk carries a checksum (zarr crc32c, hdf5 fletcher32) and zarr writes every
# chunk, even all zeros, so that a missing chunk file is an error, not fill values.
# 3: traj, traj_valid and hog are no longer stored but derived when read (shards/derived.py),
# flow is stored in 1/4 px steps (was 1/6). Version 2 sets are still read as they are (their
# stored traj / hog are used: ARRAYS_V2); version 1 sets are refused with the message to
# re-extract (docs/shards.md, "Versions").
SCHEMA_VERSION = 3
SUPPORTED_VERSIONS = (2, 3)

CELL = 8  # pixels per cell side: motion vectors, trajectories and HOG share this grid
HOG_BINS = 9
FLOW_CLIP = 20.0  # px, flow and trajectory steps are clipped to +-FLOW_CLIP before storing
# Frames are stored as JPEG: on the demo corpus 8.6x smaller than raw uint8 + zstd and
# decoded at >1500 frames/s per core (docs/benchmarks.md); q90 keeps 36-47 dB PSNR.
JPEG_QUALITY = 90

CONVENTIONS = {
    "units": "pixels of the stored resolution",
    "pixel_centres": "integers (OpenCV convention); cell (i, j) centre = (8j+3.5, 8i+3.5)",
    "vector_order": "x before y",
    "displacement": "forward (where content at t is at t+1)",
    "mv": "mv[t] = displacement of content from frame t-1 to frame t, per frame of "
          "distance, on frame t's 8x8 cell grid; mv[0] is invalid",
    "flow": "flow[t] = camera-compensated forward flow t -> t+1 on frame t's grid, "
            "downsampled by attrs.flow_stride (values stay in stored pixels)",
    "homography": "homography[t] maps frame t pixel coordinates to frame t+1",
    "traj": "traj[t,i,j,l] = camera-compensated step l of the point starting at cell (i,j) "
            "of frame t; positions advance by the actual motion p' = H(p + step)",
    "hog": "mean Sobel magnitude per pixel in 9 unsigned 20-degree bins, y down, "
           "no block normalization",
}


@dataclass(frozen=True)
class ArraySpec:
    """How one array is stored on disk and what the reader returns."""

    name: str
    dims: tuple[str, ...]
    dtype: str          # dtype the reader returns
    stored_dtype: str   # dtype on disk
    scale: float = 1.0  # value = stored * scale
    units: str = ""
    doc: str = ""
    frame_chunk: int = 1  # frames per chunk along T: a clip read touches only its frames
    # how stored values map to reader values: "linear" (value = stored * scale),
    # "sqrt" (value = (stored * scale) ** 2: finer steps where values are small),
    # "jpeg" (one JPEG per frame, zero-padded to a common length along the last axis),
    # "derived" (not stored: computed when read from the arrays in `source`, shards/derived.py)
    transform: str = "linear"
    source: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        return self.transform == "derived"

    def shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(dims[d] if isinstance(d, str) and d in dims else int(d) for d in self.dims)


ARRAYS: dict[str, ArraySpec] = {
    s.name: s
    for s in [
        ArraySpec("frames", ("T", "H", "W", 3), "uint8", "uint8", 1.0, "RGB 0-255",
                  f"decoded frames at the stored resolution, stored as JPEG quality {JPEG_QUALITY}",
                  transform="jpeg"),
        ArraySpec("mv", ("T", "Hc", "Wc", 2), "float32", "int16", 1 / 16, "px/frame",
                  "codec motion vectors, per frame of reference distance", 8),
        ArraySpec("mv_valid", ("T", "Hc", "Wc"), "bool", "bool", 1.0, "",
                  "cell covered by an inter-predicted block", 8),
        ArraySpec("flow", ("T-1", "h", "w", 2), "float32", "int8", 1 / 4, "px",
                  "camera-compensated forward flow, clipped to +-20 px", 4),
        ArraySpec("homography", ("T-1", 3, 3), "float32", "float32", 1.0, "",
                  "camera motion frame t -> t+1 (pixel coordinates)", 64),
        ArraySpec("homography_ok", ("T-1",), "bool", "bool", 1.0, "",
                  "False where too few matches: identity used", 64),
        ArraySpec("traj", ("T", "Hc", "Wc", "L", 2), "float32", "-", 1.0, "px",
                  "camera-compensated per-step trajectory deltas, tracked on the stored flow "
                  "when read", transform="derived", source=("flow", "homography")),
        ArraySpec("traj_valid", ("T", "Hc", "Wc", "L"), "bool", "-", 1.0, "",
                  "step inside the frame and the video", transform="derived",
                  source=("flow", "homography")),
        ArraySpec("hog", ("T", "Hc", "Wc", HOG_BINS), "float32", "-", 1.0, "grey levels per pixel",
                  "per-cell orientation histograms of the stored frames' luma, computed when read",
                  transform="derived", source=("frames",)),
    ]
}

STORED = tuple(n for n, s in ARRAYS.items() if not s.derived)
DERIVED = tuple(n for n, s in ARRAYS.items() if s.derived)

# Schema 2 stored traj / traj_valid / hog and flow in 1/6 px steps: how its sets are read.
ARRAYS_V2: dict[str, ArraySpec] = {
    **ARRAYS,
    "flow": replace(ARRAYS["flow"], scale=1 / 6),
    "traj": ArraySpec("traj", ("T", "Hc", "Wc", "L", 2), "float32", "int8", 1 / 6, "px",
                      "camera-compensated per-step trajectory deltas", 4),
    "traj_valid": ArraySpec("traj_valid", ("T", "Hc", "Wc", "L"), "bool", "bool", 1.0, "",
                            "step inside the frame and the video", 4),
    "hog": ArraySpec("hog", ("T", "Hc", "Wc", HOG_BINS), "float32", "uint8", 1 / 16,
                     "grey levels per pixel", "per-cell orientation histograms, sqrt-quantized "
                     "(0 to 254, relative step ~1/(16 sqrt(v)))", 4, transform="sqrt"),
}


def arrays_for(version) -> dict[str, ArraySpec]:
    """The array specs a set of schema `version` was written with (a supported version)."""
    return ARRAYS_V2 if version == 2 else ARRAYS


# How a video keeps its frames (video attr "frames_storage"; absent: "jpeg"): "jpeg" stores the
# `frames` array; "none" stores no frames, and the reader decodes them from the source video
# (`extract.py --frames none`, shards/source_frames.py; docs/shards.md).
FRAMES_STORAGES = ("jpeg", "none")


def frames_storage(attrs: dict) -> str:
    """"jpeg" or "none" for a video's attrs (sets written before the attr existed: "jpeg")."""
    storage = attrs.get("frames_storage", "jpeg")
    if storage not in FRAMES_STORAGES:
        raise ValueError(f"frames_storage {storage!r} is not one of {FRAMES_STORAGES}")
    return storage


def stored_arrays(attrs: dict) -> list[str]:
    """Names of the arrays a schema-3 video with these attrs stores (STORED, but not
    `frames` when its frames are decoded from the source)."""
    return [n for n in STORED if not (n == "frames" and frames_storage(attrs) == "none")]


# Attributes every video carries (readers may rely on them).
REQUIRED_VIDEO_ATTRS = (
    "source", "fps", "height", "width", "source_height", "source_width",
    "num_frames", "codec", "schema_version",
)


def dims_for(num_frames: int, height: int, width: int, traj_len: int, flow_stride: int) -> dict[str, int]:
    """Named dimension sizes of one video."""
    return {
        "T": num_frames,
        "T-1": max(num_frames - 1, 0),
        "H": height,
        "W": width,
        "Hc": height // CELL,
        "Wc": width // CELL,
        "h": height // flow_stride,
        "w": width // flow_stride,
        "L": traj_len,
    }


def encode(name: str, values: np.ndarray, spec: ArraySpec | None = None) -> np.ndarray:
    """Quantize an array to its stored form (round to nearest, saturate); `spec` defaults to
    this version's."""
    spec = spec or ARRAYS[name]
    if spec.derived:
        raise ValueError(f"{name} is derived when read from {spec.source}, never stored")
    if spec.transform == "jpeg":
        return _jpeg_encode(np.asarray(values))
    if spec.stored_dtype == spec.dtype or spec.stored_dtype in ("bool", "float16", "float32"):
        return np.asarray(values).astype(spec.stored_dtype)
    v = np.asarray(values, dtype=np.float64)
    if spec.transform == "sqrt":
        v = np.sqrt(np.maximum(v, 0.0))
    info = np.iinfo(spec.stored_dtype)
    return np.clip(np.rint(v / spec.scale), info.min, info.max).astype(spec.stored_dtype)


def decode(name: str, stored: np.ndarray, spec: ArraySpec | None = None) -> np.ndarray:
    """Dequantize a stored array to the dtype and units the reader returns; `spec` defaults to
    this version's (`arrays_for(version)[name]` reads an older set)."""
    spec = spec or ARRAYS[name]
    out = np.asarray(stored)
    if spec.transform == "jpeg":
        return _jpeg_decode(out)
    if spec.scale != 1.0:
        # in place: the same float32 products without two more temporaries (a clip's
        # 62-frame flow read spent 8 of its 11 ms here)
        v = out.astype(np.float32)
        v *= np.float32(spec.scale)
        if spec.transform == "sqrt":
            v *= v
        return v.astype(spec.dtype, copy=False)
    return out.astype(spec.dtype, copy=False)


def _jpeg_encode(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB uint8 -> (T, N) uint8: one JPEG per row, zero-padded to the longest.

    The padding costs nothing on disk (zstd squeezes the zeros) and keeps time as the
    first axis with one chunk per frame, like every other array.
    """
    # cvtColor, not f[..., ::-1] made contiguous: numpy copies a reversed axis element by element
    blobs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                          [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].ravel() for f in frames]
    out = np.zeros((len(blobs), max((len(b) for b in blobs), default=0)), np.uint8)
    for row, blob in zip(out, blobs):
        row[:len(blob)] = blob
    return out


def _jpeg_decode(rows: np.ndarray, gray: bool = False) -> np.ndarray:
    """(n, N) padded JPEG rows -> (n, H, W, 3) RGB uint8 (the decoder stops at the end marker),
    or with `gray` (n, H, W) uint8 luma decoded alone: JPEG's Y is BT.601 luma, what cv2's
    RGB2GRAY computes from the decoded RGB up to rounding, and decoding it alone skips chroma
    upsampling and colour conversion (~25 % of a decode)."""
    # libjpeg-turbo writes RGB itself where OpenCV asks it to (IMREAD_COLOR_RGB, OpenCV >= 4.11):
    # the same levels as BGR then cvtColor, without the second pass over the frame
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    flag = cv2.IMREAD_GRAYSCALE if gray else (rgb if rgb is not None else cv2.IMREAD_COLOR)
    out = None
    for i, row in enumerate(rows):
        img = cv2.imdecode(row, flag)
        if img is None:
            raise ValueError(f"stored frame {i} is not a decodable JPEG")
        if out is None:
            out = np.empty((len(rows),) + img.shape, np.uint8)
        if gray or rgb is not None:
            out[i] = img
        else:
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[i])
    return out if out is not None else np.zeros((0, 0, 0) if gray else (0, 0, 0, 3), np.uint8)


def check_version(version, where: str) -> None:
    if version == 1:
        raise SchemaVersionError(
            f"{where}: shard schema version 1 (chunks without checksums; zarr may lack all-zero "
            f"chunks, so a lost chunk file cannot be told from zeros) is not read by this "
            f"motion-mae (supported: {', '.join(map(str, SUPPORTED_VERSIONS))}). Re-extract the "
            f"corpus (preprocess/extract.py ... --overwrite), see docs/shards.md, 'Versions'.")
    if version not in SUPPORTED_VERSIONS:
        raise SchemaVersionError(
            f"{where}: shard schema version {version!r} is not supported by this motion-mae "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))}). Re-extract the corpus or "
            f"install the motion-mae version that wrote it."
        )


@dataclass(frozen=True)
class SchemaInfo:
    """Everything a reader needs to know besides the arrays; stored in root attrs."""

    schema_version: int = SCHEMA_VERSION
    cell: int = CELL
    hog_bins: int = HOG_BINS
    flow_clip: float = FLOW_CLIP
    conventions: dict = field(default_factory=lambda: dict(CONVENTIONS))
    arrays: dict = field(default_factory=lambda: {
        n: {"dims": list(map(str, s.dims)), "dtype": s.dtype, "stored_dtype": s.stored_dtype,
            "scale": s.scale, "transform": s.transform, "source": list(s.source), "units": s.units,
            "doc": s.doc}
        for n, s in ARRAYS.items()
    })


# Video attrs the writer needs besides REQUIRED_VIDEO_ATTRS to derive every array's shape.
SHAPE_ATTRS = ("num_frames", "height", "width", "traj_len", "flow_stride")
COMMIT_ATTR = "complete"  # written last: a video group without it is an interrupted write
ROOT_KEY = "motion_mae"   # root attrs key holding SchemaInfo as a dict


def dims_from_attrs(attrs: dict) -> dict[str, int]:
    """Named dimension sizes of one video from its attrs (see SHAPE_ATTRS)."""
    missing = [k for k in SHAPE_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"video attrs lack {missing} (needed to derive array shapes)")
    return dims_for(*(int(attrs[k]) for k in SHAPE_ATTRS))


def root_attrs(config: dict | None = None) -> dict:
    """Root attrs of a new shard set: the schema description and the extraction config."""
    return {ROOT_KEY: asdict(SchemaInfo()), "config": dict(config or {})}


def root_version(attrs: dict, where: str, writing: bool = False) -> int:
    """The schema version recorded in root attrs; SchemaVersionError if absent or unknown, or
    (`writing`: a writer reopening the set) not this version: a version-2 set is read, but
    videos of version 3 are not added to it (one set, one version of the arrays)."""
    info = attrs.get(ROOT_KEY)
    if not isinstance(info, dict) or "schema_version" not in info:
        raise SchemaVersionError(
            f"{where}: no {ROOT_KEY!r}.schema_version in the root attrs: not a motion-mae shard "
            f"set, or one written before versioning. Re-extract the corpus with this motion-mae."
        )
    check_version(info["schema_version"], where)
    if writing and info["schema_version"] != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where}: shard schema version {info['schema_version']} is read by this motion-mae but "
            f"not written: it writes version {SCHEMA_VERSION} (traj and hog derived when read, "
            f"docs/shards.md 'Versions'). Extract into a new directory, or re-extract this one "
            f"(preprocess/extract.py ... --overwrite).")
    return info["schema_version"]
