"""The small-scale study (train/study.py): the CI version end to end on a generated corpus, resume,
the report's hand-written text kept, and the pieces that decide what is compared."""
import json
import os

import numpy as np
import pytest

from train import study
from train.study import METHODS, StudyConfig
from train.studies.report import BEGIN, END, FINETUNE_PLOT_NAME, LOSS_PLOT_NAME, PLOT_NAME, SEEDS_PLOT_NAME
from train.studies.config import parse_method
from train.studies.stats import (T975, gate, holm, holm_family, mean_std, paired, stable, t975, t_two_sided_p,
                               unpaired_se, verdict)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith("MOTION_MAE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def outputs(out):
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns
            for p in out.rglob("*")
            if p.name.startswith(("ckpt_", "probe", "finetune", "heldout", "motion_", "neighbours"))
            and p.suffix in (".pt", ".json", ".npz") or p.name == "motion.json"}


def test_tiny_study_end_to_end_and_resume(data_dir, tmp_path):
    out = tmp_path / "study"
    results = study.main(["--tiny", "--out", str(out), "--finetune-steps", "2"])

    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"].keys() == set(study.TINY["methods"]) == results["methods"].keys()
    # the corpus in study.yaml's look, extracted under the data dir
    assert (data_dir / "shards" / "synthetic-motion-natural-2pc-16f-64px").is_dir()
    assert saved["corpus"]["classes"] == 8 and saved["chance_top1"] == pytest.approx(1 / 8)
    assert saved["pools"] == ["quadrants", "mean"]
    for m in saved["methods"].values():
        assert [c["step"] for c in m["checkpoints"]] == [2, 4]
        for c in m["checkpoints"]:
            assert set(c["per_seed"]) == {"0", "1"}
            for how in ("quadrants", "mean"):
                p = c["probes"][how]
                assert p["top1"]["n"] == 2 and all(0.0 <= v <= 1.0 for v in p["top1"]["values"])
                assert p["videos_ci95"][0] <= p["top1"]["mean"] <= p["videos_ci95"][1] or p["top1"]["std"] > 0
                assert p["weight_decay"] == [0.1, 0.1]          # --tiny: a fixed L2, no cross-validation
        h = m["heldout"]
        assert [x["seed"] for x in h["per_seed"]] == [0, 1] and all(x["clips"] == 8 for x in h["per_seed"])
        # 8 val clips, one per class of the 8 (class-balanced), recorded with every held-out result
        assert all(x["per_class"] == {str(k): 1 for k in range(8)} for x in h["per_seed"])
        assert list(h["by_step"]) == ["2", "4"] and h["by_step"]["4"] == h["ratio"]   # the ratio along the run
        assert h["gate"]["verdict"] == ("PASS" if h["gate"]["worst"] <= 0.8 else "FAIL")
        assert m["loss"] and all(x["first"] > 0 for x in m["loss"])
    # the held-out loss of 4 steps is not below predicting 0: the gate says so
    assert saved["methods"]["tube+pixel"]["heldout"]["gate"]["verdict"] == "FAIL"
    assert saved["methods"]["tube+pixel"]["heldout"]["ratio"]["mean"] > 0.9
    # the tiny holds the 2 x 2 and MGM at 0.75: every pre-registered contrast, on every readout
    pairs = [(a, b) for _, a, b in study.CONTRASTS]
    assert [(c["a"], c["b"]) for c in saved["contrasts"]] == pairs
    assert saved["readouts"] == ["dense_r2", "moving_r2", "speed_r2", "clip_r2", "quadrants", "mean"]
    for c in saved["contrasts"]:
        for r in saved["readouts"]:
            assert c[r]["n"] == 2 and c[r]["verdict"] in ("helps", "hurts", "inside the noise", "cannot tell")
            assert c[r]["p_holm"] >= c[r]["p"] and c[r]["mdd"] >= 0
    assert saved["methods"]["mgm@0.75+pixel"]["mask_ratio"] == 0.75 and \
        saved["methods"]["mgm+pixel"]["mask_ratio"] == 0.9
    # top-1 along the run for the same pairs, at both checkpoints
    assert [(c["a"], c["b"], c["step"]) for c in saved["comparisons"]] == [p + (s,) for p in pairs for s in (2, 4)]
    # the motion probes of every encoder: a val set with every class, the generator's displacements
    for m in [*saved["methods"].values(), saved["random_init"]]:
        mo = m["motion"]
        assert set(mo["per_seed"]) == {"0", "1"} and mo["dense_r2"]["n"] == 2 and mo["clip_r2"]["n"] == 2
        assert set(mo["per_param"]) == {"vx", "vy", "speed", "angular_velocity"} and 0 < mo["moving_share"] < 0.5
        assert mo["speed_r2"]["n"] == 2
    motion = json.loads((out / "tube+pixel" / "seed0" / "motion_4.json").read_text())
    assert motion["dense"]["source"] == "generator" and motion["videos"] == {"train": 8, "val": 8}
    # the gates: the predictor's loss on the same held-out clips, the hierarchical interval of the probe
    for m in saved["methods"].values():
        assert all(x["predictor"] > 0 for x in m["heldout"]["per_seed"]) and m["learns"]["predictor_ratio"] > 0
        assert m["learns"]["verdict"] in ("PASS", "FAIL") and m["useful"]["verdict"] in ("PASS", "FAIL")
        assert m["useful"]["videos"] == 8 and m["useful"]["ci95"][0] <= m["useful"]["diff"] <= m["useful"]["ci95"][1]
    assert set(saved["seconds"]) == {"extract", "pretrain", "heldout", "probe", "motion", "finetune"}
    # every probe (random init included) read its views from one cache: train and val, decoded once
    caches = sorted(p.name.split("_")[0] for p in (out / "view_cache").iterdir())
    assert caches == ["train", "val"] and all((p / "key.json").is_file() for p in (out / "view_cache").iterdir())
    probes = sorted(out.rglob("probe*.json"))
    assert len(probes) == 5 * 2 * 2 + 2
    # a run's earlier checkpoint is probed with the L2 its last checkpoint chose, per pool
    for run in out.glob("*+*/seed*"):
        last = json.loads((run / "probe_4.json").read_text())
        assert json.loads((run / "probe_2.json").read_text())["config"]["probe_wd"] == \
            {how: p["weight_decay"] for how, p in last["probes"].items()}
    walls = json.loads((out / "walls.json").read_text())   # wall time per stage and seed (jobs may overlap)
    assert set(walls) == {"pretrain", "heldout", "probe", "motion", "finetune"} and \
        all(set(w) == {"0", "1"} for w in walls.values())
    assert {json.loads(p.read_text())["config"]["view_cache"] for p in probes} == {str(out / "view_cache")}
    # the fine-tuning stage, switched on: every run's last checkpoint and random init
    tuned = [m["finetune"] for m in saved["methods"].values()] + [saved["random_init"]["finetune"]]
    assert all(f["steps"] == 2 and f["top1"]["n"] == 2 and isinstance(f["stable"], bool) for f in tuned)
    assert saved["study"]["finetune"]["flip"] is False   # labels with a direction: no mirrored clips
    report = out / "results.md"
    text = report.read_text()
    assert BEGIN in text and END in text and all(f"`{m}`" in text for m in study.TINY["methods"])
    assert "random init" in text and saved["command"] in text and "**FAIL**" in text
    assert "| method | ratio at 2 steps | ratio at 4 steps |\n" in text
    assert "Held-out clips per class (drawn class-balanced, seeded; the same for every run): " in text
    assert "Holm-adjusted over the 5 contrasts of that readout" in text
    assert "### Motion probes" in text and "### Gates: does it learn, is it useful?" in text
    # the baseline is the better of the two, in every held-out record
    for m in saved["methods"].values():
        for x in m["heldout"]["per_seed"]:
            assert x["baseline"] == min(x["predict0"], x["predict_mean"])
            assert x["ratio"] == pytest.approx(x["loss"] / x["baseline"])
    assert "| mask under pixel: MGM - tube (`mgm+pixel` - `tube+pixel`) |" in text and "### Fine-tuning" in text
    for name in (PLOT_NAME, SEEDS_PLOT_NAME, LOSS_PLOT_NAME, FINETUNE_PLOT_NAME):
        assert (out / "images" / name).stat().st_size > 1000 and f"images/{name}" in text

    # a second run finds every checkpoint, held-out loss and probe on disk and redoes nothing; text
    # around the generated section (the discussion) survives
    report.write_text(text + "\n## Discussion\n\nwritten by hand\n")
    before = outputs(out)
    # 5 methods x 2 seeds x (2 stops x (ckpt + probe + held-out) + fine-tune + motion) + 5 predictors
    # + 2 x random (probe + fine-tune + motion) + the generator's motion parameters
    assert len(before) == 5 * 2 * (2 * 3 + 2) + 5 + 2 * 3 + 1
    study.main(["--tiny", "--out", str(out), "--finetune-steps", "2"])
    assert outputs(out) == before
    again = report.read_text()
    assert again.count(BEGIN) == 1 and again.endswith("## Discussion\n\nwritten by hand\n")

    # runs and probes side by side in spawned processes (--parallel-runs 2 --probe-workers 2) give the
    # same numbers: seed 1 redone that way
    seed1 = {p: json.loads(p.read_text()) for p in out.glob("*/seed1/*.json") if p.name.startswith(("probe", "train"))}
    assert len(seed1) == 5 * 2 * 2 + 1
    for run in out.glob("*+*/seed1"):
        for p in run.iterdir():
            if p.name != "finetune_4.json":
                p.unlink()
    (out / "random" / "seed1" / "probe.json").unlink()
    study.main(["--tiny", "--out", str(out), "--finetune-steps", "2", "--parallel-runs", "2", "--probe-workers", "2"])
    for p, r in seed1.items():
        again = json.loads(p.read_text())
        assert (again["probes"] == r["probes"]) if "probes" in r else (again["last_loss"] == r["last_loss"]), p
    assert all((run / "pretrain.log").stat().st_size > 0 for run in out.glob("*+*/seed1"))
    before = outputs(out)

    # other settings in the same folder would mix runs of two studies: refused, nothing touched
    with pytest.raises(SystemExit, match=r"other settings \(steps: 4 there, 6 now\)"):
        study.main(["--tiny", "--out", str(out), "--finetune-steps", "2", "--steps", "6"])
    with pytest.raises(SystemExit, match=r"probe_pool: 'quadrants' there, 'time' now"):
        study.main(["--tiny", "--out", str(out), "--finetune-steps", "2", "--probe-pool", "time"])
    assert outputs(out) == before


