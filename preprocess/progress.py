"""Progress of a corpus scan: done / failed / remaining, frames/s and ETA.

A tqdm bar on a terminal; otherwise (logs, CI, a batch job) one line every `every` seconds.
"""
from __future__ import annotations

import sys
import time
from typing import Callable


class Progress:
    def __init__(self, total: int, log: Callable[[str], None] = print, every: float = 10.0,
                 stream=sys.stderr):
        self.total, self.log, self.every = total, log, every
        self.done = self.failed = self.frames = 0
        self.start = self._last = time.perf_counter()
        self._bar = None
        if total and stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="video", file=stream, dynamic_ncols=True)

    def update(self, result: dict) -> None:
        if result["status"] == "done":
            self.done += 1
            self.frames += result.get("frames", 0)
        elif result["status"] == "failed":
            self.failed += 1
        else:  # "halted": the storage refused the write; the run stops, the video is not done
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(self._stats(), refresh=False)
        elif time.perf_counter() - self._last >= self.every or self.remaining == 0:
            self._last = time.perf_counter()
            self.log(f"[{self.done + self.failed}/{self.total}] {self._stats()}")

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def _stats(self) -> str:
        elapsed = time.perf_counter() - self.start
        finished = self.done + self.failed
        rate = finished / elapsed if elapsed > 0 else 0.0
        eta = self.remaining / rate if rate > 0 else float("nan")
        return (f"done {self.done}, failed {self.failed}, remaining {self.remaining}, "
                f"{self.frames / max(elapsed, 1e-9):.1f} frames/s, {rate:.2f} videos/s, ETA {_hms(eta)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _hms(seconds: float) -> str:
    if seconds != seconds:  # NaN: nothing finished yet
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
