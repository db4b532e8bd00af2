"""Videos that turn out damaged mid-run: skipped, recorded, and counted against a limit.

A shard set checked at extraction can still rot on disk or lose an object; a read error hours
into a run used to kill it. With `max_skipped_videos` > 0 the loader serves the clip from the
next readable video instead (`ClipDataset(skip_damaged=True)`), attaches what it skipped to
the batch, and `SkipLog` writes one line per damaged video to `<out>/skipped.jsonl`:

    {"video": "abc", "reason": "ValueError: Stored and computed checksum do not match...", "step": 1234}

The run stops loudly once more than `max_skipped_videos` distinct videos were skipped (per
process; counted across resumes from the file): a handful of rotten videos is noise, hundreds
mean the storage is failing and training on the rest would hide it. 0 restores dying on the
first read error.
"""
from __future__ import annotations

import json
from pathlib import Path

# What reading a damaged video raises: I/O errors (OSError: h5py, a lost object), codec and
# checksum errors (ValueError: zarr, blosc, JSON metadata; RuntimeError: numcodecs). A bug in
# clip sampling raises other types (IndexError, TypeError...) and still stops the run.
READ_ERRORS = (OSError, ValueError, RuntimeError)
SKIPPED_FILE = "skipped.jsonl"


class SkipLog:
    """`<out>/skipped.jsonl` and the limit; `record` takes a batch's SKIPPED entries (train/clips/keys.py)."""

    def __init__(self, out: Path, limit: int, rank: int = 0, log=print):
        self.path = Path(out) / (SKIPPED_FILE if rank == 0 else f"skipped.rank{rank}.jsonl")
        self.limit, self.log = limit, log
        self.seen: set[str] = set()
        if self.path.exists():  # a resumed run: videos already recorded count once
            for line in self.path.read_text().splitlines():
                try:
                    self.seen.add(json.loads(line)["video"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill; the video is recorded again if met again

    def record(self, entries: list[str], step: int) -> None:
        for s in (s for e in entries if e for s in json.loads(e)):
            if s["video"] in self.seen:
                continue
            self.seen.add(s["video"])
            with open(self.path, "a") as f:
                f.write(json.dumps({"video": s["video"], "reason": s["reason"], "step": step}) + "\n")
            self.log(f"step {step}: skipped damaged video {s['video']!r} ({s['reason']}); "
                     f"{len(self.seen)} skipped, limit {self.limit}, see {self.path}")
        if len(self.seen) > self.limit:
            raise RuntimeError(f"{len(self.seen)} damaged videos skipped, more than max_skipped_videos "
                               f"{self.limit}: the storage looks broken; run `python -m shards verify` on "
                               f"the shard set. They are listed in {self.path}.")
