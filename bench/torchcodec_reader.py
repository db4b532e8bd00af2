"""torchcodec as a reference clip reader, beside PyAV and decord.

torchcodec is not a dependency: install it, without its dependencies, into a folder of its own
(`pip install --no-deps --target /tmp/torchcodec torchcodec==0.17.0`; it uses this environment's
torch). It links FFmpeg's shared libraries at run time; where the system has none, PyAV's wheel
brings FFmpeg under `<site-packages>/av.libs`, with names mangled by auditwheel
(`libavcodec-5e6b81c2.so.62.28.102`). A folder of links named by soname (`libavcodec.so.62`)
lets the dynamic loader find them. LD_LIBRARY_PATH is read when a process starts, so torchcodec
runs in a child process whose environment `torchcodec_env` builds.

Nothing of the project is imported here: the child imports this module too.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

import numpy as np

# auditwheel's name: <soname stem>-<8 hex of hash>.so[.<major>][.<rest of the version>]
MANGLED = re.compile(r"(?P<stem>.+)-[0-9a-f]{8}(?P<so>\.so(?:\.\d+)?)(?:\.\d+)*")


def soname_links(libs: Path, into: Path) -> dict[str, Path]:
    """In `into`, a link named by soname to every mangled library in `libs`
    (`libx264-d6533a8d.so.165` -> `libx264.so.165`). Returns {soname: library}."""
    into.mkdir(parents=True, exist_ok=True)
    links = {}
    for lib in sorted(libs.iterdir()):
        m = MANGLED.fullmatch(lib.name)
        if m is None:
            continue
        name = m["stem"] + m["so"]
        link = into / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(lib.resolve())
        links[name] = lib
    return links


def _site_of(package: str) -> Path:
    """The folder that holds `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{package} is not installed in this environment")
    return Path(spec.origin).parent.parent


def torchcodec_env(torchcodec_path: str, links: Path, site: Path | None = None,
                   base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that imports torchcodec from `torchcodec_path` and this
    checkout's `bench`: `base` (default os.environ) with PYTHONPATH led by both, and LD_LIBRARY_PATH
    led by (1) `links`, filled here with PyAV's FFmpeg by soname, (2) PyAV's bundled libraries,
    (3) torch's, (4) every `nvidia/*/lib` beside torch that holds NVRTC (torchcodec's CUDA build links it).
    `site` is the site-packages holding av and torch (default: where each is installed)."""
    av_site = site or _site_of("av")
    torch_site = site or _site_of("torch")
    av_libs = av_site / "av.libs"
    if not av_libs.is_dir():
        raise RuntimeError(f"no FFmpeg bundled with PyAV at {av_libs}: torchcodec needs FFmpeg's shared libraries")
    soname_links(av_libs, links)
    nvrtc = sorted({str(p.parent) for p in torch_site.glob("nvidia/*/lib/libnvrtc.so*")})
    env = dict(os.environ if base is None else base)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(torchcodec_path), repo] + _kept(env.get("PYTHONPATH")))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(links), str(av_libs), str(torch_site / "torch" / "lib"), *nvrtc]
                                             + _kept(env.get("LD_LIBRARY_PATH")))
    return env


def _kept(path_list: str | None) -> list[str]:
    return [p for p in (path_list or "").split(os.pathsep) if p]


def torchcodec_version(torchcodec_path: str) -> str | None:
    """The version installed in `torchcodec_path`, read from its metadata (no import)."""
    found = list(importlib.metadata.distributions(name="torchcodec", path=[str(torchcodec_path)]))
    return found[0].version if found else None


def decode_clip_torchcodec(clip: dict) -> np.ndarray:
    """The clip's frames (T H W C, uint8 RGB) decoded by torchcodec on one thread and resized to the
    stored size, as PyAV's reader does. Approximate seeking: frame index -> time from the stream's
    frame rate, as PyAV's reader computes it, without first scanning the whole file."""
    import cv2
    from torchcodec.decoders import VideoDecoder

    cv2.setNumThreads(1)  # one core, like every other reader (a child process: nothing else to disturb)
    h, w = clip["hw"]
    decoder = VideoDecoder(clip["source"], seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC")
    frames = decoder.get_frames_at(list(range(clip["start"], clip["stop"], clip["stride"]))).data.numpy()
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
