"""The study's pool (train/study_pool.py): a chain's steps in order, each made when the previous
one is done; chains taken in priority order; the wall time shared among the jobs running."""
from __future__ import annotations

import time
from collections import defaultdict

import pytest

from train.study_pool import Chain, Job, run_chains


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


def test_jobs_side_by_side_share_the_wall_time():
    """Two one-second sleeps in two worker processes, started together: the pool's wall time
    (from the first start, the workers' spawn included, to the last end), half to each seed."""
    chains = [Chain([lambda s=s: [Job(f"sleep {s}", "probe", s, 1, time.sleep, (1.0,))]]) for s in (0, 1)]
    walls = defaultdict(float)
    t = time.perf_counter()
    run_chains(chains, 2, FakeProgress(), lambda stage, seed, s: walls.__setitem__((stage, seed), walls[(stage, seed)] + s))
    elapsed = time.perf_counter() - t
    assert set(walls) == {("probe", 0), ("probe", 1)}
    assert 1.0 <= sum(walls.values()) <= elapsed
    assert walls[("probe", 0)] == pytest.approx(walls[("probe", 1)], rel=0.2)
