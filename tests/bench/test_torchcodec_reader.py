"""torchcodec as a reference clip reader: the child process's environment, its imports, and (where
torchcodec is installed) the frames it decodes against PyAV's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import scale as bench_scale
from bench.torchcodec_reader import soname_links, torchcodec_env, torchcodec_version
from preprocess.synthetic import MovingObject, Scene, encode, render

REPO = Path(__file__).resolve().parents[2]
# The folder torchcodec was installed into (`pip install --no-deps --target DIR torchcodec`); CI has none.
TORCHCODEC = os.environ.get("MOTION_MAE_TORCHCODEC", "/tmp/torchcodec")
MANGLED = {"libavcodec-5e6b81c2.so.62.28.102": "libavcodec.so.62", "libx264-d6533a8d.so.165": "libx264.so.165",
           "libhogweed-006f41d4.so.6.11": "libhogweed.so.6",
           "libopencore-amrnb-d72c52e2.so.0.0.5": "libopencore-amrnb.so.0"}


@pytest.fixture
def site(tmp_path) -> Path:
    """A site-packages shaped like PyAV's and torch's wheels: mangled FFmpeg, torch's libs, NVRTC in one
    of the nvidia folders."""
    site = tmp_path / "site"
    for name in [*MANGLED, "README.txt"]:
        (site / "av.libs").mkdir(parents=True, exist_ok=True)
        (site / "av.libs" / name).write_text(name)
    for lib in ("torch/lib/libtorch.so", "nvidia/cu13/lib/libnvrtc.so.13", "nvidia/cudnn/lib/libcudnn.so.9"):
        (site / lib).parent.mkdir(parents=True, exist_ok=True)
        (site / lib).write_text(lib)
    return site


def test_links_name_pyav_ffmpeg_by_soname(site, tmp_path):
    links = soname_links(site / "av.libs", tmp_path / "links")
    assert links == {soname: site / "av.libs" / name for name, soname in MANGLED.items()}
    for name, soname in MANGLED.items():
        assert (tmp_path / "links" / soname).read_text() == name
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == sorted(MANGLED.values())
    soname_links(site / "av.libs", tmp_path / "links")  # again, over the old links: the same links


def test_env_leads_both_paths_and_keeps_the_rest(site, tmp_path):
    base = {"PYTHONPATH": "/keep/py", "LD_LIBRARY_PATH": "/keep/ld", "HOME": "/home/x"}
    env = torchcodec_env("/opt/tc", tmp_path / "links", site=site, base=base)
    assert env["HOME"] == "/home/x" and base["PYTHONPATH"] == "/keep/py"
    assert env["PYTHONPATH"].split(os.pathsep) == ["/opt/tc", str(REPO), "/keep/py"]
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [
        str(tmp_path / "links"), str(site / "av.libs"), str(site / "torch" / "lib"),
        str(site / "nvidia" / "cu13" / "lib"), "/keep/ld"]
    assert (tmp_path / "links" / "libavcodec.so.62").is_symlink()


def test_env_without_pyav_ffmpeg_says_so(site, tmp_path):
    (site / "av.libs").rename(site / "elsewhere")
    with pytest.raises(RuntimeError, match="no FFmpeg bundled with PyAV"):
        torchcodec_env("/opt/tc", tmp_path / "links", site=site, base={})


def test_no_path_or_no_install_is_a_note_not_a_number(tmp_path):
    assert bench_scale.torchcodec_seconds(None, []) == (None, "no --torchcodec-path given")
    assert bench_scale.torchcodec_seconds(str(tmp_path), []) == (None, f"no torchcodec installed in {tmp_path}")


def test_the_torchcodec_side_of_bench_scale_imports_nothing_of_the_project(tmp_path):
    """The torchcodec half (argv[1] TORCHCODEC_SIDE, no parser) runs on a stand-in torchcodec here, since CI
    has none, and must not import the project's modules, as the decord half must not."""
    stub = tmp_path / "stub" / "torchcodec"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "decoders.py").write_text(
        "import types, torch\n"
        "class VideoDecoder:\n"
        "    def __init__(self, source, seek_mode, num_ffmpeg_threads, dimension_order):\n"
        "        assert (seek_mode, num_ffmpeg_threads, dimension_order) == ('approximate', 1, 'NHWC')\n"
        "    def get_frames_at(self, indices):\n"
        "        return types.SimpleNamespace(data=torch.zeros(len(indices), 8, 12, 3, dtype=torch.uint8))\n")
    clips = tmp_path / "clips.json"
    clips.write_text(json.dumps([{"source": "x.mp4", "start": 0, "stop": 16, "stride": 4, "hw": [4, 6]}] * 3))
    code = ("import runpy, sys; sys.argv = ['bench.scale', sys.argv[1], sys.argv[2]]; "
            "runpy.run_module('bench.scale', run_name='__main__'); "
            "assert not {'shards', 'train', 'preprocess'} & set(sys.modules), sorted(sys.modules)")
    env = {**os.environ, "PYTHONPATH": f"{stub.parent}{os.pathsep}{REPO}"}
    run = subprocess.run([sys.executable, "-c", code, bench_scale.TORCHCODEC_SIDE, str(clips)], capture_output=True,
                         text=True, cwd=REPO, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(json.loads(run.stdout.strip().splitlines()[-1])) == 3


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """40 frames with B-frames and a short GOP, so that reading a clip means seeking."""
    scene = Scene(height=64, width=96, num_frames=40, bg_velocity=(2.0, 1.0), seed=5,
                  objects=(MovingObject(16, (10, 10), (1.0, 0.5)),))
    return encode(tmp_path_factory.mktemp("torchcodec") / "clip", render(scene), codec="h264", bframes=2, gop=12)


@pytest.mark.skipif(torchcodec_version(TORCHCODEC) is None,
                    reason=f"torchcodec is not installed in {TORCHCODEC} (set MOTION_MAE_TORCHCODEC to the folder "
                           "`pip install --no-deps --target DIR torchcodec` installed it into)")
@pytest.mark.parametrize("hw", [(64, 96), (32, 48)], ids=["stored size", "resized"])
def test_torchcodec_decodes_the_clip_pyav_decodes(video, tmp_path, hw):
    clip = {"id": "clip", "source": str(video), "start": 13, "stop": 38, "stride": 4, "hw": list(hw)}
    code = ("import json, sys, numpy as np; from bench.torchcodec_reader import decode_clip_torchcodec; "
            "np.save(sys.argv[2], decode_clip_torchcodec(json.loads(sys.argv[1])))")
    run = subprocess.run([sys.executable, "-c", code, json.dumps(clip), str(tmp_path / "frames.npy")],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env=torchcodec_env(TORCHCODEC, tmp_path / "links"))
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.load(tmp_path / "frames.npy").astype(np.float32)
    want = bench_scale.decode_clip_pyav(clip).astype(np.float32)
    assert got.shape == want.shape == (7, *hw, 3)
    err = np.abs(got - want).mean()
    assert err < 2.0, err
    # one frame off would be far worse: the comparison can tell
    earlier = bench_scale.decode_clip_pyav({**clip, "start": 12, "stop": 37}).astype(np.float32)
    assert np.abs(got - earlier).mean() > 2 * err + 1

    seconds, note = bench_scale.torchcodec_seconds(TORCHCODEC, [clip, clip])
    assert seconds is not None and len(seconds) == 2, note
    assert note.startswith(f"torchcodec {torchcodec_version(TORCHCODEC)} from {TORCHCODEC}")
    seconds, note = bench_scale.torchcodec_seconds(TORCHCODEC, [{**clip, "source": str(tmp_path / "none.mp4")}])
    assert seconds is None and "failed" in note and "none.mp4" in note, note
