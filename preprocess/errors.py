"""Failures are data: one exception type that carries the stage and a one-line reason; and
the storage faults that are no video's failure but stop the run (`storage_fault`)."""
from __future__ import annotations

import errno
import os
import re

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


# What a full, capped or read-only storage raises. Writing a video then fails for every video
# alike: an error of the run (it stops, keeps what it finished, and resumes once space is
# freed), never a failure record of the video that happened to be writing.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large for the file system or the process's file size limit",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_HDF5_ERRNO = re.compile(r"\berrno = (\d+)")  # HDF5 names the system error inside its message


def storage_fault(err: BaseException | None) -> OSError | None:
    """The OSError of a full, capped or read-only storage behind `err` (itself, its cause or
    its context, which is where h5py and zarr keep it), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            code = err.errno
            if code is None:
                match = _HDF5_ERRNO.search(str(err))
                code = int(match.group(1)) if match else None
            if code in STORAGE_ERRNOS:
                return err if err.errno == code else OSError(code, os.strerror(code), err.filename)
        err = err.__cause__ or err.__context__
    return None
