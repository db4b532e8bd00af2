"""The study's one config object (`StudyConfig`, a frozen dataclass printed at start and stored in
<out>/study.json), its defaults and the --tiny variant CI runs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from shards.paths import data_dir
from train.eval.config import EvalConfig
from train.eval.probe import POOLS, parse_weight_decay
from train.methods import method_name
from train.pretraining.config import REPO_ROOT, TrainConfig
from train.pretraining.masks import MASKS
from train.pretraining.targets import TARGETS

DEFAULT_CONFIG = REPO_ROOT / "train" / "configs" / "study.yaml"
DEFAULT_OUT = "runs/study"
DEFAULT_REPORT = REPO_ROOT / "docs" / "results.md"



def parse_method(key: str) -> tuple[str, float | None, str]:
    """A study method key, `mask[@ratio]+target` (e.g. "tube+pixel", "mgm@0.75+pixel"), -> (mask,
    mask ratio or None for the target's default, target). Refuses unknown masks and targets."""
    head, plus, target = key.partition("+")
    mask, at, ratio = head.partition("@")
    if not plus or mask not in MASKS or target not in TARGETS:
        raise ValueError(f"unknown method {key!r}: a study method is mask[@ratio]+target with a mask of "
                         f"{', '.join(MASKS)} and a target of {', '.join(TARGETS)}")
    if not at:
        return mask, None, target
    try:
        value = float(ratio)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"method {key!r}: the ratio after @ must be a number in (0, 1)")
    return mask, value, target


def method_paper(key: str) -> str:
    """What a study method reproduces (train/methods.py), with its ratio where the key sets one."""
    mask, ratio, target = parse_method(key)
    return method_name(mask, target) + (f" at ratio {ratio:g}" if ratio is not None else "")


# The default comparison: a 2 x 2 of {tube, MGM} masks x {pixel, MME} targets, MGM at the paper's
# ratio 0.75 as well as the pixel target's 0.9, MGMAE, and a HOG-only control; random init always.
METHODS = {key: method_paper(key) for key in ("tube+pixel", "mgm+pixel", "tube+mme", "mgm+mme", "mgm@0.75+pixel",
                                              "mgmae+pixel", "tube+hog")}
# The pre-registered contrasts (label, a, b): "a - b", everything else equal, paired over seeds; run
# where both are in the study. The mask effect under each target, the target effect under each mask.
CONTRASTS = (
    ("mask under pixel: MGM - tube", "mgm+pixel", "tube+pixel"),
    ("mask under MME: MGM - tube", "mgm+mme", "tube+mme"),
    ("target under tube: MME - pixel", "tube+mme", "tube+pixel"),
    ("target under MGM: MME - pixel", "mgm+mme", "mgm+pixel"),
    ("mask under pixel: MGM at 0.75 - tube", "mgm@0.75+pixel", "tube+pixel"),
)

# --tiny: the CI version. Every stage runs, on 16 videos of 16 frames at 64 px (1 val video per class), with
# the 2 x 2 and MGM at 0.75: every contrast; about a minute.
TINY = {
    "methods": ("tube+pixel", "mgm+pixel", "tube+mme", "mgm+mme", "mgm@0.75+pixel"), "seeds": (0, 1), "steps": 4,
    "checkpoints": (0.5, 1.0),
    "per_class": 2, "frames": 16, "size": 64, "extract_workers": 0, "probe_batch": 8, "probe_wd": 0.1,
    "probe_workers": 1, "parallel_runs": 1,
    "heldout_clips": 8,
    "train": {"num_frames": 4, "sampling_rate": 2, "input_size": 32, "batch_size": 4, "num_workers": 0,
              "warmup_steps": 1, "log_every": 2, "device": "cpu"},
    "finetune": {"max_steps": 2, "batch_size": 4, "warmup_epochs": 0.0, "log_every": 1},
}


