"""Per-GPU batch sizing by memory (`batch_per_device: -1`): the line through two probe steps'
peaks, solved for the largest batch within 90 % of the GPU; on a CPU, the whole batch."""
import pytest
import torch

from train.pretraining.config import TrainConfig
from train.pretraining.engine import train
from train.pretraining.memory import ADAMW_BYTES, PROBES, fit_batch_per_device, largest_batch, probe_step
from train.pretraining.model import build_model
from tests.train.pretraining.test_engine import tiny_config

GIB = 2 ** 30


def test_the_largest_batch_is_on_the_line_through_the_probes():
    # 2 GiB fixed + 0.5 GiB a clip on an 80 GiB GPU: (72 - 2) / 0.5 = 140 clips; 1 GiB of optimizer
    # state not in the probes takes 2 of them
    points = [(2, 3 * GIB), (8, 6 * GIB)]
    assert largest_batch(points, 80 * GIB) == 140
    assert largest_batch(points, 80 * GIB, extra=1 * GIB) == 138
    assert largest_batch(points, 80 * GIB, extra=1 * GIB, repeats=4) == 136   # whole videos of 4 crops
    with pytest.raises(ValueError, match="1 clip\\(s\\) need 2.5 GiB of the GPU's 2.0 GiB"):
        largest_batch(points, 2 * GIB)


def test_a_process_takes_its_whole_batch_when_it_fits_and_accumulates_when_not():
    def memory(batch):   # 1 GiB + 0.25 GiB a clip
        return GIB + batch * GIB // 4
    seen = []
    params = 100_000_000                 # 0.75 GiB of AdamW state
    assert fit_batch_per_device(lambda b: seen.append(b) or memory(b), 32, 80 * GIB, params) == 32
    assert seen == [p for p in PROBES]   # probes at 1 and 4 clips
    # 16 GiB GPU: (14.4 - 1 - 0.745) / 0.25 = 50 clips of the 64 a process holds
    cap = fit_batch_per_device(memory, 64, 16 * GIB, params)
    assert cap == int((0.9 * 16 * GIB - GIB - ADAMW_BYTES * params) // (GIB // 4)) == 50
    assert fit_batch_per_device(memory, 64, 16 * GIB, params, repeats=4) == 48
    assert fit_batch_per_device(memory, 1, 16 * GIB, params) == 1   # one clip a process: nothing to choose


def test_the_probe_step_leaves_the_model_and_every_random_state_as_they_were():
    model = build_model("vit_pico", (2, 2, 2), 7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    probe_step(model, 3, (3, 4, 32, 32), 8, 6, 3, torch.device("cpu"), amp=False)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(torch.get_rng_state(), state)


def test_auto_on_a_cpu_runs_the_whole_batch_at_once(tiny_shards, tmp_path):
    assert TrainConfig().batch_per_device == -1
    assert TrainConfig(batch_size=8, batch_per_device=-1).micro_batches(1) == (8, 1)
    lines = []
    kw = dict(max_steps=2, warmup_steps=1, seed=2)
    auto = train(tiny_config(tiny_shards, tmp_path / "auto", batch_per_device=-1, **kw), log=lines.append)
    whole = train(tiny_config(tiny_shards, tmp_path / "whole", batch_per_device=0, **kw), log=lambda s: None)
    assert auto["last_loss"] == whole["last_loss"]
    assert any("1 micro-batches x" in line and "sized by memory" not in line for line in lines)
    with pytest.raises(ValueError, match="batch_per_device -2 must be >= -1"):
        TrainConfig(batch_per_device=-2).validate()


def test_probes_that_did_not_grow_leave_the_whole_batch():
    assert fit_batch_per_device(lambda b: 3 * GIB, 64, 16 * GIB, 1000) == 64
    with pytest.raises(ValueError, match="did not grow from 1 to 4 clips"):
        largest_batch([(1, 3.0), (4, 3.0)], 16.0)


def test_the_trainers_sizing_on_a_gpu_solves_the_probes_and_says_so(monkeypatch):
    """The CUDA branch of `batch_by_memory` with the GPU's counters stood in for: a 16 GiB GPU,
    1 GiB + 0.25 GiB a clip, a process holding 64 clips -> the largest that fits, in the log."""
    from types import SimpleNamespace

    from train.pretraining import engine

    cfg = TrainConfig(model="vit_pico", num_frames=4, input_size=32, batch_size=64)
    model = build_model("vit_pico", cfg.grid, 7)
    seen = []

    def peak(m, batch, shape, tokens, hidden, decoded, device, amp):
        seen.append((batch, shape, tokens, hidden, decoded))
        return GIB + batch * GIB // 4
    monkeypatch.setattr(engine, "probe_peak", peak)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=16 * GIB))
    cap, said = engine.batch_by_memory(cfg, model, SimpleNamespace(type="cuda"), engine.Dist(), 7, 4, True)
    params = sum(p.numel() for p in model.parameters())
    assert cap == int((0.9 * 16 * GIB - GIB - ADAMW_BYTES * params) // (GIB // 4)) == 53
    assert seen == [(1, (3, 4, 32, 32), 8, 7, 4), (4, (3, 4, 32, 32), 8, 7, 4)]   # grid (2, 2, 2) at patch 16
    assert said == " (sized by memory: 16 GiB GPU; probes 1 clips 1.2 GiB, 4 clips 2.0 GiB)"