def test_every_method_shares_the_config_but_its_mask_and_target():
    cfg = StudyConfig(steps=10, checkpoints=(0.25, 0.5), shards="/nowhere", train={"model": "vit_pico"},
                      target_norms={"mme": "none"})
    assert cfg.stops() == [2, 5, 10]   # the whole budget is always probed
    runs = {m: cfg.run_config(m, seed=1) for m in METHODS}
    for name, run in runs.items():
        mask, ratio, target = parse_method(name)
        assert (run.mask, run.target, run.seed, run.max_steps) == (mask, target, 1, 10)
        # each method's own ratio: the key's, else its target's
        assert run.ratio == (ratio or (0.7 if run.target == "mme" else 0.9))
        assert run.target_norm == ("none" if run.target == "mme" else "")   # and its target's normalization
    own = ("mask", "mask_ratio", "target", "target_norm", "out")
    shared = {k: v for k, v in runs["tube+pixel"].to_dict().items() if k not in own}
    for run in runs.values():
        assert {k: v for k, v in run.to_dict().items() if k not in own} == shared
    with pytest.raises(ValueError, match="unknown targets"):
        StudyConfig(shards="/nowhere", target_norms={"pixels": "none"}).validate()


def test_longest_runs_start_first():
    from train.studies.stages import run_cost

    assert sorted(METHODS, key=run_cost, reverse=True) == ["mgm+mme", "tube+mme", "mgmae+pixel", "mgm+pixel",
                                                           "mgm@0.75+pixel", "tube+pixel", "tube+hog"]


