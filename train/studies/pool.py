"""The study's jobs on the machine's cores: every pretraining run, held-out loss, probe and
fine-tune of every seed in one pool, each job started as soon as what it reads is on disk.

Why one pool: with a pool per seed and stage, a seed's five runs of unequal length
left one core idle for the last run's tail (~6 min of a seed's ~34), and its probes waited for
the slowest run. Here a run's held-out loss and last-checkpoint probe start when the run ends,
its earlier checkpoints' probes when that probe has chosen the L2, and the next seed's runs fill
whatever core the current seed leaves free. Every job writes what it produces as before, so the
numbers do not depend on the order (tests/train/studies/test_study.py redoes a seed side by side).

A `Chain` is one piece of work in steps (a run: pretrain; then its held-out loss, last probe and
fine-tune side by side; then its earlier probes); each step is made when the previous step's
jobs are all done, from what they wrote. A free core takes a ready job of the first seed that
has one (seed-major: a study stopped early still has every method at its first seeds), a
pretraining run before anything else of that seed (the longest jobs first: the study ends on
short probes, not on a run alone on one core), else in the order the chains are listed.

Wall time per stage and seed (`walls.json`, what the report counts): the pool's wall time,
each interval shared equally among the jobs running in it. Their sum is the pool's wall time.
"""
from __future__ import annotations

import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, NamedTuple

import torch

# progress stage -> walls.json stage
WALL_STAGE = {"train": "pretrain", "heldout": "heldout", "probe": "probe", "motion": "motion", "finetune": "finetune"}


class Job(NamedTuple):
    """One job: `fn(*args)` in a worker process (`local()` instead when the pool runs in this
    process: a GPU, or one worker), `done(result)` in this process when it ends (a log line)."""
    what: str
    stage: str        # Progress stage: train, heldout, probe, motion, finetune
    seed: int
    units: int        # Progress units (pretraining steps; 1 for the rest)
    fn: Callable
    args: tuple
    local: Callable | None = None
    done: Callable | None = None


class Chain:
    """Steps of one piece of work; `steps` are callables that each return the step's jobs (those
    still to do), called when the previous step's jobs have all finished."""

    def __init__(self, steps: list[Callable[[], list[Job]]]):
        self._steps = list(steps)
        self.ready: list[Job] = []
        self.running = 0
        self._advance()

    def _advance(self) -> None:
        while not self.ready and not self.running and self._steps:
            self.ready = list(self._steps.pop(0)())

    def take(self) -> Job | None:
        if not self.ready:
            return None
        self.running += 1
        return self.ready.pop(0)

    def finished(self) -> None:
        self.running -= 1
        self._advance()

    @property
    def over(self) -> bool:
        return not self.ready and not self.running and not self._steps


def _one_thread() -> None:
    torch.set_num_threads(1)


class Walls:
    """Wall seconds per (walls stage, seed): every interval shared among the jobs running in it."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: dict[tuple[str, int], float] = defaultdict(float)
        self.running: list[Job] = []
        self.t = clock()

    def tick(self) -> None:
        now = self.clock()
        for job in self.running:
            self.seconds[(WALL_STAGE[job.stage], job.seed)] += (now - self.t) / len(self.running)
        self.t = now

    def start(self, job: Job) -> None:
        self.tick()
        self.running.append(job)

    def stop(self, job: Job) -> None:
        self.tick()
        self.running.remove(job)


def run_chains(chains: list[Chain], workers: int, progress, record: Callable[[str, int, float], None]) -> None:
    """Run every chain's jobs, `workers` at a time in spawned processes with one intra-op thread
    each (in this process, one at a time, when `workers` <= 1). After each job, `record(walls
    stage, seed, seconds)` gets the wall time spent since the last call (so a killed study keeps
    what it recorded)."""
    walls = Walls()
    chains = [c for c in chains if not c.over]

    def next_job() -> tuple[Chain, Job] | None:
        # the first seed with work ready; in it pretraining before the rest (the longest jobs
        # first, so the tail of the study is short probes), then the chains' order
        ready = [(c.ready[0].seed, c.ready[0].stage != "train", i) for i, c in enumerate(chains) if c.ready]
        if not ready:
            return None
        chain = chains[min(ready)[2]]
        return chain, chain.take()

    def finish(chain: Chain, job: Job, result, seconds: float) -> None:
        walls.stop(job)
        for (stage, seed), spent in walls.seconds.items():
            record(stage, seed, spent)
        walls.seconds.clear()
        progress.done(job.stage, job.units, seconds)
        if job.done is not None:
            job.done(result)
        chain.finished()

    if workers <= 1:
        while (picked := next_job()) is not None:
            chain, job = picked
            progress.line(job.what)
            walls.start(job)
            t = time.perf_counter()
            result = job.local() if job.local is not None else job.fn(*job.args)
            finish(chain, job, result, time.perf_counter() - t)
        return

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        running = {}
        while True:
            while len(running) < workers and (picked := next_job()) is not None:
                chain, job = picked
                progress.line(f"start {job.what}")
                walls.start(job)
                running[pool.submit(job.fn, *job.args)] = (chain, job, time.perf_counter())
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                chain, job, t = running.pop(future)
                result = future.result()
                finish(chain, job, result, time.perf_counter() - t)
                progress.line(f"done {job.what}")
