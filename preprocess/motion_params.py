"""The motion every video of a synthetic-motion corpus was generated with, as JSON: what the
study's clip-level motion probe regresses (train/eval/motion_probe.py reads the file; train/
imports nothing from preprocess/, so the study runs this as a subprocess, like extract.py).

    python preprocess/motion_params.py ROOT OUT.json   # size and look from the environment, as extract.py

OUT.json: video id -> {"label", "relative" ((frames-1, 2) px/frame of the object relative to the
background), "angular_velocity" (deg/frame), "pan" (px/frame), "size" (px), "start" (the object's
unrotated top-left at frame 0, px), "angle" (deg at frame 0)}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # `python preprocess/motion_params.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess.datasets.synthetic_motion import motion_parameters, requested  # noqa: E402


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python preprocess/motion_params.py ROOT OUT.json")
    out = Path(argv[1])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(motion_parameters(requested(Path(argv[0])))))
    tmp.replace(out)


if __name__ == "__main__":
    main(sys.argv[1:])
