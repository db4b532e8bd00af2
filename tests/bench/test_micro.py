"""bench.micro runs every stage it times (tiny sizes); its numbers are printed, not asserted."""
from bench.micro import DIS_SETTINGS, main


def test_micro_benchmark_runs_every_stage():
    result = main(["--tiny"])
    assert result["decode"]["plain_fps"] > 0 and result["decode"]["mv_export_fps"] > 0
    assert len(result["flow"]) == len(DIS_SETTINGS) + 1 and result["hog_ms"] > 0