def test_a_gpu_study_runs_gpu_jobs_side_by_side():
    # on a GPU the pool holds --gpu-jobs processes (1: in this process); on the CPU its cores' count
    from train.study import parse_args
    from train.studies.stages import pool_size

    cuda = parse_args(["--device", "cuda", "--gpu-jobs", "6"])
    assert cuda.gpu_jobs == 6 and pool_size(cuda, 2) == 6
    assert pool_size(StudyConfig(train={"device": "cuda"}), 2) == 1
    assert pool_size(StudyConfig(train={"device": "cpu"}, gpu_jobs=6), 3) == 3
    with pytest.raises(ValueError, match="gpu_jobs >= 1"):
        StudyConfig(gpu_jobs=0).validate()


def test_config_errors_are_loud():
    with pytest.raises(ValueError, match="unknown method"):
        StudyConfig(methods=("tube+hog+x",)).validate()
    with pytest.raises(ValueError, match="unknown config keys"):
        StudyConfig(train={"modle": "vit_pico"}).validate()
    with pytest.raises(ValueError, match="unknown fine-tuning keys"):
        StudyConfig(finetune={"max_steps": 10, "base_rl": 0.1}).validate()
    with pytest.raises(ValueError, match="unknown probe_pool"):
        StudyConfig(probe_pool="max").validate()
    with pytest.raises(ValueError, match="'cv' or a number"):
        StudyConfig(probe_wd="often").validate()
    assert not StudyConfig(finetune={"base_lr": 0.1}).finetunes        # fine-tuning is off without max_steps
    assert StudyConfig(finetune={"max_steps": 5}).finetunes


