"""The one config object of the extractor: printed at start, stored in the shard attrs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from shards.paths import default_shards


# Bump when the same settings start producing different arrays. 2: frames area-scaled by
# swscale in the YUV -> RGB pass, DIS with 6 gradient-descent iterations, homography from at
# most ~640 flow samples, Zarr written with zstd level 1 (docs/benchmarks.md). 3: mv keeps a
# bi-predicted block's past estimate only (docs/design.md); videos with a display-matrix
# rotation stored upright, their motion vectors turned with them. 4: a display matrix with a
# mirror applied as FFmpeg does (an hflip matrix was stored turned by 180 degrees). 5: the
# H.264 transcode of codecs without exported vectors (HEVC, VP9, ...) runs without
# macroblock-tree rate control, so its vectors are the same on every run; the homography's flow
# samples keep a floor of the most textured ones (a smooth background no longer cedes the fit
# to a textured object).
EXTRACTOR_REVISION = 5


@dataclass(frozen=True)
class ExtractConfig:
    # what to read
    dataset: str = "demo"
    root: str | None = None
    list_file: str | None = None
    split: str | None = None
    limit: int | None = None
    allow_images: bool = False  # store a still image named like a video as a 1-frame video
    # where to write
    out: str | None = None
    format: str = "zarr"
    frames: str = "jpeg"  # "none": store no frames, the reader decodes them from the source videos
    overwrite: bool = False  # replace a set at `out` extracted with other settings, dataset or root
    append: bool = False     # add this dataset / root to a set at `out` that holds another one
    # what to compute
    short_side: int = 256
    fps: float | None = None
    max_ref_distance: int = 4
    flow_method: str = "dis"
    dis_preset: str = "ultrafast"
    dis_patch_stride: int = 6  # 8 is ~37% faster flow, p90 object error 0.040 -> 0.048 px (docs/design.md)
    features: str = "orb"
    compensation: str = "subtract"
    flow_stride: int = 4
    traj_len: int = 6  # the set's default trajectory length (training reads it); not a compute setting
    # how to run
    workers: int = 2
    scheduler: str | None = None
    scheduler_timeout: float = 10.0  # seconds to wait for --scheduler before giving up
    retries: int = 2
    shard_size: int = 1  # videos per Dask task; each video is still its own group / file

    def out_path(self) -> str:
        return self.out or str(default_shards(self.dataset))

    def to_dict(self) -> dict:
        """Every field, plus the extractor revision (stored with the shards)."""
        return {**asdict(self), "extractor": EXTRACTOR_REVISION}

    def describe(self) -> str:
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in fields(self))

    def source_key(self) -> dict:
        """What the set is a set of: a run with another dataset or root needs --append (or --overwrite).

        `root` is the absolute folder scanned (the extractor stores it resolved); the list file
        and the split are not part of it, since one set holds the train and val lists of a corpus.
        """
        return {"dataset": self.dataset, "root": self.root}

    def compute_key(self) -> dict:
        """The settings that change the stored arrays: a resumed run must match them.

        `extractor` is the revision of the computation itself (EXTRACTOR_REVISION): a set
        extracted by an older revision is not silently extended with differently computed videos.
        `traj_len` is not one: no stored array depends on it since schema 3 (trajectories are
        tracked when read); it is the set's default trajectory length, fixed by its first run.
        """
        keys = ("short_side", "fps", "max_ref_distance", "flow_method", "dis_preset", "dis_patch_stride",
                "features", "compensation", "flow_stride", "frames")
        return {**{k: getattr(self, k) for k in keys}, "extractor": EXTRACTOR_REVISION}
