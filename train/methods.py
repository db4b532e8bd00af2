"""The published methods this project reproduces.

One table: each method is a mask, a target and its recipe (train/configs/), with the clips per
GPU of the paper's run. The study, every benchmark and gpu_check name methods from here.
"""
from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class Method:
    name: str          # as the papers spell it
    mask: str          # train.pretraining.masks.MASKS
    target: str        # train.pretraining.targets.TARGETS
    recipe: str        # train/configs/<recipe>: the paper's K400 pretraining recipe
    gpu_batch: int     # clips per GPU in the paper's run
    source: str        # where the pairing and the batch come from

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def pair(self) -> str:
        return f"{self.mask}+{self.target}"


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("VideoMAE", "tube", "pixel", "videomae_k400.yaml", 32, "VideoMAE: 32 per GPU x 64 GPUs"),
    Method("MGM", "mgm", "pixel", "mgm_k400.yaml", 32, "MGM trains with VideoMAE's recipe"),
    Method("MGMAE", "mgmae", "pixel", "mgmae_k400.yaml", 96, "MGMAE: 24 videos x 4 crops per GPU"),
    Method("MME", "tube", "mme", "mme_k400.yaml", 48, "MME: 768 over 16 GPUs"),
)}


def method_name(mask: str, target: str) -> str:
    """The published method a pair reproduces, or what it is when no paper trains it."""
    for m in METHODS.values():
        if (m.mask, m.target) == (mask, target):
            return m.name
    names = {m.mask: m.name for m in METHODS.values() if m.mask != "tube"} | {m.target: m.name for m in METHODS.values()
                                                                            if m.target != "pixel"}
    return f"{names.get(mask, mask)} mask + {names.get(target, target)} target (no paper)"