def test_defaults_are_the_issues_study():
    cfg = StudyConfig()
    assert cfg.seeds == (0, 1, 2, 3, 4) and cfg.checkpoints == (0.25, 0.5, 1.0) and len(cfg.methods) == 7
    assert (cfg.per_class, cfg.frames, cfg.size, cfg.style) == (512, 32, 64, "natural")
    assert cfg.per_class * 8 // 4 == 1024                                 # val videos: i % 4 == 1
    yaml = study.parse_args([])
    assert yaml.seeds == cfg.seeds and yaml.style == "natural" and not yaml.finetunes
    t = yaml.base_train()
    assert (t.model, t.num_frames, t.input_size, t.patch_size, t.sampling_rate, t.positions) == \
        ("vit_pico", 8, 64, 8, 4, "separable")
    assert (t.batch_size, t.base_lr, t.warmup_steps, t.num_workers, t.device) == (32, 0.008, 50, 2, "auto")
    assert yaml.steps == 1000
    # at patch 8 a token holds one tracked point: MME's trajectories are not standardized over points
    assert yaml.run_config("tube+mme", 0).target_norm == "none"
    # what a GPU run changes, from the command line
    gpu = study.parse_args(["--device", "cuda", "--batch-size", "256", "--num-workers", "8", "--steps", "3000",
                            "--finetune-steps", "500"]).base_train()
    assert (gpu.device, gpu.batch_size, gpu.num_workers) == ("cuda", 256, 8)
    assert study.parse_args(["--steps", "3000", "--finetune-steps", "500"]).finetune["max_steps"] == 500


def test_style_names_its_own_corpus(data_dir):
    # the generator's default corpus keeps its plain name; the study's default names its size and look
    assert StudyConfig(per_class=64, frames=32, size=112, style="noise").corpus_name() == "synthetic-motion"
    assert StudyConfig().corpus_name() == "synthetic-motion-natural-512pc-32f-64px"
    structured = StudyConfig(style="structured", per_class=64, frames=32, size=112)
    assert structured.corpus_name() == "synthetic-motion-structured"
    assert structured.root_path() == data_dir / "synthetic-motion-structured"
    assert StudyConfig(style="structured", per_class=2, frames=16, size=64).corpus_name() == \
        "synthetic-motion-structured-2pc-16f-64px"


def test_mean_std_is_over_seeds_with_sample_std_and_a_t_interval():
    s = mean_std([0.25, 0.5, 0.75])
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.25) and s["n"] == 3
    assert s["ci95"] == pytest.approx([0.5 - 4.303 * 0.25 / 3 ** 0.5, 0.5 + 4.303 * 0.25 / 3 ** 0.5])
    assert mean_std([0.3])["std"] == 0.0 and mean_std([0.3])["ci95"] is None
    assert t975(4) == 2.776 and t975(30) == 2.042 and t975(60) == pytest.approx(2.000, abs=1e-3)
    assert t975(1000) == pytest.approx(1.962, abs=1e-3)


