"""bench/gpu_check.py runs end to end on CPU with a tiny override, so the first GPU run is not its first run."""
import json
import math

import pytest

from bench.budget import H200_CLIPS_PER_S
from bench.gpu_check import METHODS, main


def test_gpu_check_runs_on_cpu_with_a_tiny_model(tiny_shards, tmp_path, capsys):
    out = tmp_path / "check.json"
    summary = main(["--device", "cpu", "--shards", str(tiny_shards), "--model", "vit_pico", "--frames", "4",
                    "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1", "--loader-batches", "2",
                    "--workers", "0", "--json", str(out)])
    printed = capsys.readouterr().out
    assert set(summary["methods"]) == set(METHODS) and json.loads(out.read_text())["device"] == "cpu"
    for name, r in summary["methods"].items():
        assert r["step"]["ms_per_step"] > 0 and r["loader"]["clips_per_s"] > 0 and r["step"]["mfu"] is None
        assert isinstance(r["keeps_up"], bool) and name in printed
        # one process loads (workers 0): its ms a clip is the inverse of the rate
        load = r["loader"]
        assert load["ms_per_clip_per_worker"] == pytest.approx(1000 / load["clips_per_s"], rel=0.01, abs=0.06)  # both rounded
        assert r["workers_to_keep_up"] == math.ceil(r["step"]["clips_per_s"] * load["ms_per_clip_per_worker"] / 1000)
        # on a CPU the budget is for the method's H200 rate
        assert r["budget"]["gpu_clips_per_s"] == H200_CLIPS_PER_S[name]
        assert r["budget"]["cores_per_gpu"] == round(H200_CLIPS_PER_S[name] * load["ms_per_clip_per_worker"] / 1000, 1)
        assert "loader cores per GPU at" in printed
    assert summary["methods"]["mgmae"]["step"]["batch"] == 4      # 2 rounded up to whole videos of 4 crops
    assert summary["methods"]["mme"]["step"]["gflops_per_clip"] > 0


@pytest.mark.parametrize("where", ["device", "uint8"])
def test_gpu_check_measures_device_assembly(tiny_shards, where):
    summary = main(["--device", "cpu", "--shards", str(tiny_shards), "--model", "vit_pico", "--frames", "4",
                    "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1", "--loader-batches", "2",
                    "--workers", "0", "--methods", "videomae", "mme", "--assemble", where])
    assert summary["assemble"] == where
    for r in summary["methods"].values():
        load, step = r["loader"], r["step"]
        # measured, not asserted positive: a tiny uint8 batch normalizes in less than the 0.1 ms
        # the figure is rounded to
        assert load["assemble"] == where and load["assemble_ms_per_batch"] >= 0
        eats = step["clips_per_s_with_assembly"]
        assert eats == pytest.approx(step["batch"] * 1000 / (step["ms_per_step"] + load["assemble_ms_per_batch"]), rel=0.01)
        assert r["keeps_up"] == (load["clips_per_s"] >= eats)


def test_the_budget_is_for_the_gpu_rate_given(tiny_shards):
    summary = main(["--device", "cpu", "--shards", str(tiny_shards), "--model", "vit_pico", "--frames", "4",
                    "--size", "32", "--batch", "2", "--steps", "1", "--warmup", "1", "--loader-batches", "2",
                    "--workers", "0", "--methods", "mgm", "--gpu-clips-per-s", "1000"])
    r = summary["methods"]["mgm"]
    assert r["budget"]["source"] == "given"
    assert r["budget"]["cores_per_gpu"] == round(r["loader"]["ms_per_clip_per_worker"], 1)   # 1000 clips/s x ms / 1000


@pytest.mark.gpu
def test_gpu_check_on_cuda_reports_mfu(tiny_shards):
    """On a CUDA machine (`pytest -m gpu`): the same tiny check on the device, with its MFU."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    summary = main(["--device", "cuda", "--shards", str(tiny_shards), "--model", "vit_pico", "--frames", "4",
                    "--size", "32", "--batch", "2", "--steps", "2", "--warmup", "1", "--loader-batches", "2",
                    "--workers", "0", "--methods", "videomae"])
    step = summary["methods"]["videomae"]["step"]
    assert step["ms_per_step"] > 0 and (step["mfu"] is None or 0 < step["mfu"] < 1)
