"""The one config object of `train/evaluate.py` (linear probe and fine-tuning): a frozen dataclass,
printed at start and stored with every result."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from shards.ref import ShardRef
from train.pretraining.config import DEMO_SHARDS, REPO_ROOT, resolve_shards
from train.clips.batching import micro_batches
from train.clips.dataset import ClipSpec
from train.eval.probe import WD_GRID


GEOMETRY = ("model", "num_frames", "sampling_rate", "input_size", "tubelet", "patch_size", "positions")


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = ""            # weights of any layout train/checkpoints/foreign.py reads, or "random" (baseline)
    shards: str = DEMO_SHARDS
    train_split: str = "train"
    val_split: str = "val"
    finetune: bool = False          # False = linear probe on frozen features
    # encoder and clip geometry: None = the checkpoint's (TrainConfig's defaults for "random")
    model: str | None = None
    num_frames: int | None = None
    sampling_rate: int | None = None
    input_size: int | None = None
    tubelet: int | None = None
    patch_size: int | None = None
    positions: str | None = None    # the position table (train.pretraining.model.POSITIONS): a random encoder's must match
    token_norm: bool | None = None  # the encoder's last norm on every token before the mean; False = VideoMAE's
                                    # mean pooling (no token norm); None = the checkpoint's (True for pretrained ones)
    clips: int = 2                  # temporal clips per video: probe training samples and test views (K400 5, SSv2 2)
    test_crops: int = 1             # spatial test views per clip along the long side (K400 / SSv2 3); 1 = centre
    tsn: bool = False               # TSN (SSv2): one frame from each of num_frames segments; no sampling_rate
    # linear probe (train/eval/probe.py)
    probe_pool: str = "quadrants"   # train.eval.probe.POOLS key of the main probe; the token mean is always fit too
    probe_wd: str | float | dict = "cv"  # L2 penalty on the classifier weights (features standardized); "cv" = chosen
                                    # by cross-validation; or {pool: penalty or "cv"} (the study: a run's earlier checkpoints)
    probe_wd_grid: tuple[float, ...] = WD_GRID  # the penalties cross-validation chooses from
    probe_folds: int = 5            # cross-validation folds (by video) on the train split
    probe_iters: int = 200          # L-BFGS iterations
    probe_bootstrap: int = 2000     # bootstrap resamples of the val videos for the 95 % interval
    # fine-tuning
    epochs: int = 5
    max_steps: int = 0              # > 0: train this many steps (overrides epochs)
    batch_size: int = 8             # GLOBAL videos per optimizer step (all processes, all micro-batches)
    batch_per_device: int = 0       # > 0: at most this many clips per forward (memory cap) -> grad accumulation
    base_lr: float = 1e-3           # lr = base_lr * batch_size / 256 (VideoMAE: videos, repeats not counted)
    min_lr: float = 1e-6
    layer_decay: float = 0.75       # lr scale of block i: layer_decay ** (depth + 1 - (i + 1)); 1 = off
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    drop_path: float = 0.1
    min_crop: float = 0.66          # training crops, as in pretraining
    flip: bool = True               # random horizontal flips of training clips; off where labels have a direction
    # the papers' fine-tuning regularization: off by default, on in train/configs/finetune_*.yaml
    min_area: float = 0.0           # > 0: random resized crops, area [min_area, 1], aspect [3/4, 4/3] (VideoMAE 0.08)
    randaug: str = ""               # timm RandAugment policy, one draw per clip (VideoMAE 'rand-m7-n4-mstd0.5-inc1')
    reprob: float = 0.0             # random erasing probability, one box on every frame (VideoMAE 0.25)
    mixup: float = 0.0              # mixup alpha (VideoMAE 0.8); 0 = off
    cutmix: float = 0.0             # cutmix alpha (VideoMAE 1.0); 0 = off
    mixup_prob: float = 1.0         # probability that a batch is mixed at all
    mixup_switch_prob: float = 0.5  # probability of cutmix rather than mixup when both are on
    smoothing: float = 0.0          # label smoothing (VideoMAE 0.1)
    repeated_aug: int = 1           # clips of each video per batch (VideoMAE num_sample); lr scales with videos
    log_every: int = 10
    # runtime
    seed: int = 0
    device: str = "auto"            # auto = cuda if available else cpu
    amp: bool = True                # bf16 autocast on CUDA (ignored on CPU)
    num_workers: int = 2
    encode_batch: int = 8           # clips per forward and process where nothing trains: probe features, test views
    view_cache: str = ""            # folder of uint8 copies of the test views, decoded once (train/eval/view_cache.py)
    source_root: str = ""           # where the source videos of a --frames none set are now ("" = as extracted)
    out: str = ""                   # result JSON; "" = next to the checkpoint (runs/eval/ for "random")

    @property
    def mode(self) -> str:
        return "finetune" if self.finetune else "linear"

    def shards_path(self) -> Path:
        return resolve_shards(self.shards)

    def shards_ref(self) -> ShardRef:
        """The shard set with where its source videos are: what every reader below the config opens."""
        return ShardRef(self.shards_path(), self.source_root)

    def out_path(self) -> Path:
        if self.out:
            return Path(self.out)
        if self.checkpoint == "random":
            return REPO_ROOT / "runs" / "eval" / f"random_{self.model}_{self.mode}.json"
        return Path(self.checkpoint).parent / f"eval_{self.mode}.json"

    def lr(self) -> float:
        """Peak fine-tuning lr: scaled by the global batch in videos, as VideoMAE (`batch_size *
        update_freq * world`, each video's `num_sample` clips counted once)."""
        return self.base_lr * self.batch_size / 256

    def micro_batches(self, world_size: int = 1) -> tuple[int, int]:
        """(clips per forward per process, forwards per optimizer step) of fine-tuning: the global
        batch of `batch_size` videos x `repeated_aug` clips split over `world_size` processes."""
        return micro_batches(self.batch_size * self.repeated_aug, world_size, self.batch_per_device,
                             self.repeated_aug)

    def spec(self, train: bool = False) -> ClipSpec:
        return ClipSpec(self.num_frames, self.sampling_rate, self.input_size, self.tubelet,
                        self.min_crop if train else 1.0, flip=train and self.flip)

    def describe(self) -> str:
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {k:<{width}} {v}" for k, v in asdict(self).items())