def test_paired_test_on_made_up_results():
    tube = {"0": 0.40, "1": 0.42, "2": 0.38, "3": 0.45, "4": 0.41}
    # MGM better on every seed by 0.02-0.04: outside the noise
    mgm = {"0": 0.43, "1": 0.44, "2": 0.42, "3": 0.47, "4": 0.44}
    p = paired(mgm, tube)
    assert p["diff"] == pytest.approx([0.03, 0.02, 0.04, 0.02, 0.03]) and p["mean"] == pytest.approx(0.028)
    se = np.std([0.03, 0.02, 0.04, 0.02, 0.03], ddof=1) / 5 ** 0.5
    assert p["se"] == pytest.approx(se) and p["t_ci95"] == pytest.approx([0.028 - 2.776 * se, 0.028 + 2.776 * se])
    assert (p["wins"], p["ties"], p["losses"]) == (5, 0, 0) and p["inside_noise"] is False
    lo, hi = p["boot_ci95"]
    assert 0.02 <= lo <= 0.028 <= hi <= 0.04
    # t = 0.028 / se = 7.483 on 4 df: P(|T| >= t) = 1 - sqrt(14/15) (1 + 1/30) = 0.001705
    assert p["p"] == pytest.approx(1 - (14 / 15) ** 0.5 * (1 + 1 / 30), rel=1e-9) == pytest.approx(0.001705, abs=1e-6)
    assert verdict(p, 0.0068) == "helps"
    # the same test in a family where Holm lifts its p above 5 %: no longer outside the noise
    assert verdict(p, 0.06) == "inside the noise"
    # a larger mean gain that flips sign across seeds: inside the noise
    noisy = {"0": 0.50, "1": 0.36, "2": 0.45, "3": 0.40, "4": 0.40}
    q = paired(noisy, tube)
    assert q["mean"] == pytest.approx(0.010) and (q["wins"], q["ties"], q["losses"]) == (2, 0, 3)
    assert q["t_ci95"][0] < 0 < q["t_ci95"][1] and q["inside_noise"] is True
    assert verdict(q, q["p"]) == "inside the noise"
    # seeds only one side has are left out; one seed: no interval, no verdict
    assert paired({"0": 0.5, "9": 0.1}, {"0": 0.4})["n"] == 1
    assert paired({"0": 0.5}, {"0": 0.4})["inside_noise"] is None


def test_gate_verdict_and_stability():
    assert gate([0.62, 0.71, 0.79])["verdict"] == "PASS"
    g = gate([0.62, 0.71, 0.83])       # one seed that did not get there fails the method
    assert g["verdict"] == "FAIL" and g["worst"] == 0.83 and g["mean"] == pytest.approx(0.72)
    assert gate([0.85], threshold=0.9)["verdict"] == "PASS"
    assert stable(0.03, 5, 0.05) and not stable(0.12, 5, 0.05) and not stable(0.0, 1, 0.05)
    v = unpaired_se([0.30, 0.32, 0.34], [0.20, 0.22, 0.24])
    assert v["diff"] == pytest.approx(0.10) and v["se"] == pytest.approx((2 * 0.0004 / 3) ** 0.5)
    assert v["z"] == pytest.approx(0.10 / (2 * 0.0004 / 3) ** 0.5)


def test_t_p_values_and_holm_on_known_numbers():
    # the t table's 97.5 % quantiles give two-sided p = 0.05 at every df; 4.604 is the 99.5 % one of df 4
    assert all(t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4) for df, t in enumerate(T975, start=1))
    assert t_two_sided_p(4.604, 4) == pytest.approx(0.01, abs=1e-5)
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5) and t_two_sided_p(-2.0, 2) == pytest.approx(1 - 2 / 6 ** 0.5)
    assert t_two_sided_p(0.0, 7) == 1.0
    # Holm on 4 p-values: sorted 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1 -> 0.02, 0.03, 0.06, max(0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
    # the family the report adjusts: every pair in every pool at the last step, none earlier
    comparisons = [{"step": s, "quadrants": {"n": 5, "mean": m, "se": 0.01}, "mean": {"n": 5, "mean": m, "se": 0.02}}
                   for s, m in ((500, 0.05), (1000, 0.03), (1000, 0.0))]
    adjusted = holm_family(comparisons, 1000, ["quadrants", "mean"])
    assert set(adjusted) == {(1, "quadrants"), (1, "mean"), (2, "quadrants"), (2, "mean")}
    raw = {k: t_two_sided_p(comparisons[k[0]][k[1]]["mean"] / comparisons[k[0]][k[1]]["se"], 4) for k in adjusted}
    assert raw[(1, "quadrants")] == pytest.approx(0.0400, abs=1e-4)      # t = 3 on 4 df
    assert adjusted[(1, "quadrants")] == pytest.approx(4 * raw[(1, "quadrants")])
    assert adjusted[(1, "mean")] == pytest.approx(3 * raw[(1, "mean")]) and adjusted[(2, "mean")] == 1.0


