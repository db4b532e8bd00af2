"""docs/design.md's recipe for a new mask and a new target, followed to the letter: a record each
(what a file in masks/ or targets/ defines), one registry line each, and the run trains, counts
its FLOPs and reads only what the records declare."""
from __future__ import annotations

import torch

from train.pretraining import flops
from train.pretraining.engine import train
from train.pretraining.masks import MASKS
from train.pretraining.masks.common import batch_size
from train.pretraining.masks.record import Mask
from train.pretraining.pairing import reads
from train.pretraining.targets import TARGETS, Target
from train.pretraining.targets.common import masked_mse, one_head
from train.pretraining.targets.pixel import cubes

from tests.train.pretraining.test_engine import tiny_config


# ---- what masks/checker.py would hold ----------------------------------------------------------

def checker(batch: dict, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Hides the first round(ratio * h * w) tokens of every slice: no randomness, no motion."""
    t, h, w = grid
    hidden = torch.zeros(batch_size(batch), t, h * w, dtype=torch.bool)
    hidden[:, :, :round(ratio * h * w)] = True
    return hidden.reshape(-1, t * h * w)


CHECKER = Mask("checker", checker, frozenset())


# ---- what targets/luma.py would hold -----------------------------------------------------------

def luma_dim(tubelet: int, patch: int, traj_len: int = 0) -> int:
    return tubelet * patch * patch


def luma_build(batch: dict, tubelet: int, patch: int, normalize: bool = True, norm: str = "none"):
    """The grey level of every pixel of a token's cube, not normalized: (B, N, tubelet*patch*patch)."""
    grey = cubes(batch["video"], tubelet, patch).mean(-1)                       # (B,N,P)
    return grey, torch.ones_like(grey)


LUMA = Target("luma", frozenset(), luma_dim, luma_build, ("none",), one_head(luma_dim), masked_mse,
              lambda norm, tubelet, patch: (0, "nothing"), default_ratio=0.75)


def test_a_new_mask_and_target_need_a_record_and_a_registry_line_each(tiny_shards, tmp_path, monkeypatch):
    monkeypatch.setitem(MASKS, CHECKER.name, CHECKER)       # the mask's registry line
    monkeypatch.setitem(TARGETS, LUMA.name, LUMA)           # the target's registry line
    cfg = tiny_config(tiny_shards, tmp_path, mask="checker", target="luma", max_steps=2)
    assert cfg.ratio == 0.75                                # the target's default ratio
    assert reads("checker", "luma") == frozenset()          # the loader assembles the clip alone
    assert cfg.grid == (2, 2, 2)                            # 32 px at patch 16, 4 frames at tubelet 2
    assert flops.hidden_tokens("checker", cfg.grid, cfg.ratio) == 2 * 3   # 3 of each slice's 4 tokens
    summary = train(cfg, log=lambda s: None)
    assert summary["step"] == 2 and torch.isfinite(torch.tensor(summary["last_loss"]))