@dataclass(frozen=True)
class StudyConfig:
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 1000                       # pretraining steps per run
    checkpoints: tuple[float, ...] = (0.25, 0.5, 1.0)  # fractions of `steps` kept and probed
    per_class: int = 512                    # synthetic-motion videos per class (1 in 4 is val: 1024 val videos)
    frames: int = 32                        # stored frames per video
    size: int = 64                          # stored side, px
    style: str = "natural"                  # synthetic-motion look: noise | structured | natural (preprocess.synthetic.STYLES)
    extract_workers: int = 2                # 0 = extract in this process
    probe_clips: int = 2
    probe_batch: int = 32
    probe_pool: str = "quadrants"           # train.eval.probe.POOLS key of the main probe; the token mean is fit as well
    probe_wd: str | float = "cv"            # "cv" = the probe's L2 chosen by cross-validation on the train split
    probe_folds: int = 5
    probe_workers: int = 2                  # probes run side by side on the CPU (processes, one thread each)
    parallel_runs: int = 2                  # pretraining runs side by side on the CPU (processes, one thread each)
    gpu_jobs: int = 1                       # on a GPU: jobs side by side (processes, one thread, no loader workers
                                            # and a CUDA context each); 1 = one at a time in this process
    heldout_clips: int = 256                # val clips of the held-out loss (the gate)
    moving_px: float = 1.0                  # dense motion probe: a token moves when its compensated displacement
                                            # over its tubelet exceeds this (input px)
    gate: float = 0.8                       # held-out loss / the better of predict-0 and the best constant at
                                            # or below this on every seed = PASS
    finetune_max_std: float = 0.05          # fine-tuned top-1 reported only where its std over seeds is below
    root: str = ""                          # corpus folder; "" = <data dir>/synthetic-motion[-<frames>f-<size>px]
    shards: str = ""                        # shard set; "" = <data dir>/shards/<corpus name>
    out: str = DEFAULT_OUT
    report: str = ""                        # markdown report; "" = docs/results.md (default out) or <out>/results.md
    train: dict = field(default_factory=dict)  # TrainConfig fields shared by every run
    target_norms: dict = field(default_factory=dict)  # target -> its runs' target_norm ("" or absent: `train`'s)
    finetune: dict = field(default_factory=dict)  # EvalConfig fields of fine-tuning; off unless max_steps > 0

    def validate(self) -> "StudyConfig":
        for method in self.methods:
            parse_method(method)
        if not self.seeds or not self.methods:
            raise ValueError("need at least one seed and one method")
        if self.steps < 1 or not all(0 < f <= 1 for f in self.checkpoints):
            raise ValueError(f"need steps >= 1 and checkpoint fractions in (0, 1], "
                             f"got {self.steps}, {self.checkpoints}")
        self.base_train()  # refuses unknown TrainConfig keys early
        unknown = set(self.target_norms) - set(TARGETS)
        if unknown:
            raise ValueError(f"target_norms names unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
        for method in self.methods:  # and every run's config, e.g. a normalization its patch size makes constant
            self.run_config(method, self.seeds[0])
        unknown = set(self.finetune) - {f.name for f in fields(EvalConfig)}
        if unknown:
            raise ValueError(f"unknown fine-tuning keys {sorted(unknown)}; EvalConfig fields are expected")
        if self.probe_pool not in POOLS:
            raise ValueError(f"unknown probe_pool {self.probe_pool!r}; known: {', '.join(POOLS)}")
        parse_weight_decay(self.probe_wd)
        if self.gpu_jobs < 1:
            raise ValueError(f"need gpu_jobs >= 1, got {self.gpu_jobs}")
        if self.heldout_clips < 1:
            raise ValueError(f"need heldout_clips >= 1, got {self.heldout_clips}")
        return self

    @property
    def finetunes(self) -> bool:
        """Whether the fine-tuning stage runs: `finetune.max_steps` > 0 (every encoder gets that many steps)."""
        return int(self.finetune.get("max_steps", 0) or 0) > 0

    # ---- derived paths and values ----------------------------------------------------------
    def _look(self) -> str:
        """The corpus folder's suffix for the look: none for the default "noise"."""
        return "" if self.style == "noise" else f"-{self.style}"

    def corpus_name(self) -> str:
        look = self._look()
        default = (self.per_class, self.frames, self.size) == (64, 32, 112)
        return (f"synthetic-motion{look}" if default
                else f"synthetic-motion{look}-{self.per_class}pc-{self.frames}f-{self.size}px")

    def root_path(self) -> Path:
        if self.root:
            return Path(self.root).expanduser()
        # videos depend on (frames, size, style), not on the number per class: one folder grows in place
        look = self._look()
        same = (self.frames, self.size) == (32, 112)
        name = f"synthetic-motion{look}" if same else f"synthetic-motion{look}-{self.frames}f-{self.size}px"
        return data_dir() / name

    def shards_path(self) -> Path:
        return Path(self.shards).expanduser() if self.shards else data_dir() / "shards" / self.corpus_name()

    def out_path(self) -> Path:
        p = Path(self.out)
        return p if p.is_absolute() else REPO_ROOT / p

    def view_cache_path(self) -> Path:
        """Where the probes' views are decoded once and read by every later probe (train/eval/view_cache.py)."""
        return self.out_path() / "view_cache"

    def report_path(self) -> Path:
        if self.report:
            return Path(self.report)
        return DEFAULT_REPORT if self.out == DEFAULT_OUT else self.out_path() / "results.md"

    def stops(self) -> list[int]:
        """The steps at which a checkpoint is kept, increasing, the last one the whole budget."""
        return sorted({max(1, round(f * self.steps)) for f in self.checkpoints} | {self.steps})

    def base_train(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.train, "shards": str(self.shards_path())})

    def run_config(self, method: str, seed: int) -> TrainConfig:
        mask, ratio, target = parse_method(method)
        base = self.base_train()
        return replace(base, mask=mask, target=target, mask_ratio=ratio, seed=seed,
                       target_norm=self.target_norms.get(target) or base.target_norm,
                       max_steps=self.steps, save_every=max(1, self.steps // 8), resume="auto",
                       out=str(self.run_dir(method, seed))).validate()

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out_path() / method / f"seed{seed}"

    def finetune_options(self) -> dict:
        """EvalConfig fields of every fine-tuning run: the study's loader settings, then `finetune`."""
        base = self.base_train()
        return {"num_workers": base.num_workers, "device": base.device, "min_crop": base.min_crop, **self.finetune}

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(methods=list(self.methods), seeds=list(self.seeds), checkpoints=list(self.checkpoints))
        return d

    def describe(self) -> str:
        width = max(len(f.name) for f in fields(self))
        return "\n".join(f"  {k:<{width}} {v}" for k, v in self.to_dict().items())


# ---- stage 4: aggregate and report -------------------------------------------------------------