def test_heldout_ratio_reads_against_the_better_baseline():
    from train.eval.heldout import heldout_baseline
    from train.study import _ratio

    # the cross-fitted constant did worse than 0 out of sample: the ratio reads against predict-0
    assert heldout_baseline(0.9, 1.2) == 0.9 and heldout_baseline(0.9, 0.6) == 0.6
    assert _ratio({"loss": 0.72, "predict0": 0.9, "predict_mean": 1.2}) == pytest.approx(0.8)
    assert _ratio({"loss": 0.48, "predict0": 0.9, "predict_mean": 0.6}) == pytest.approx(0.8)
    assert _ratio({"loss": 0.45, "predict0": 0.9}) == pytest.approx(0.5)   # files without the constant


def test_study_yaml_says_the_folds_it_sets():
    import re

    from train.study import DEFAULT_CONFIG

    text = DEFAULT_CONFIG.read_text()
    folds = study.parse_args([]).probe_folds
    said = re.findall(r"(\d+)[- ]folds?\b", text)
    assert folds == 3 and said and all(int(n) == folds for n in said), said



def made_up_motion(dense: list[float], seeds: list[str]) -> dict:
    """An encoder's motion-probe rows over seeds as train.study.motion_rows writes them: the dense R²
    given, the moving-token R² half of it, the token speed's 0.3 above it, the clip-level R² 0.1 above it."""
    values = {"dense_r2": dense, "moving_r2": [v / 2 for v in dense], "speed_r2": [v + 0.3 for v in dense],
              "clip_r2": [v + 0.1 for v in dense]}
    return {**{k: mean_std(v) for k, v in values.items()}, "halfwidth": dict.fromkeys(values, 0.01),
            "per_param": {k: mean_std(values["clip_r2"]) for k in ("vx", "vy", "speed", "angular_velocity")},
            "moving_share": 0.08,
            "per_seed": {s: {k: v[i] for k, v in values.items()} for i, s in enumerate(seeds)}}


