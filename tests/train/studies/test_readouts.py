"""The study's readout statistics on constructed numbers: the minimum detectable difference, the
hierarchical bootstrap, method keys with a ratio, and the contrasts' verdicts."""
import math

import numpy as np
import pytest

from train.studies.config import METHODS, parse_method, method_paper
from train.studies.stats import (hierarchical_bootstrap, holm_family, holm_interval, holm_levels, mdd, paired,
                                 readout_mdd, t80, t_quantile_two_sided, verdict)


def test_mdd_on_known_inputs():
    # 5 seeds, sd 1: (t_0.975(4) + t_0.80(4)) / sqrt 5 = (2.776 + 0.941) / 2.2361
    assert mdd(1.0, 5) == pytest.approx(1.66229, abs=1e-4)
    assert mdd(0.02, 3) == pytest.approx((4.303 + 1.061) * 0.02 / math.sqrt(3))
    assert mdd(1.0, 1) is None
    assert t80(1000) == pytest.approx(0.8420, abs=1e-3)        # towards the normal's 0.8416
    # pooled over methods, then sqrt 2 for a difference: two methods of sd 0.01 over 3 seeds
    assert readout_mdd([[0.40, 0.41, 0.42], [0.30, 0.31, 0.32]]) == pytest.approx(mdd(math.sqrt(2) * 0.01, 3))


def test_hierarchical_bootstrap_on_constructed_data():
    # constant within seeds: only the seeds vary, and the mean of two draws is 0.3, 0.4 or 0.5
    lo, hi = hierarchical_bootstrap({0: [0.3] * 50, 1: [0.5] * 50})
    assert (lo, hi) == (pytest.approx(0.3), pytest.approx(0.5))
    # identical seeds: only the videos vary, as a plain bootstrap over 2 x 400 videos would
    rng = np.random.default_rng(0)
    videos = (rng.random(400) < 0.6).astype(float)
    lo, hi = hierarchical_bootstrap({0: videos, 1: videos}, resamples=1000)
    se = videos.std() / math.sqrt(400)
    assert lo < videos.mean() < hi and 2.5 * se < hi - lo < 5 * se
    # everything equal: no width
    assert hierarchical_bootstrap({0: [1.0] * 3, 1: [1.0] * 3}) == [1.0, 1.0]


def test_method_keys_carry_a_ratio():
    assert parse_method("tube+pixel") == ("tube", None, "pixel")
    assert parse_method("mgm@0.75+pixel") == ("mgm", 0.75, "pixel")
    assert method_paper("mgm@0.75+pixel") == "MGM at ratio 0.75"
    for bad in ("mgm@1.5+pixel", "mgm@x+pixel", "blob+pixel", "tube+blob", "tube"):
        with pytest.raises(ValueError):
            parse_method(bad)
    assert {"tube+pixel", "mgm+pixel", "tube+mme", "mgm+mme", "mgm@0.75+pixel", "mgmae+pixel",
            "tube+hog"} == set(METHODS)


def test_verdicts_read_the_adjusted_p_and_the_sign():
    up = paired({"0": 0.5, "1": 0.6, "2": 0.55}, {"0": 0.4, "1": 0.48, "2": 0.46})
    down = paired({"0": 0.4, "1": 0.48, "2": 0.46}, {"0": 0.5, "1": 0.6, "2": 0.55})
    assert verdict(up, 0.01) == "helps" and verdict(down, 0.01) == "hurts"
    assert verdict(up, 0.2) == "inside the noise" and verdict(paired({"0": 1.0}, {"0": 0.0}), None) == "cannot tell"
    same = paired({"0": 0.5, "1": 0.6}, {"0": 0.4, "1": 0.5})      # both seeds +0.1: no spread
    assert same["p"] == 0.0 and verdict(same, 0.0) == "cannot tell"
    assert verdict(paired({"0": 0.5, "1": 0.6}, {"0": 0.5, "1": 0.6}), 1.0) == "inside the noise"


def test_a_study_recorded_before_a_setting_existed_resumes(tmp_path):
    import json

    from train.study import check_same_study
    from train.studies.config import StudyConfig

    cfg = StudyConfig(shards="/nowhere")
    record = json.loads(json.dumps(cfg.to_dict()))
    del record["moving_px"]                       # written before the motion probes
    (tmp_path / "study.json").write_text(json.dumps(record))
    check_same_study(cfg, tmp_path / "study.json")
    record["steps"] = 5
    (tmp_path / "study.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="steps: 5 there, 1000 now"):
        check_same_study(cfg, tmp_path / "study.json")


def test_holm_levels_are_the_step_each_test_is_judged_at():
    # m = 4: the smallest p is tested at 0.05 / 4 and rejected; the next (0.03) at 0.05 / 3 is not,
    # so it and every larger one stay at that step's level
    assert holm_levels([0.001, 0.04, 0.03, 0.5]) == pytest.approx([0.0125, 0.05 / 3, 0.05 / 3, 0.05 / 3])
    assert holm_levels([0.001, 0.002]) == pytest.approx([0.025, 0.05])
    assert t_quantile_two_sided(0.05, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_two_sided(0.05, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_two_sided(0.0125, 4) == pytest.approx(4.315, abs=1e-3)   # Bonferroni over 4 at 4 df


def test_a_holm_interval_excludes_0_exactly_where_holm_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        family = [paired({str(s): float(x) for s, x in enumerate(rng.normal(shift, 1, 5))},
                         {str(s): 0.0 for s in range(5)}) for shift in rng.uniform(0, 3, 5)]
        comparisons = [{"step": 1, "r": p} for p in family]
        q = holm_family(comparisons, 1, ["r"])
        levels = holm_family(comparisons, 1, ["r"], levels=True)
        for i, p in enumerate(family):
            lo, hi = holm_interval(p, levels[i, "r"])
            assert (lo > 0 or hi < 0) == (q[i, "r"] <= 0.05)
            assert hi - lo >= p["t_ci95"][1] - p["t_ci95"][0] - 1e-12   # never narrower than the unadjusted one
