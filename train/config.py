"""The one config object of `train/pretrain.py`: a frozen dataclass.

Values come from, in order of precedence: CLI flags > a config file (`train/configs/*.yaml`
or `.json`) > the defaults below. The resolved config is printed at start and saved in every
checkpoint (`TrainConfig.to_dict()`, plain python types only, so `torch.load(weights_only=True)`
can read it back).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_SHARDS = "data/shards/demo"


def resolve_shards(shards: str) -> Path:
    """A shard set path: DEMO_SHARDS is where the extractor writes the demo ($MOTION_MAE_DATA
    respected); other relative paths are relative to the repo root."""
    if shards == DEMO_SHARDS:
        from preprocess.config import ExtractConfig

        return Path(ExtractConfig(dataset="demo").out_path())
    p = Path(shards)
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass(frozen=True)
class TrainConfig:
    # data
    shards: str = DEMO_SHARDS       # shard set path (relative paths are relative to the repo root)
    split: str = ""                 # keep only videos whose attrs["split"] equals this ("" = all)
    num_frames: int = 16            # T input frames per clip
    sampling_rate: int = 4          # stored frames between consecutive input frames
    input_size: int = 224           # H = W of the network input, a multiple of the patch size
    min_crop: float = 0.66          # smallest crop side / short side of the stored video
    flip: bool = True               # random horizontal flip (motion-consistent)
    num_workers: int = 2
    # method
    mask: str = "tube"              # train.masks.MASKS key: tube | random | mgm | mgmae
    target: str = "pixel"           # train.targets.TARGETS key: pixel | hog | mme
    mask_ratio: float | None = None  # None = the method's default (0.9; 0.7 with target mme)
    norm_target: bool = True        # per-token target normalization (VideoMAE / MME patch norm)
    target_norm: str = ""           # which one: a train.targets norms name, "" = the target's default
    # model
    model: str = "vit_small"        # train.model.MODELS key
    tubelet: int = 2                # frames per token
    patch_size: int = 16            # pixels per token side
    decoder_depth: int | None = None  # None = the size's default
    drop_path: float = 0.0
    # optimisation
    batch_size: int = 8             # per process
    epochs: int = 800
    max_steps: int = 0              # > 0: stop (and set the schedule length) after this many steps
    stop_at: int = 0                # > 0: leave this run at that step, schedule unchanged (job time limits)
    base_lr: float = 1.5e-4         # lr = base_lr * total batch / 256
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40.0
    warmup_steps: int = 0           # added to warmup_epochs * steps per epoch
    clip_grad: float = 0.0          # 0 = off
    # runtime
    seed: int = 0
    device: str = "auto"            # auto = cuda if available else cpu
    amp: bool = True                # bf16 autocast on CUDA (ignored on CPU)
    out: str = "runs/demo"
    log_every: int = 10
    save_every: int = 500           # steps; a final checkpoint is always written
    resume: str = ""                # checkpoint path, or "auto" = <out>/checkpoint.pt if present
    max_skipped_videos: int = 20    # videos that fail to read mid-run are skipped and listed in
                                    # <out>/skipped.jsonl up to this many, then the run stops; 0 = stop at once

    # ---- derived values -------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        if self.mask_ratio is not None:
            return self.mask_ratio
        return 0.7 if self.target == "mme" else 0.9

    def lr(self, world_size: int = 1) -> float:
        return self.base_lr * self.batch_size * world_size / 256

    def shards_path(self) -> Path:
        return resolve_shards(self.shards)

    def validate(self) -> "TrainConfig":
        if self.input_size % self.patch_size or self.patch_size % 8:
            raise ValueError(f"input_size {self.input_size} must be a multiple of patch_size "
                             f"{self.patch_size}, itself a multiple of the 8 px cell")
        if self.num_frames % self.tubelet:
            raise ValueError(f"num_frames {self.num_frames} must be a multiple of tubelet {self.tubelet}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"mask ratio {self.ratio} must be in [0, 1)")
        from .targets import get_target

        get_target(self.target).norm(self.target_norm)  # an unknown name fails here, not at step 0
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(**d)

    def describe(self) -> str:
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {k:<{width}} {v}" for k, v in self.to_dict().items())


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists() and (REPO_ROOT / "train" / "configs" / path).exists():
        path = REPO_ROOT / "train" / "configs" / path
    text = path.read_text()
    return (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}


def parse_bool(s: str) -> bool:
    """An argparse type: argparse's type=bool turns "false" into True (the VideoMAE bug); parse explicitly."""
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def parse_optional(kind):
    """An argparse type: "none" / "null" / "" -> None (the per-method or checkpoint default), else kind(s)."""
    def parse(s: str):
        return None if s.lower() in ("none", "null", "") else kind(s)
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag-name` per config field; every default is None = "not given"."""
    parser.add_argument("--config", default=None, help="yaml/json config file (train/configs/...)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(TrainConfig, f.name)
        if f.name == "betas":
            parser.add_argument(flag, type=float, nargs=2, default=None, help=f"default {default}")
        elif isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=None, help=f"default {default}")
        elif f.name == "mask_ratio":
            parser.add_argument(flag, type=parse_optional(float), default=None, help="default: per method")
        elif f.name == "decoder_depth":
            parser.add_argument(flag, type=parse_optional(int), default=None, help="default: per model size")
        else:
            parser.add_argument(flag, type=type(default), default=None, help=f"default {default}")


def from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_file(args.config) if args.config else {}
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return TrainConfig.from_dict(values).validate()


def override(cfg: TrainConfig, **kw) -> TrainConfig:
    return replace(cfg, **kw).validate()
