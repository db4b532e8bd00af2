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

from shards.cli import CliError, UsageError
from shards.paths import REPO as REPO_ROOT
from shards.paths import default_shards
from shards.ref import ShardRef
from train.clips.assemble import ASSEMBLIES, AUTO
from train.clips.batching import micro_batches
from train.pretraining.dual import DECODER_MASKS, cell_keeps
from train.pretraining.masks import MASKS
from train.pretraining.model import MODELS, POSITIONS, build_model
from train.pretraining.targets import TARGETS, get_target

DEMO_SHARDS = "data/shards/demo"


def resolve_shards(shards: str) -> Path:
    """A shard set path: DEMO_SHARDS is where the extractor writes the demo ($MOTION_MAE_DATA
    respected); other relative paths are relative to the repo root."""
    if shards == DEMO_SHARDS:
        return default_shards("demo")
    p = Path(shards)
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass(frozen=True)
class TrainConfig:
    # data
    shards: str = DEMO_SHARDS       # shard set path (relative paths are relative to the repo root)
    split: str = ""                 # keep only videos whose attrs["split"] equals this ("" = all)
    source_root: str = ""           # where the source videos of a --frames none set are now ("" = as extracted)
    num_frames: int = 16            # T input frames per clip
    sampling_rate: int = 4          # stored frames between consecutive input frames
    input_size: int = 224           # H = W of the network input, a multiple of the patch size
    min_crop: float = 0.66          # smallest crop side / short side of the stored video
    flip: bool = True               # random horizontal flip (motion-consistent)
    repeated_aug: int = 1           # clips per video read, each its own crop and flip (MGMAE's num_sample)
    num_workers: int = 2
    assemble: str = "auto"          # where a clip's frames are decoded, cropped, resized, normalized: auto | loader | uint8 | device
    # method
    mask: str = "tube"              # train.pretraining.masks.MASKS key: tube | random | mgm | mgm_cc | mgm_recentre | mgm_anchor | mgmae
    target: str = "pixel"           # train.pretraining.targets.TARGETS key: pixel | hog | mme | mme_single
    mask_ratio: float | None = None  # None = the target's default ratio (0.9; 0.7 with target mme)
    norm_target: bool = True        # per-token target normalization (VideoMAE / MME patch norm)
    decoder_ratio: float = 1.0      # fraction of the hidden tokens the decoder reconstructs (< 1: VideoMAE V2's dual masking)
    decoder_mask: str = "running_cell"  # which of them, with decoder_ratio < 1: running_cell (VideoMAE V2's) | random
    target_norm: str = ""           # which one: a train.pretraining.targets norms name, "" = the target's default
    traj_len: int = 0               # MME: trajectory steps per point; 0 = the shards' (attrs traj_len)
    # model
    model: str = "vit_small"        # train.pretraining.model.MODELS key
    tubelet: int = 2                # frames per token
    patch_size: int = 16            # pixels per token side
    decoder_depth: int | None = None  # None = the size's default
    decoder_dim: int | None = None  # None = the size's default (MME's code: 192 for ViT-B)
    drop_path: float = 0.0
    positions: str = "videomae"     # train.pretraining.model.POSITIONS: videomae (1-D over the token index) | separable (t, h, w)
    # optimisation
    batch_size: int = 8             # GLOBAL clips per optimizer step (all processes, all micro-batches)
    batch_per_device: int = -1      # > 0: at most this many clips per forward (memory cap) -> grad accumulation;
                                    # -1: as many as fit the GPU (train/pretraining/memory.py); 0: the whole batch
    epochs: int = 800
    max_steps: int = 0              # > 0: stop (and set the schedule length) after this many steps
    stop_at: int = 0                # > 0: leave this run at that step, schedule unchanged (job time limits)
    base_lr: float = 1.5e-4         # lr = base_lr * videos per step / 256 (videos = batch_size / repeated_aug)
    min_lr: float = 0.0             # scaled like base_lr (VideoMAE, MGMAE, MME scale all three lrs)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40.0
    warmup_steps: int = 0           # added to warmup_epochs * steps per epoch
    clip_grad: float = 0.0          # 0 = off
    fused_adamw: bool = True        # AdamW as one fused kernel when every parameter is on CUDA (plain on CPU)
    # runtime
    seed: int = 0
    device: str = "auto"            # auto = cuda if available else cpu
    amp: bool = True                # bf16 autocast on CUDA
    amp_cpu: bool = False           # bf16 autocast on CPU as well (runs the CUDA path's casts in CI)
    compile: bool = False           # torch.compile the model
    out: str = ""                   # "" = runs/<shards name>-<mask>-<target>-<model> (train/pretraining/runs.py)
    log_every: int = 10
    save_every: int = 500           # steps; a final checkpoint is always written
    keep_every: int = 0             # steps between kept checkpoints <out>/ckpt_<step>.pt; 0 = none
    resume: str = ""                # checkpoint path, or "auto" = <out>/checkpoint.pt if present
    init: str = ""                  # start from these weights (any layout of train/checkpoints/foreign.py), fresh optimizer
    max_skipped_videos: int = 20    # videos that fail to read mid-run are skipped and listed in
                                    # <out>/skipped.jsonl up to this many, then the run stops; 0 = stop at once

    # ---- derived values -------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        if self.mask_ratio is not None:
            return self.mask_ratio
        return get_target(self.target).default_ratio

    def lr(self) -> float:
        """Peak lr. Scaled by videos per step, not clips: MGMAE's code scales by `batch_size *
        world` videos, each of which yields `num_sample` clips (run_mgmae_pretraining.py)."""
        return self.base_lr * self.batch_size / self.repeated_aug / 256

    def final_lr(self) -> float:
        return self.min_lr * self.batch_size / self.repeated_aug / 256

    def micro_batches(self, world_size: int = 1, cap: int | None = None) -> tuple[int, int]:
        """(clips per forward per process, forwards per optimizer step) for `world_size` processes
        (train.clips.batching.micro_batches), at most `cap` clips a forward (None: `batch_per_device`,
        whose -1 reads as on a CPU, the whole per-process batch: on a GPU the trainer sizes it by the
        GPU's memory first, train/pretraining/memory.py)."""
        cap = max(self.batch_per_device, 0) if cap is None else cap
        return micro_batches(self.batch_size, world_size, cap, self.repeated_aug)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(t, h, w) tokens of a clip."""
        return (self.num_frames // self.tubelet, self.input_size // self.patch_size, self.input_size // self.patch_size)

    def build_model(self, out_dim: int, drop_path: float | None = None):
        """The MAE this config trains (`drop_path` None = the config's)."""
        return build_model(self.model, self.grid, out_dim, self.tubelet, self.patch_size, self.decoder_depth,
                           self.drop_path if drop_path is None else drop_path, self.positions, self.decoder_dim)

    def shards_path(self) -> Path:
        return resolve_shards(self.shards)

    def shards_ref(self) -> ShardRef:
        """The shard set with where its source videos are: what every reader below the config opens."""
        return ShardRef(self.shards_path(), self.source_root)

    def validate(self) -> "TrainConfig":
        if self.input_size % self.patch_size or self.patch_size % 8:
            raise ValueError(f"input_size {self.input_size} must be a multiple of patch_size "
                             f"{self.patch_size}, itself a multiple of the 8 px cell")
        if self.num_frames % self.tubelet:
            raise ValueError(f"num_frames {self.num_frames} must be a multiple of tubelet {self.tubelet}")
        if self.keep_every < 0 or self.save_every < 1:
            raise ValueError(f"save_every {self.save_every} must be >= 1 and keep_every {self.keep_every} >= 0")
        if self.batch_per_device < -1:
            raise ValueError(f"batch_per_device {self.batch_per_device} must be >= -1 (-1: sized by the GPU's memory)")
        if self.repeated_aug < 1 or self.batch_size % self.repeated_aug:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of repeated_aug {self.repeated_aug}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"mask ratio {self.ratio} must be in [0, 1) (--mask-ratio)")
        if not 0.0 < self.decoder_ratio <= 1.0:
            raise ValueError(f"decoder_ratio {self.decoder_ratio} must be in (0, 1] (--decoder-ratio)")
        if self.decoder_mask not in DECODER_MASKS:
            raise ValueError(f"unknown decoder_mask {self.decoder_mask!r}; known: {', '.join(DECODER_MASKS)}")
        if self.decoder_ratio < 1.0 and self.decoder_mask == "running_cell":
            cell_keeps(self.decoder_ratio)
        for name, value, known in (("mask", self.mask, MASKS), ("target", self.target, TARGETS),
                                   ("model", self.model, MODELS), ("positions", self.positions, POSITIONS),
                                   ("assemble", self.assemble, (AUTO,) + ASSEMBLIES)):
            if value not in known:  # unknown names fail here, not at step 0
                raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
        target = get_target(self.target)
        if self.norm_target:  # a normalization over one value per token leaves a constant target
            target.check(target.norm(self.target_norm), self.tubelet, self.patch_size)
        else:
            target.norm(self.target_norm)
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
    """A yaml/json config file: `path`, or train/configs/<path>. A missing file is a CliError.
    `base: other.yaml` (relative to the file's folder) loads that file first, so a schedule
    variant states only what differs from its recipe."""
    path = Path(path)
    if not path.exists() and (REPO_ROOT / "train" / "configs" / path).exists():
        path = REPO_ROOT / "train" / "configs" / path
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in (REPO_ROOT / "train" / "configs").glob("*.yaml")))
        raise CliError(f"--config {path}: no such file (give a path, or one of train/configs/: {known})")
    text = path.read_text()
    try:
        values = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
    except (ValueError, yaml.YAMLError) as e:
        raise UsageError(f"--config {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                         f"({str(e).splitlines()[0]})") from e
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
    base = values.pop("base", None)
    return {**load_file(path.parent / base), **values} if base else values


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


# --help text of every TrainConfig field; the default and the choices are appended from the code
HELP = {
    "shards": "shard set folder or URL (relative paths: from the repo root)",
    "split": "train on the videos of this split only (train, val, ...: the dataset adapter's names); "
             "'' = every video. A set extracted without splits (folder, list) has none: it trains on "
             "all of it whatever --split says, and the run says so",
    "source_root": "for a set extracted with --frames none (frames decoded from the source videos): the "
                   "folder the corpus moved to, laid out as under the extraction's --root",
    "num_frames": "T input frames per clip",
    "sampling_rate": "stored frames between consecutive input frames",
    "input_size": "H = W of the network input in px, a multiple of --patch-size",
    "min_crop": "smallest random crop side / short side of the stored video",
    "flip": "random horizontal flip, motion arrays mirrored with the frames",
    "num_workers": "data loader processes per training process",
    "repeated_aug": "clips per video read, each its own crop and flip (MGMAE's repeated augmentation); "
                    "lr and epochs count videos",
    "mask": "masking strategy (docs/masks.md)",
    "target": "what the decoder predicts for hidden tokens",
    "mask_ratio": "fraction of tokens hidden, in [0, 1); none = the method's (0.9; 0.7 with target mme)",
    "decoder_ratio": "fraction of the hidden tokens the decoder reconstructs and the loss covers, an exact "
                     "count per clip; < 1 is VideoMAE V2's dual masking (0.5 there): a cheaper decoder "
                     "(docs/design.md, \"Dual masking\")",
    "decoder_mask": "which hidden tokens the decoder reconstructs with decoder_ratio < 1: running_cell "
                    "(VideoMAE V2's pattern; ratio 0.25, 0.5 or 0.75) or random",
    "norm_target": "per-token target normalization (VideoMAE's normlize_target, MME's patch norm)",
    "assemble": "where the clip's frames are decoded from the stored JPEG, cropped, resized and "
                "normalized: auto = uint8 on a CUDA device, else loader; loader = in the loader's workers; "
                "uint8 = the workers stop before normalizing and "
                "ship the uint8 levels (a quarter of the bytes), the training device normalizes them "
                "(bit-identical); device = all of it on the training device (a GPU decodes with nvJPEG: the "
                "workers then only read bytes; docs/benchmarks.md). Pretraining only",
    "target_norm": "which per-token normalization ('' = the target's first)",
    "traj_len": "target mme: trajectory steps per point (MME's K400 script 4, its paper 6); 0 = the "
                "shards' traj_len. Schema-3 shards track any length when read",
    "model": "encoder size",
    "tubelet": "frames per token",
    "patch_size": "pixels per token side, a multiple of the 8 px cell",
    "decoder_depth": "decoder blocks; none = the model size's",
    "decoder_dim": "decoder width; none = the model size's",
    "drop_path": "stochastic depth rate of the encoder",
    "positions": "fixed position table: videomae = 1-D sin-cos over the token index (VideoMAE); "
                 "separable = sin-cos parts for t, h and w (docs/results.md)",
    "batch_size": "clips per optimizer step over all processes (the global batch)",
    "batch_per_device": "> 0: at most this many clips per forward pass, the rest of the batch by "
                        "gradient accumulation; -1: as many as fit 90 % of the GPU's memory (two probe "
                        "steps at start; on a CPU the whole batch); 0: the whole per-process batch at once",
    "epochs": "passes over the training videos (unless --max-steps)",
    "max_steps": "> 0: train this many steps (and set the schedule length to it)",
    "stop_at": "> 0: leave the run at this step, schedule unchanged (for job time limits; resume later)",
    "base_lr": "peak lr = base_lr * total batch / 256",
    "min_lr": "lr at the end of the cosine",
    "weight_decay": "AdamW weight decay (not on biases, norms, mask token)",
    "betas": "AdamW betas",
    "warmup_epochs": "linear warmup length in epochs",
    "warmup_steps": "warmup steps added to --warmup-epochs",
    "clip_grad": "gradient norm clip; 0 = off",
    "fused_adamw": "AdamW's update as one fused CUDA kernel over all parameters instead of a loop of "
                   "small ones (torch's fused=True; the same update); used when every parameter is on "
                   "CUDA, the plain AdamW elsewhere",
    "seed": "seed of clips, masks and weights",
    "device": "auto = cuda when available, else cpu",
    "amp": "bf16 autocast on CUDA",
    "amp_cpu": "bf16 autocast on CPU as well (runs the CUDA path's casts without a GPU)",
    "compile": "torch.compile the model",
    "out": "run folder: config.json, metrics.jsonl, checkpoint.pt",
    "log_every": "steps between log lines",
    "max_skipped_videos": "videos that fail to read mid-run are skipped and listed in <out>/skipped.jsonl; "
                          "the run stops past this many (0 = stop at the first, docs/reliability.md)",
    "save_every": "steps between checkpoints (a final one is always written)",
    "keep_every": "steps between checkpoints kept as ckpt_<step>.pt beside checkpoint.pt (held-out loss or probes "
                  "along a run, as the papers' code keeps checkpoint-<epoch>.pth); 0 = keep none",
    "resume": "continue from this checkpoint.pt, or 'auto' = <out>/checkpoint.pt when present; "
              "refused if its model, geometry or method differ",
    "init": "start from these weights with a fresh optimizer, schedule and step count, any mask and target: a "
            "checkpoint of this project, VideoMAE, MGMAE or MME, or a Hugging Face VideoMAE folder (docs/interop.md); "
            "the decoder is kept when it fits, else started fresh. --resume wins once the run has a checkpoint",
}
SHOWN_DEFAULTS = {  # where the field's default is a rule, not a value
    "shards": DEMO_SHARDS, "split": "'' (every video)", "mask_ratio": "none", "decoder_depth": "none",
    "target_norm": "''", "source_root": "'' (the paths recorded at extraction)", "resume": "'' (a new run)", "init": "'' (random weights)", "out": "runs/<shards name>-<mask>-<target>-<model>",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag-name` per config field, with its help, default and choices; every argparse
    default is None = "not given", so a config file's values are not overwritten."""

    choices = {"mask": list(MASKS), "target": list(TARGETS), "model": list(MODELS), "positions": list(POSITIONS),
               "assemble": [AUTO, *ASSEMBLIES], "decoder_mask": list(DECODER_MASKS)}
    norms = "; ".join(f"{name}: {', '.join(t.norms)}" for name, t in TARGETS.items())
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="yaml/json file of TrainConfig fields (a path, or a name in train/configs/); "
                             "flags override it (default: none, the defaults below)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = SHOWN_DEFAULTS.get(f.name, getattr(TrainConfig, f.name))
        text = HELP.get(f.name, f.name.replace("_", " ")) + (f" ({norms})" if f.name == "target_norm" else "")
        help = f"{text} (default: {default})".replace("%", "%%")
        kw = dict(default=None, help=help)
        if f.name in choices:
            kw.update(choices=choices[f.name], metavar="{" + ",".join(choices[f.name]) + "}")
        if f.name == "betas":
            parser.add_argument(flag, type=float, nargs=2, metavar=("B1", "B2"), **kw)
        elif isinstance(getattr(TrainConfig, f.name), bool):
            parser.add_argument(flag, type=parse_bool, metavar="BOOL", **kw)
        elif f.name == "mask_ratio":
            parser.add_argument(flag, type=parse_optional(float), **kw)
        elif f.name in ("decoder_depth", "decoder_dim"):
            parser.add_argument(flag, type=parse_optional(int), **kw)
        elif f.name == "device":
            parser.add_argument(flag, type=str, metavar="{auto,cpu,cuda,cuda:N}", **kw)
        else:
            parser.add_argument(flag, type=type(getattr(TrainConfig, f.name)), **kw)


def given(args: argparse.Namespace) -> dict:
    """The TrainConfig fields set on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}


def from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --config file < flags; a bad value is a UsageError naming it."""
    values = {**(load_file(args.config) if args.config else {}), **given(args)}
    try:
        return TrainConfig.from_dict(values).validate()
    except (TypeError, ValueError, KeyError) as e:
        where = f" (flags and {args.config})" if args.config else ""
        raise UsageError(f"{str(e).strip(chr(34) + chr(39))}{where}") from e


def override(cfg: TrainConfig, **kw) -> TrainConfig:
    return replace(cfg, **kw).validate()
