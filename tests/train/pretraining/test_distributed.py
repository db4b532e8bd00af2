"""Training on several processes over gloo, as torchrun runs it on several nodes: two torchrun
agents on 127.0.0.1 stand for two nodes of one process each, meeting at a c10d rendezvous."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shards.paths import REPO
from train.clips.dataset import ClipSampler
from train.pretraining.config import TrainConfig
from train.pretraining.engine import CHECKPOINT, MetricsLog, load_checkpoint, train

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT = 180  # seconds a two-node run may take on a loaded 2-core CI machine before it counts as hung
STEPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flags(shards: Path, out: Path, *extra: str) -> list[str]:
    """A vit_pico run of STEPS steps of 4 clips (the global batch), a checkpoint every 2 steps."""
    return ["--shards", str(shards), "--out", str(out), "--model", "vit_pico", "--num-frames", "4",
            "--sampling-rate", "2", "--input-size", "32", "--batch-size", "4", "--max-steps", str(STEPS),
            "--warmup-steps", "1", "--warmup-epochs", "0", "--base-lr", "0.05", "--num-workers", "0",
            "--device", "cpu", "--log-every", "1", "--save-every", "2", "--seed", "5", *extra]


def two_nodes(argv: list[str], tmp: Path, module: str = "train.pretrain", restarts: int = 0,
              env: dict | None = None) -> list[str]:
    """Run `python -m module argv` as two single-process torchrun nodes; returns their logs."""
    endpoint = f"127.0.0.1:{free_port()}"
    # TORCH_DISABLE_SHARE_RDZV_TCP_STORE: a fresh store per rendezvous round (docs/scaling.md, "Training")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **(env or {})}
    env.pop("WORLD_SIZE", None)
    procs, logs = [], []
    for node in range(2):
        log = tmp / f"node{node}-{len(list(tmp.glob('node*.log')))}.log"
        logs.append(log)
        cmd = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", endpoint, "--rdzv-id", "test", "--local-addr", "127.0.0.1",
               "--max-restarts", str(restarts), "--monitor-interval", "0.2", "-m", module, *argv]
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    try:
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(texts)[-6000:]
    return texts


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tiny_shards, tmp_path_factory) -> Path:
    """An uninterrupted two-node run: what the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    logs = two_nodes(flags(tiny_shards, out / "run"), out)
    assert "world 2" in logs[0] + logs[1]
    assert "batch 4 clips/step = 2 processes x 1 micro-batches x 2 clips" in logs[0] + logs[1]
    return out / "run"


def test_two_nodes_train_over_a_c10d_rendezvous(straight):
    assert [r["step"] for r in metrics(straight)] == list(range(1, STEPS + 1))
    assert load_checkpoint(straight / CHECKPOINT)["step"] == STEPS


def test_a_killed_worker_is_restarted_and_the_run_resumes_with_nothing_lost(tiny_shards, tmp_path, straight):
    out = tmp_path / "run"
    logs = two_nodes(flags(tiny_shards, out, "--resume", "auto"), tmp_path,
                     module="tests.train.pretraining.killed_worker", restarts=1,
                     env={"KILL_RANK": "1", "KILL_AT_STEP": "3", "KILL_ONCE": str(tmp_path / "killed")})
    assert (tmp_path / "killed").exists() and "at step 2" in "".join(logs)
    # step 3 ran, was lost with the worker and ran again: logged once, weights as if nothing happened
    assert [r["step"] for r in metrics(out)] == list(range(1, STEPS + 1))
    a, b = load_checkpoint(straight / CHECKPOINT), load_checkpoint(out / CHECKPOINT)
    assert a["step"] == b["step"] == STEPS
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in metrics(out)] == [r["loss"] for r in metrics(straight)]


def test_a_run_resumed_on_fewer_processes_keeps_the_global_batch_and_the_schedule(tiny_shards, tmp_path, straight):
    out = tmp_path / "run"
    two_nodes(flags(tiny_shards, out, "--stop-at", "2"), tmp_path)
    assert load_checkpoint(out / CHECKPOINT)["step"] == 2
    # one process now does the two processes' work: 2 micro-batches of 2 clips per step
    from train import pretrain

    lines = []
    cfg, _ = pretrain.resolve_config(flags(tiny_shards, out, "--resume", "auto", "--batch-per-device", "2"))
    summary = train(cfg, log=lines.append)
    assert "batch 4 clips/step = 1 processes x 2 micro-batches x 2 clips" in "\n".join(lines)
    assert summary["step"] == STEPS
    rows, ref = metrics(out), metrics(straight)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in rows] == [r["lr"] for r in ref]          # the same schedule, step for step
    assert [r["loss"] for r in rows[:2]] == [r["loss"] for r in ref[:2]]
    # the same clips in each step; only the masks differ, drawn per micro-batch
    for r, s in zip(rows[2:], ref[2:]):
        assert r["loss"] == pytest.approx(s["loss"], rel=0.1)


def samples_per_step(world: int, micro: int, accum: int, steps: int) -> list[set[int]]:
    """The global sample numbers each optimizer step reads, over all processes and micro-batches."""
    out = []
    for step in range(steps):
        seen = set()
        for rank in range(world):
            stream = iter(ClipSampler(100, 0, step * accum * micro, rank, world))
            seen |= {next(stream)[0] for _ in range(accum * micro)}
        out.append(seen)
    return out


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_every_process_count_reads_the_same_clips_in_each_step(world):
    cfg = TrainConfig(batch_size=16, batch_per_device=2)
    micro, accum = cfg.micro_batches(world)
    assert micro * accum * world == 16
    assert samples_per_step(world, micro, accum, 3) == [set(range(16 * k, 16 * (k + 1))) for k in range(3)]


def test_a_resumed_log_drops_the_rows_past_its_checkpoint_and_a_cut_row(tmp_path):
    rows = [json.dumps({"step": k, "loss": 1.0 / k}) + "\n" for k in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(rows) + '{"step": 5, "lo')   # killed mid-write
    log = MetricsLog(tmp_path, enabled=True, start=2)
    log.log({"step": 3, "loss": 0.3})
    log.close()
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2, 3]
