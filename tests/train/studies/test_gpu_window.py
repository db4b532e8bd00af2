"""The GPU window on the tiny shard set, on the CPU: prepare, run a few steps, report."""
import json

import pytest
import torch

from train.eval.heldout import heldout_loss
from train.pretraining.targets import get_target
from train.studies import gpu_window
from train.studies.gpu_window import (METHODS, RunSpec, heldout, load, main, mask_key, plan, report, run, run_config,
                                      study_config, study_from_dict)

TINY = ["--tiny", "--train-clips", "8", "--heldout-clips", "4", "--heldout-split", "", "--draws", "2"]


@pytest.fixture(scope="module")
def prepared(tiny_shards, tmp_path_factory):
    path = tmp_path_factory.mktemp("window") / "clips.pt"
    main(["prepare", "--out", str(path), "--shards", str(tiny_shards), *TINY])
    return path


def test_the_prepared_file_loads_without_pickle_and_holds_every_method(prepared):
    data = torch.load(prepared, weights_only=True)
    meta = json.loads(data["meta"])
    assert (meta["train_clips"], meta["heldout_clips"], meta["draws"]) == (8, 4, 2)
    assert data["train"]["video_u8"].shape == (8, 4, 32, 32, 3) and data["train"]["video_u8"].dtype == torch.uint8
    assert data["train"]["traj_hog"].dtype == torch.float16 and "mv" not in data["train"]
    # grid (2, 4, 4): masks hide exactly the method's ratio in every slice, for every draw
    for key, hidden in (("tube@0.9", 14), ("mgm@0.9", 14), ("tube@0.7", 11), ("mgm@0.7", 11)):
        assert data["masks"][key].shape == (8, 2, 32)
        assert (data["masks"][key].reshape(8, 2, 2, 16).sum(-1) == hidden).all()
        assert (data["heldout_masks"][key].reshape(4, 2, 16).sum(-1) == hidden).all()
    assert set(meta["baselines"]) == set(METHODS)


@pytest.mark.parametrize("method", ["tube+pixel", "mgm+mme"])
def test_heldout_numbers_are_train_heldout_py_s(prepared, tiny_shards, method):
    # the same clips, crops, masks and loss as train/eval/heldout.py on the shards, for an untrained model
    data = load(prepared, "cpu")
    study = study_from_dict(data["meta"]["study"])
    cfg = run_config(study, RunSpec(method, 0, "vit_pico", 48, 1, 1, 4), 1, "cpu")
    heads = get_target(cfg.target).heads(cfg.tubelet, cfg.patch_size, data["meta"]["traj_len"])
    torch.manual_seed(0)
    model = cfg.build_model(heads)
    ckpt = {"config": cfg.to_dict(), "model": model.state_dict(), "heads": [h.to_dict() for h in heads], "step": 0}
    ref = heldout_loss(ckpt, tiny_shards, split="", clips=4)
    ours = heldout(model, data, cfg, mask_key(cfg.mask, cfg.ratio), amp=False)
    base = data["meta"]["baselines"][method]
    # the pixels travel exactly; MME's inputs as float16 (~1e-5 of its loss here). The baselines are
    # computed before the file is written, from the float32 inputs
    assert ours == pytest.approx(ref["loss"], rel=1e-6 if method.endswith("pixel") else 1e-4)
    assert base["predict0"] == pytest.approx(ref["predict0"], rel=1e-6)
    assert base["predict_mean"] == pytest.approx(ref["predict_mean"], rel=1e-6)


def test_run_trains_every_method_and_writes_the_report(prepared, tmp_path):
    report = tmp_path / "section.md"
    results = main(["run", "--data", str(prepared), "--device", "cpu", "--jobs", "1", "--seeds", "0,1",
                    "--model", "vit_pico", "--decoder-dim", "48", "--decoder-depth", "1", "--epochs", "2",
                    "--batch-size", "4", "--minutes", "5", "--out", str(tmp_path), "--report", str(report)])
    assert [r["name"] for r in results["runs"]] == [f"{m}/vit_pico/seed{s}" for s in (0, 1) for m in METHODS]
    for r in results["runs"]:
        assert r["complete"] and r["steps"] == r["planned_steps"] == 4 and r["epochs_done"] == 2
        assert r["heldout"]["ratio"] == pytest.approx(r["heldout"]["loss"] / r["heldout"]["baseline"])
        assert r["mask_ratio"] == (0.9 if r["method"].endswith("pixel") else 0.7)
    assert set(results["summary"]["mgm_vs_tube"]) == {"pixel vit_pico", "mme vit_pico"}
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]
    text = report.read_text()
    assert text.startswith("## GPU window:") and "| mgm+mme/vit_pico/seed1 | grid |" in text
    assert "study:begin" not in text


def test_a_spent_budget_runs_nothing_and_says_so(prepared):
    study = study_from_dict(load(prepared, "cpu")["meta"]["study"])
    specs = plan(study, seeds=(0,), model="vit_pico", decoder_dim=None, decoder_depth=None, epochs=1, batch_size=4)
    results = run(prepared, specs, "cpu", minutes=0, log=lambda s: None)
    assert results["runs"] == [] and results["not_run"] == [s.name for s in specs]
    assert "Not run within the budget: tube+pixel/vit_pico/seed0, mgm+pixel" in report(results, "cmd")


def test_a_failed_run_is_recorded_and_the_others_go_on(prepared, monkeypatch):
    real = gpu_window.train_run

    def diverging(data, spec, device, deadline):
        if spec.method == "mgm+pixel":
            raise RuntimeError(f"{spec.name}: non-finite loss in the epoch ending at step 2")
        return real(data, spec, device, deadline)

    monkeypatch.setattr(gpu_window, "train_run", diverging)
    study = study_from_dict(load(prepared, "cpu")["meta"]["study"])
    specs = plan(study, methods=("tube+pixel", "mgm+pixel"), seeds=(0,), model="vit_pico", decoder_dim=None,
                 decoder_depth=None, epochs=1, batch_size=4)
    saved = []
    results = run(prepared, specs, "cpu", minutes=5, save=saved.append, log=lambda s: None)
    assert [r["name"] for r in results["runs"]] == ["tube+pixel/vit_pico/seed0"]
    assert results["failed"][0]["name"] == "mgm+pixel/vit_pico/seed0" and results["not_run"] == []
    assert "Failed: mgm+pixel/vit_pico/seed0: RuntimeError" in report(results, "cmd")
    assert len(saved) == 3      # after each run and at the end


def test_plan_is_seed_major_with_the_controls_after_the_first_seed():
    study = study_config()
    specs = plan(study, seeds=(0, 1))
    assert [(s.method, s.seed, s.role) for s in specs] == [
        *[(m, 0, "grid") for m in METHODS], ("tube+pixel", 0, "control"), ("mgm+pixel", 0, "control"),
        *[(m, 1, "grid") for m in METHODS]]
    assert {s.model for s in specs if s.role == "grid"} == {"vit_tiny"}
    assert {(s.model, s.decoder_dim) for s in specs if s.role == "control"} == {("vit_pico", None)}
    assert all(s.epochs >= 100 for s in specs)
