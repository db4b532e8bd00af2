"""Failures are data: one exception type that carries the stage and a one-line reason."""
from __future__ import annotations

# Since shard schema 3 the extractor neither tracks points nor computes HOG (both derived when
# read: shards/derived.py), so "trajectories" and "hog" are no longer stages; failure records
# of older runs may still name them.
STAGES = ("open", "decode", "motion_vectors", "flow", "write")
# The stage of a failure record for a task that crashed (a bug, a killed worker) even after
# its retries: not bad input, so never raised as an ExtractionError.
INTERNAL = "internal"


class ExtractionError(Exception):
    """A video that cannot be extracted. `stage` is one of STAGES, `reason` one line."""

    def __init__(self, stage: str, reason: str):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage = stage
        self.reason = " ".join(str(reason).split())  # one line
        super().__init__(f"[{stage}] {self.reason}")

    def record(self, source: str) -> dict:
        return {"source": str(source), "reason": self.reason, "stage": self.stage}
