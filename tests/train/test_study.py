"""The small-scale study (train/study.py): the CI version end to end on a generated corpus, resume,
the report's hand-written text kept, and the pieces that decide what is compared."""
import json
import os

import pytest

from train import study
from train.study import METHODS, StudyConfig
from train.study_report import BEGIN, END, FINETUNE_PLOT_NAME, LOSS_PLOT_NAME, PLOT_NAME, mean_std


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith("MOTION_MAE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def outputs(out):
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns
            for p in out.rglob("*")
            if p.name.startswith(("ckpt_", "probe", "finetune")) and p.suffix in (".pt", ".json")}


def test_tiny_study_end_to_end_and_resume(data_dir, tmp_path):
    out = tmp_path / "study"
    results = study.main(["--tiny", "--out", str(out)])

    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"].keys() == set(study.TINY["methods"]) == results["methods"].keys()
    # the corpus in study.yaml's look, extracted under the data dir
    assert (data_dir / "shards" / "synthetic-motion-structured-2pc-16f-64px").is_dir()
    assert saved["corpus"]["classes"] == 8 and saved["chance_top1"] == pytest.approx(1 / 8)
    for m in saved["methods"].values():
        assert [c["step"] for c in m["checkpoints"]] == [2, 4]
        for c in m["checkpoints"]:
            for metric in ("top1", "top5"):
                assert c[metric]["n"] == 1 and all(0.0 <= v <= 1.0 for v in c[metric]["values"])
        assert m["loss"] and all(x["first"] > 0 for x in m["loss"]) and m["zero_loss"] > 0
    assert 0.0 <= saved["random_init"]["top1"]["mean"] <= 1.0
    # the fine-tuning stage of study.yaml, a few steps: every run's last checkpoint and random init
    tuned = [m["finetune"] for m in saved["methods"].values()] + [saved["random_init"]["finetune"]]
    assert all(f["steps"] == study.TINY["finetune"]["max_steps"] and f["top1"]["n"] == 1 for f in tuned)
    assert saved["study"]["finetune"]["flip"] is False   # labels with a direction: no mirrored clips
    report = out / "results.md"
    text = report.read_text()
    assert BEGIN in text and END in text and all(f"`{m}`" in text for m in study.TINY["methods"])
    assert "random init" in text and saved["command"] in text
    assert (out / "images" / PLOT_NAME).stat().st_size > 1000 and (out / "images" / LOSS_PLOT_NAME).exists()
    assert (out / "images" / FINETUNE_PLOT_NAME).exists() and f"images/{FINETUNE_PLOT_NAME}" in text

    # a second run finds every checkpoint and probe on disk and redoes nothing; text around the
    # generated section (the discussion) survives
    report.write_text(text + "\n## Discussion\n\nwritten by hand\n")
    before = outputs(out)
    assert len(before) == 2 * 2 * 2 + 1 + 3  # 2 methods x 2 stops x (ckpt + probe) + random probe + 3 fine-tunes
    study.main(["--tiny", "--out", str(out)])
    assert outputs(out) == before
    again = report.read_text()
    assert again.count(BEGIN) == 1 and again.endswith("## Discussion\n\nwritten by hand\n")

    # other settings in the same folder would mix runs of two studies: refused, nothing touched
    with pytest.raises(SystemExit, match=r"other settings \(steps: 4 there, 6 now\)"):
        study.main(["--tiny", "--out", str(out), "--steps", "6"])
    assert outputs(out) == before


def test_every_method_shares_the_config_but_its_mask_and_target():
    cfg = StudyConfig(steps=10, checkpoints=(0.25, 0.5), shards="/nowhere", train={"model": "vit_pico"})
    assert cfg.stops() == [2, 5, 10]   # the whole budget is always probed
    runs = {m: cfg.run_config(m, seed=1) for m in METHODS}
    for name, run in runs.items():
        assert (run.mask, run.target, run.seed, run.max_steps) == (*name.split("+"), 1, 10)
        assert run.ratio == (0.7 if run.target == "mme" else 0.9)   # each method's own ratio
    shared = {k: v for k, v in runs["tube+pixel"].to_dict().items() if k not in ("mask", "target", "out")}
    for run in runs.values():
        assert {k: v for k, v in run.to_dict().items() if k not in ("mask", "target", "out")} == shared


def test_config_errors_are_loud():
    with pytest.raises(ValueError, match="unknown methods"):
        StudyConfig(methods=("tube+hog+x",)).validate()
    with pytest.raises(ValueError, match="unknown config keys"):
        StudyConfig(train={"modle": "vit_pico"}).validate()
    with pytest.raises(ValueError, match="unknown fine-tuning keys"):
        StudyConfig(finetune={"max_steps": 10, "base_rl": 0.1}).validate()
    with pytest.raises(ValueError, match="max_steps >= 1"):
        StudyConfig(finetune={"base_lr": 0.1}).validate()


def test_style_names_its_own_corpus(data_dir):
    assert StudyConfig().corpus_name() == "synthetic-motion"
    structured = StudyConfig(style="structured")
    assert structured.corpus_name() == "synthetic-motion-structured"
    assert structured.root_path() == data_dir / "synthetic-motion-structured"
    assert StudyConfig(style="structured", per_class=2, frames=16, size=64).corpus_name() == \
        "synthetic-motion-structured-2pc-16f-64px"


def test_mean_std_is_over_seeds_with_sample_std():
    s = mean_std([0.25, 0.5, 0.75])
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.25) and s["n"] == 3
    assert mean_std([0.3])["std"] == 0.0



def test_fine_tuned_cell_lists_every_seed():
    from train.study_report import format_finetuned

    three = {"top1": mean_std([0.43, 0.156, 0.492]), "last_loss": mean_std([1.0, 1.7, 1.0])}
    assert format_finetuned(three) == "0.359 ± 0.179 (0.43 / 0.16 / 0.49; loss 1.23)"
    assert format_finetuned({"top1": mean_std([0.4]), "last_loss": mean_std([1.19])}) == "0.400 (loss 1.19)"

@pytest.mark.slow
def test_default_study(tmp_path):
    """The full default study (about 75 min on 2 CPU cores), into tmp_path; the corpus is the shared one."""
    results = study.main(["--out", str(tmp_path / "study")])
    seeds = len(results["study"]["seeds"])
    assert results["methods"].keys() == set(METHODS)
    for m in results["methods"].values():
        assert all(c["top1"]["n"] == seeds and 0.0 <= c["top1"]["mean"] <= 1.0 for c in m["checkpoints"])
        assert m["finetune"]["top1"]["n"] == seeds
    assert (tmp_path / "study" / "results.md").exists()


def test_the_study_drives_the_extraction_cli(data_dir, tmp_path):
    """train/ imports nothing from preprocess/: the study runs the extraction CLI as a subprocess,
    with the synthetic corpus's documented environment variables; an unknown look fails there, loudly."""
    from preprocess.datasets.synthetic_motion import ENV
    from train.study import SYNTH_ENV, extract

    assert SYNTH_ENV == ENV
    cfg = StudyConfig(style="plaid", per_class=1, frames=8, size=32, out=str(tmp_path / "study"))
    with pytest.raises(RuntimeError, match="unknown style"):
        extract(cfg, log=lambda s: None)
