"""bench.gpu_suite runs end to end on CPU with a tiny model, so its first GPU window is not its first run."""
import json

from bench.budget import H200_CLIPS_PER_S, cores_per_gpu
from bench.gpu_check import METHODS
from bench.gpu_suite import batch_for_memory, main, report

TINY = ["--device", "cpu", "--model", "vit_pico", "--frames", "4", "--size", "32", "--steps", "1", "--warmup", "1",
        "--compile-backend", "eager"]


def test_the_suite_measures_steps_loaders_and_compile_and_writes_its_section(tiny_shards, tmp_path):
    out, section = tmp_path / "suite.json", tmp_path / "suite.md"
    result = main([*TINY, "--minutes", "5", "--shards", str(tiny_shards), "--methods", "videomae", "mgmae",
                   "--batches", "2", "4", "--workers", "1", "--loader-batches", "1",
                   "--json", str(out), "--report", str(section)])
    assert json.loads(out.read_text())["device"] == "cpu" and result["skipped"] == []
    steps = {(s["method"], s["batch"], s["decoder_ratio"], s["compile"]) for s in result["steps"]}
    # mgmae's batches are whole videos of 4 crops: 2 and 4 -> 4
    assert steps == {(m, b, r, c) for m, bs in (("videomae", (2, 4)), ("mgmae", (4,)))
                     for b in bs for r in (1.0, 0.5) for c in (False, True)}
    dual = {(s["method"], s["batch"], s["compile"]): s["gflops_per_clip"] for s in result["steps"]
            if s["decoder_ratio"] == 0.5}
    for s in result["steps"]:
        if s["decoder_ratio"] == 1.0:
            assert dual[s["method"], s["batch"], s["compile"]] < s["gflops_per_clip"]
    assert {(x["method"], x["assemble"]) for x in result["loader"]} == {
        (m, a) for m in ("videomae", "mgmae") for a in ("loader", "uint8", "device")}
    for x in result["loader"]:
        assert x["clips_per_s"] > 0 and isinstance(x["keeps_up"], bool)
        assert x["cores_per_gpu"] == round(cores_per_gpu(x["gpu_clips_per_s"], x["ms_per_clip_per_worker"]), 1)
    trainer = result["trainer"]   # the trainer's own defaults, at the largest --batches as the global batch
    assert trainer["method"] == "videomae" and trainer["batch"] == 4 and trainer["assemble"] == "loader"
    assert (trainer["accumulation"], trainer["micro_batch"]) == (1, 4) and not trainer["sized_by_memory"]
    assert trainer["clips_per_s"] > 0 and 0 <= trainer["data_share"] <= 1 and trainer["steps"] == 6
    text = section.read_text()
    assert text.startswith("## GPU suite: cpu, ") and "| videomae | 4 | yes | 0.5 |" in text
    assert "| mgmae | `device` | 4 |" in text and "Skipped" not in text
    assert "The trainer itself (videomae, 6 steps, every default): global batch 4 = 1 micro-batches x 4 clips" in text


def test_what_does_not_fit_the_window_is_skipped_and_said(tiny_shards, tmp_path):
    result = main([*TINY, "--minutes", "0.001", "--shards", str(tiny_shards), "--methods", "mme",
                   "--batches", "2", "--workers", "0", "--report", str(tmp_path / "s.md")])
    assert result["steps"] == [] and result["loader"] == [] and result["trainer"] is None
    assert len(result["skipped"]) == 2 + 3 + 1 + 2      # eager steps, the loader's 3 modes, the trainer, compiled steps
    assert "Skipped in the 0.001-minute window: mme batch 2 decoder 1 (needs ~20 s" in (tmp_path / "s.md").read_text()


def test_the_generated_set_is_natural_footage_extracted(tmp_path):
    result = main([*TINY, "--minutes", "5", "--methods", "videomae", "--batches", "2", "--workers", "1",
                   "--loader-batches", "1", "--videos", "1", "--video-size", "96x64", "--work", str(tmp_path)])
    assert result["set"].startswith("1 natural clips at 96x64") and (tmp_path / "shards").is_dir()
    assert len(result["loader"]) == 3 and all(x["clips_per_s"] > 0 for x in result["loader"])


def test_the_default_gpu_rates_are_the_measured_h200_ones():
    assert set(H200_CLIPS_PER_S) == set(METHODS)
    assert cores_per_gpu(726.0, 15.8) == 726.0 * 15.8 / 1000


def test_the_batch_that_fills_the_gpu_is_read_off_two_measured_ones():
    steps = [{"method": "mgmae", "decoder_ratio": 1.0, "compile": False, "batch": b, "max_memory_gib": m}
             for b, m in ((96, 20.6), (192, 39.6))] + [
            {"method": "mme", "decoder_ratio": 1.0, "compile": False, "batch": 48, "max_memory_gib": 10.4}]
    fits = batch_for_memory(steps, 79.6, {"mgmae": 4, "mme": 1})
    # 19 GiB per 96 clips: 0.198 GiB a clip over 1.6 GiB fixed; 0.9 x 79.6 GiB -> 353 clips -> 352 (whole videos)
    assert fits == [{"method": "mgmae", "decoder_ratio": 1.0, "compile": False, "gib_per_clip": 0.198, "batch": 352}]
    text = report({"device": "H100", "date": "d", "argv": [], "peak_tflops": 989.0, "torch": "t", "cores": 16,
                   "model": "vit_base", "clip": "16x224x224", "timed_steps": 8, "warmup": 3, "set": "s",
                   "workers": 12, "steps": [], "loader": [], "skipped": [], "memory_gib": 79.6,
                   "batch_for_memory": fits})
    assert "within 90 % of the 79.6 GiB" in text and "mgmae, decoder ratio 1: 352 (0.198 GiB a clip)" in text