def made_up_results() -> dict:
    """A results dict as train.study.collect writes it, for 2 methods x 5 seeds, with known numbers."""
    seeds = [str(k) for k in range(5)]
    dense = {"tube+pixel": [0.20, 0.22, 0.21, 0.25, 0.22], "mgm+pixel": [0.21, 0.22, 0.20, 0.26, 0.22]}
    top1 = {"tube+pixel": [0.40, 0.42, 0.38, 0.45, 0.41], "mgm+pixel": [0.43, 0.44, 0.42, 0.47, 0.44]}
    random = [0.20, 0.22, 0.19, 0.21, 0.18]

    def rows(values):
        return {how: {"top1": mean_std(values), "top5": mean_std(values), "videos_ci95": [0.0, 1.0],
                      "videos_halfwidth": 0.03, "weight_decay": [0.01] * 5} for how in ("quadrants", "mean")}

    methods = {}
    for name, values in top1.items():
        ratios = [0.70, 0.72, 0.75, 0.71, 0.78] if name == "tube+pixel" else [0.70, 0.72, 0.85, 0.71, 0.78]
        per_seed = {k: {"quadrants": v, "mean": v / 2} for k, v in zip(seeds, values)}
        methods[name] = {
            "paper": study.METHODS[name], "mask": name.split("+")[0], "target": "pixel", "mask_ratio": 0.9,
            "checkpoints": [{"step": 1000, "epochs": 10.4, "clips_seen": 32000, "probes": rows(values),
                             "per_seed": per_seed}],
            "heldout": {"per_seed": [], "ratio": mean_std(ratios), "predict0": mean_std([1.0] * 5), "predict_mean": mean_std([0.99] * 5),
                        "gate": gate(ratios), "by_step": {"500": mean_std([0.8] * 5), "1000": mean_std(ratios)}},
            "loss": [], "finetune": None, "motion": made_up_motion(dense[name], seeds),
            "learns": {"ratio_hi": 0.773, "below_1": True, "falls": True, "beats_predictor": True,
                       "predictor_ratio": 0.91, "verdict": "PASS"},
            "useful": {"pool": "quadrants", "diff": 0.21, "ci95": [0.18, 0.24], "verdict": "PASS"},
            "vs_random": {how: unpaired_se(values, random) for how in ("quadrants", "mean")}}
    comparison = {"a": "mgm+pixel", "b": "tube+pixel", "step": 1000, "epochs": 10.4,
                  **{how: paired({k: v[how] for k, v in methods["mgm+pixel"]["checkpoints"][0]["per_seed"].items()},
                                 {k: v[how] for k, v in methods["tube+pixel"]["checkpoints"][0]["per_seed"].items()})
                     for how in ("quadrants", "mean")}}
    random_init = {"probes": rows(random), "per_seed": {k: {"quadrants": v, "mean": v} for k, v in zip(seeds, random)},
                   "motion": made_up_motion([0.05] * 5, seeds), "finetune": None}
    return {
        **study.readouts(methods, random_init, ["quadrants", "mean"], 1000),
        "command": "python train/study.py", "date": "2026-11-30", "machine": "2 CPU cores", "device": "cpu",
        "study": {"style": "natural", "seeds": list(range(5)), "heldout_clips": 256, "finetune_max_std": 0.05,
                  "finetune": {}},
        "train_config": {"model": "vit_pico", "num_frames": 8, "input_size": 32, "sampling_rate": 4, "tubelet": 2,
                         "patch_size": 8, "positions": "separable", "base_lr": 0.008, "warmup_steps": 50},
        "corpus": {"name": "synthetic-motion-natural-512pc-32f-64px", "shards": "/x", "train_videos": 3072,
                   "val_videos": 1024, "classes": 8, "extract_done": 4096},
        "budget": {"steps": 1000, "batch_size": 32, "clips_seen": 32000, "epochs": 10.42, "seeds": 5},
        "chance_top1": 0.125, "top5_k": 5, "pools": ["quadrants", "mean"],
        "probe": {"clips": 2, "folds": 3, "weight_decay": "cv", "grid": [1e-4, 1e-2, 1.0], "bootstrap": 2000},
        "random_init": random_init, "methods": methods, "comparisons": [comparison], "gate": 0.8,
        "seconds": {"extract": 600.0, "pretrain": 1800.0, "heldout": 60.0, "probe": 3600.0},
        "wall_minutes": 101.0, "this_run_minutes": 101.0,
    }


