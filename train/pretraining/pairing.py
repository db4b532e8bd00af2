"""What a mask + target pair reads: the one place the two records' needs are joined."""
from __future__ import annotations

from train.pretraining.masks import get_mask
from train.pretraining.targets import get_target


def reads(mask: str, target: str) -> frozenset[str]:
    """The batch keys a mask + target pair reads besides the clip (what the loader must assemble)."""
    return frozenset(get_mask(mask).needs | get_target(target).needs)
