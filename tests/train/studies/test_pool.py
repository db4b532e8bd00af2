"""The study's pool (train/studies/pool.py): a chain's steps in order, each made when the previous
one is done; chains taken in priority order; the wall time shared among the jobs running."""
from __future__ import annotations

import time
from collections import defaultdict

import pytest

from train.studies.pool import Chain, Job, Walls, run_chains


class FakeProgress:
    """What run_chains calls on the study's Progress: units done per stage, and log lines."""

    def __init__(self):
        self.units = defaultdict(int)
        self.lines = []

    def done(self, stage, units, seconds):
        self.units[stage] += units

    def line(self, what):
        self.lines.append(what)


def local_job(name, order, stage="probe", seed=0, units=1):
    return Job(name, stage, seed, units, print, (), local=lambda: order.append(name) or name)


def test_steps_in_order_each_made_after_the_previous_and_chains_by_priority():
    order, made = [], []

    def second():
        made.append(list(order))  # what had run when this step was made
        return [local_job("a2", order), local_job("a3", order)]

    chains = [Chain([lambda: [local_job("a1", order, "train", units=10)], second, lambda: []]),
              Chain([lambda: [local_job("b1", order, seed=1)]])]
    p, walls = FakeProgress(), defaultdict(float)
    run_chains(chains, 1, p, lambda stage, seed, s: walls.__setitem__((stage, seed), walls[(stage, seed)] + s))
    assert order == ["a1", "a2", "a3", "b1"]
    assert made == [["a1"]]
    assert p.units == {"train": 10, "probe": 3}
    assert set(walls) == {("pretrain", 0), ("probe", 0), ("probe", 1)}
    assert all(chain.over for chain in chains)


def test_a_seeds_pretraining_goes_before_its_probes_and_before_the_next_seed():
    order = []
    chains = [Chain([lambda: [local_job("a1", order, "train")], lambda: [local_job("a-probe", order)]]),
              Chain([lambda: [local_job("r-probe", order)]]),
              Chain([lambda: [local_job("b1", order, "train")], lambda: [local_job("b-probe", order)]]),
              Chain([lambda: [local_job("next seed", order, "train", seed=1)]])]
    run_chains(chains, 1, FakeProgress(), lambda *a: None)
    assert order == ["a1", "b1", "a-probe", "r-probe", "b-probe", "next seed"]


def test_a_chain_with_nothing_to_do_is_over_at_once():
    chain = Chain([lambda: [], lambda: []])
    assert chain.over and chain.take() is None


def test_an_interval_is_shared_equally_among_the_jobs_running_in_it():
    """Seed 0's probe runs 0-3 s, seed 1's pretraining 1-2 s: seed 0 gets 1 + 0.5 + 1 s, seed 1
    0.5 s (a clock of our own: the pool's real timing depends on how fast workers spawn)."""
    now = [0.0]
    walls = Walls(clock=lambda: now[0])
    probe, train = (Job("p", "probe", 0, 1, print, ()), Job("t", "train", 1, 1, print, ()))
    walls.start(probe)
    now[0] = 1.0
    walls.start(train)
    now[0] = 2.0
    walls.stop(train)
    now[0] = 3.0
    walls.stop(probe)
    assert dict(walls.seconds) == {("probe", 0): 2.5, ("pretrain", 1): 0.5}


def test_jobs_in_worker_processes_get_the_pools_wall_time():
    """Two one-second sleeps in two spawned workers: the shares sum to the pool's wall time (at
    least the one second, at most what run_chains took), and each job had at least half of its
    own second (how much more depends on when each worker came up)."""
    chains = [Chain([lambda s=s: [Job(f"sleep {s}", "probe", s, 1, time.sleep, (1.0,))]]) for s in (0, 1)]
    walls = defaultdict(float)
    t = time.perf_counter()
    run_chains(chains, 2, FakeProgress(), lambda stage, seed, s: walls.__setitem__((stage, seed), walls[(stage, seed)] + s))
    elapsed = time.perf_counter() - t
    assert set(walls) == {("probe", 0), ("probe", 1)}
    assert 1.0 <= sum(walls.values()) <= elapsed
    assert min(walls.values()) >= 0.5
