"""The CUDA path's risks, taken on CPU: bf16 autocast and torch.compile inside the trainer."""
import pytest
import torch

import train.pretraining.engine as engine
import train.pretraining.config as config_module
import train.pretraining.model as model_module
from train.pretraining.engine import train

from tests.train.pretraining.test_engine import tiny_config


def record_output_dtypes(monkeypatch) -> list:
    """Every model train() builds records the dtype of its predictions."""
    dtypes, build = [], model_module.build_model

    def spy(*a, **kw):
        model = build(*a, **kw)
        model.head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
        return model

    monkeypatch.setattr(config_module, "build_model", spy)  # the name TrainConfig.build_model calls
    return dtypes


@pytest.mark.parametrize("target", ["pixel", "mme"])
def test_bf16_autocast_on_cpu_trains_like_fp32(tiny_shards, tmp_path, monkeypatch, target):
    dtypes = record_output_dtypes(monkeypatch)
    kw = dict(target=target, max_steps=2, seed=1)
    fp32 = train(tiny_config(tiny_shards, tmp_path / "fp32", **kw), log=lambda s: None)
    bf16 = train(tiny_config(tiny_shards, tmp_path / "bf16", amp_cpu=True, **kw), log=lambda s: None)
    assert dtypes == [torch.float32] * 2 + [torch.bfloat16] * 2     # the second run ran under autocast
    assert bf16["step"] == 2 and torch.isfinite(torch.tensor(bf16["last_loss"]))
    # bf16 keeps ~3 significant digits: the same loss to a few %
    assert bf16["first_loss"] == pytest.approx(fp32["first_loss"], rel=0.05)


def test_autocast_only_where_asked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cfg = tiny_config("x", "y")
    assert not engine.autocast_enabled(cfg, cpu) and engine.autocast_enabled(cfg, cuda)
    assert engine.autocast_enabled(tiny_config("x", "y", amp_cpu=True), cpu)
    assert not engine.autocast_enabled(tiny_config("x", "y", amp=False, amp_cpu=True), cpu)


def compiled_equals_eager(tiny_shards, tmp_path):
    torch._dynamo.reset()
    kw = dict(max_steps=2, seed=2)
    eager = train(tiny_config(tiny_shards, tmp_path / "eager", **kw), log=lambda s: None)
    lines = []
    compiled = train(tiny_config(tiny_shards, tmp_path / "compiled", compile=True, **kw), log=lines.append)
    assert any("compile True" in s for s in lines)
    assert compiled["first_loss"] == pytest.approx(eager["first_loss"], rel=1e-4)
    assert compiled["last_loss"] == pytest.approx(eager["last_loss"], rel=1e-3)


def test_compile_traces_the_trainer(tiny_shards, tmp_path, monkeypatch):
    """--compile through dynamo and AOT autograd (the graphs inductor would get, the mask's
    boolean indexing breaking the graph), with the eager backend: seconds instead of minutes."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: real(model, backend="aot_eager"))
    compiled_equals_eager(tiny_shards, tmp_path)


@pytest.mark.slow
def test_compile_with_inductor_trains_like_eager(tiny_shards, tmp_path):
    """The real thing: inductor generates and builds C++ kernels (~1-4 min on 2 busy cores)."""
    compiled_equals_eager(tiny_shards, tmp_path)