def test_report_renders_made_up_results(tmp_path):
    from train.studies.report import report_section, write_report

    results = made_up_results()
    text = report_section(results, {"probe": "p.png", "seeds": "s.png", "loss": "l.png"})
    assert "{results" not in text and "**Clip-level**: the quadrants pool" in text   # every placeholder filled
    # ratio 0.732 ± 2.776 x 0.0327 / sqrt 5; one seed at 0.85 fails MGM although its mean passes
    assert "| `tube+pixel` | VideoMAE | 0.9 | 1.000 | 0.990 | 0.732 [0.691, 0.773] | 0.780 | **PASS** |" in text
    assert "| `mgm+pixel` | MGM | 0.9 | 1.000 | 0.990 | 0.752 [0.674, 0.830] | 0.850 | **FAIL** |" in text
    # the probe table: mean [t interval over seeds] ± bootstrap half-width, and the distance from
    # random init: (0.412 - 0.200) / sqrt((0.00067 + 0.00025) / 5) = 15.6 SE
    assert "| `tube+pixel` (VideoMAE) | 0.412 [0.380, 0.444] ± 0.030 |" in text
    assert "| +0.212 (+15.6) |" in text
    # the contrast, top-1: differences 0.03 0.02 0.04 0.02 0.03, se 0.00374, t(4) 2.776, p 0.001705 (t 7.48,
    # 4 df), alone in its readout's family; MDD (2.776 + 0.941) x 0.00837 / sqrt 5 = 0.0139. Dense R²:
    # differences 0.01 0 -0.01 0.01 0, sd 0.00837 as top-1's: inside the noise
    row = next(line for line in text.splitlines() if line.startswith("| mask under pixel: MGM - tube"))
    assert "+0.028 [+0.018, +0.038], p 0.00171: **helps** (MDD 0.014)" in row
    assert row.split(" | ")[1] == "+0.002 [-0.008, +0.012], p 0.621: **inside the noise** (MDD 0.014)"
    assert "Holm-adjusted over the 1 contrasts of that readout" in text
    # the motion table, the readouts' detectable differences, the gates
    # dense 0.22 ± 2.776 x 0.0187 / sqrt 5, the moving tokens' half of it
    assert "| `tube+pixel` | 0.220 [0.197, 0.243] ± 0.010 | 0.110 [0.098, 0.122] ± 0.010 | 0.520 [0.497, " \
           "0.543] ± 0.010 | 0.320 [" in text
    assert "| random init | 0.050 [0.050, 0.050] ± 0.010 |" in text
    # two methods' dense R² spread pooled: sd 0.0209, x sqrt 2, (2.776 + 0.941) / sqrt 5: 0.049
    assert "between two methods (80 % power, two-sided 5 %, paired over 5 seeds, from the seed spread pooled " \
           "over methods): dense motion R² 0.049;" in text
    assert "| `tube+pixel` | 0.773 | yes | yes | 0.910 | yes | **PASS** | +0.210 [+0.180, +0.240] | **PASS** |" in text
    # the ratio along the run, without an extrapolated budget; what the ratio divides by, said
    assert "| `tube+pixel` | 0.800 | 0.732 |" in text and "extrapol" not in text and "ln(steps)" not in text
    assert "ratio = loss / best of predict-0 and the best constant" in text
    assert "Wall time: **101.0 min** of work in all, by stage (min): extract 10.0, pretrain 30.0, heldout 1.0, " \
           "probe 60.0" in text
    assert "chosen by cross-validation (3 folds by train video, from 0.0001, 0.01, 1)" in text
    report = tmp_path / "results.md"
    report.write_text("# Results\n\nkept\n")
    write_report(results, report)
    assert report.read_text().startswith("# Results\n\nkept\n") and (tmp_path / "images" / SEEDS_PLOT_NAME).exists()


def test_fine_tuned_cell_lists_every_seed():
    from train.studies.report import format_finetuned

    three = {"top1": mean_std([0.43, 0.156, 0.492]), "last_loss": mean_std([1.0, 1.7, 1.0])}
    assert format_finetuned(three) == "0.359 ± 0.179 (0.43 / 0.16 / 0.49; loss 1.23)"
    assert format_finetuned({"top1": mean_std([0.4]), "last_loss": mean_std([1.19])}) == "0.400 (loss 1.19)"

@pytest.mark.slow
def test_default_study(tmp_path):
    """The full default study (about 80 min on 2 CPU cores: docs/results.md), into tmp_path; the corpus is the shared one."""
    results = study.main(["--out", str(tmp_path / "study")])
    seeds = len(results["study"]["seeds"])
    assert results["methods"].keys() == set(METHODS)
    for m in results["methods"].values():
        assert all(c["probes"]["quadrants"]["top1"]["n"] == seeds for c in m["checkpoints"])
        assert len(m["heldout"]["per_seed"]) == seeds
    assert (tmp_path / "study" / "results.md").exists()


def test_the_study_drives_the_extraction_cli(data_dir, tmp_path):
    """train/ imports nothing from preprocess/: the study runs the extraction CLI as a subprocess,
    with the synthetic corpus's documented environment variables; an unknown look fails there, loudly."""
    from preprocess.datasets.synthetic_motion import ENV
    from train.studies.stages import SYNTH_ENV, extract

    assert SYNTH_ENV == ENV
    cfg = StudyConfig(style="plaid", per_class=1, frames=8, size=32, out=str(tmp_path / "study"))
    with pytest.raises(RuntimeError, match="unknown style"):
        extract(cfg, log=lambda s: None)
