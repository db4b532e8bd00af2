"""The loader's budget: how many cores keep one GPU busy.

A GPU that trains `clips_per_s` clips a second needs that many clips a second from the loader;
a clip that costs one loader process `ms_per_clip` then needs

    cores per GPU = clips_per_s x ms_per_clip / 1000

cores (one loader worker each) for every GPU. The GPU's rate is a parameter: measured on the GPU
that will train (`python -m bench.gpu_check`, `bench.gpu_suite`), or by default the H200's below.
"""
from __future__ import annotations

# ViT-B 16x224 pretraining clips/s of one H200 per method: its K400 recipe at the paper's per-GPU
# batch, bf16, no compile; the middle of the measured range (docs/benchmarks.md, "GPU", 2026-11-30).
H200_CLIPS_PER_S = {"videomae": 726.0, "mgm": 720.0, "mgmae": 894.0, "mme": 745.0}


def cores_per_gpu(clips_per_s: float, ms_per_clip: float) -> float:
    """Loader cores one GPU needs: its clips/s times what a clip costs one core."""
    return clips_per_s * ms_per_clip / 1000
