"""Corpus-scale benchmark: Dask scaling, shard bytes per array, clip reads vs decoding.

    python -m bench.scale                                  # the demo corpus
    python -m bench.scale --decord-python /tmp/decord-venv/bin/python --torchcodec-path /tmp/torchcodec \
        --json out.json

In one run, on the same videos:

1. extraction throughput with 1 and 2 Dask worker processes: the CLI's task function
   (`worker.extract_batch`, one video per task, biggest first) timed from submission to
   the last result on a cluster that is already up; starting the cluster is timed apart.
   Tasks also report their CPU seconds: frames per CPU-second is the per-core rate that
   other load on a shared machine does not distort, and what the K400 estimate uses;
2. shard bytes per video and per source byte, per array, zarr vs hdf5;
3. the time to read one random 16-frame clip (stride 4 when the video is long enough, else
   stride 1) with all nine arrays from zarr and from hdf5, against decoding the same frames
   from the source video with PyAV (open, seek, decode, resize to the stored size) and with
   decord and torchcodec. Neither is a motion-mae dependency: install decord into its own
   environment (`python3 -m venv /tmp/decord-venv --system-site-packages &&
   /tmp/decord-venv/bin/pip install decord==0.6.0`) and pass its interpreter; install torchcodec
   into a folder (`pip install --no-deps --target /tmp/torchcodec torchcodec==0.17.0`) and pass
   that folder (it runs in a child process, on PyAV's FFmpeg: bench/torchcodec_reader.py);
4. what the measured rate means for Kinetics-400, next to MME's reported preprocessing time.

Every timed reader does what a data loader does per sample: open the video, read, close.
The page cache is warm (the shards were just written, the sources just decoded).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.torchcodec_reader import decode_clip_torchcodec, torchcodec_env, torchcodec_version

CLIP_LEN = 16
# argv[1] of the child process that times one reader (`reader_side`), not user flags
DECORD_SIDE, TORCHCODEC_SIDE = "--decord-clips", "--torchcodec-clips"
STRIDE = 4
# Kinetics-400 at the scale of the references (ANCHORS "Scale references"): ~240k training
# clips of ~10 s at ~30 fps.
K400_CLIPS, K400_SECONDS, K400_FPS = 240_000, 10, 30
# MME: "one day on 4 nodes". Cores per node are not reported; 32 is our assumption.
MME_NODES, MME_CORES_PER_NODE, MME_HOURS = 4, 32, 24


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _cost(path: str) -> float:
    """Decode work of a video, for scheduling the biggest first: frames x pixels."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        frames = s.frames or float((c.duration or 0) / 1e6 * float(s.average_rate or 25))
        return frames * s.codec_context.width * s.codec_context.height


def extraction(items, cfg, out: str) -> dict:
    """Extract `items` into `out` on a fresh cluster of `cfg.workers`; time the work alone."""
    from preprocess.dask_driver import dask_client
    from preprocess.worker import extract_batch
    from shards.writer import open_writer

    writer = open_writer(out, format=cfg.format, config=cfg.to_dict())
    ordered = sorted(items, key=lambda it: -_cost(it.path))  # longest tasks first: less idle tail
    start = time.perf_counter()
    with dask_client(cfg) as client:
        client.wait_for_workers(cfg.workers)
        startup = time.perf_counter() - start
        tic, driver, busy = time.perf_counter(), time.process_time(), _busy_core_seconds()
        futures = client.map(extract_batch, [[it] for it in ordered], cfg=cfg, pure=False)
        results = [r for batch in client.gather(futures) for r in batch]
        wall = time.perf_counter() - tic
        driver = time.process_time() - driver
        busy = None if busy is None else _busy_core_seconds() - busy
    writer.finalize()
    done = [r for r in results if r["status"] == "done"]
    frames = sum(r["frames"] for r in done)
    cpu = sum(r["cpu_seconds"] for r in done)
    return {"workers": cfg.workers, "format": cfg.format, "startup_s": round(startup, 2), "wall_s": round(wall, 2),
            "videos": len(done), "failed": [r["id"] for r in results if r["status"] != "done"],
            "frames": frames, "videos_per_s": round(len(done) / wall, 3), "frames_per_s": round(frames / wall, 1),
            "task_seconds": round(sum(r["seconds"] for r in results), 2), "cpu_seconds": round(cpu, 2),
            "frames_per_cpu_s": round(frames / cpu, 1),
            # the driver process holds the scheduler: its CPU comes out of the same cores
            "driver_cpu_s": round(driver, 2),
            # every process on the machine (Linux /proc/stat): tasks + driver + nannies + anyone else
            "machine_busy_core_s": None if busy is None else round(busy, 2)}


def _busy_core_seconds() -> float | None:
    """Core-seconds the whole machine has spent not idle since boot (None off Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def shard_bytes(paths: dict[str, str], sources: dict[str, str]) -> dict:
    """Per format: bytes per video and per source byte, for every array and in total."""
    from shards import ARRAYS, open_shards

    out = {}
    for fmt, path in paths.items():
        with open_shards(path) as ds:
            ids = ds.ids()
            src = sum(Path(sources[v]).stat().st_size for v in ids)
            per_array = {name: sum(ds.nbytes(v)[name] for v in ids) for name in ARRAYS}
            total = sum(ds.video_bytes(v) for v in ids)
        out[fmt] = {
            "videos": len(ids), "source_bytes": src,
            "per_video": {**{k: round(v / len(ids)) for k, v in per_array.items()}, "total": round(total / len(ids))},
            "per_source_byte": {**{k: round(v / src, 3) for k, v in per_array.items()}, "total": round(total / src, 3)},
        }
    return out


def clip_plan(path: str, n: int, seed: int) -> list[dict]:
    """`n` random clips of the committed videos: id, source, frame indices, stored size."""
    from shards import open_shards

    rng = np.random.default_rng(seed)
    plan = []
    with open_shards(path) as ds:
        ids = ds.ids()
        for _ in range(n):
            vid = ids[rng.integers(len(ids))]
            attrs = ds[vid].attrs
            t = int(attrs["num_frames"])
            stride = STRIDE if t >= (CLIP_LEN - 1) * STRIDE + 1 else 1
            span = min((CLIP_LEN - 1) * stride + 1, t)
            start = int(rng.integers(t - span + 1))
            plan.append({"id": vid, "source": attrs["source"], "start": start, "stop": start + span,
                         "stride": stride, "hw": [int(attrs["height"]), int(attrs["width"])]})
    return plan


def read_shard_clip(ds, clip: dict, names: tuple[str, ...] | None = None) -> int:
    """The arrays of one clip (all by default): T arrays at the clip's frames, T-1 arrays at
    those of its frames that have a successor. Returns the bytes read, in reader dtypes."""
    v = ds[clip["id"]]
    nbytes = 0
    for name in names or v.keys():
        arr = v[name]
        stop = min(clip["stop"], len(arr))
        nbytes += arr[clip["start"]:stop:clip["stride"]].nbytes
    return nbytes


def decode_clip_pyav(clip: dict) -> np.ndarray:
    """The clip's frames decoded from the source: seek to the keyframe before it, decode,
    keep the wanted frames, resize each to the stored size (as the extractor does)."""
    import av
    import cv2

    wanted = list(range(clip["start"], clip["stop"], clip["stride"]))
    h, w = clip["hw"]
    out = []
    with av.open(clip["source"]) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "NONE", 1  # one core, like every other reader here
        fps = float(stream.average_rate or stream.guessed_rate)
        first = float(stream.start_time or 0) * float(stream.time_base)
        target = first + wanted[0] / fps
        container.seek(int(target / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            idx = round((frame.time - first) * fps) if frame.time is not None else None
            if idx is None or idx > wanted[-1]:
                break
            if idx in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                out.append(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                           if rgb.shape[:2] != (h, w) else rgb)
    if len(out) != len(wanted):
        raise RuntimeError(f"{clip['source']}: decoded {len(out)} of {len(wanted)} frames after the seek")
    return np.stack(out)


def decode_clip_decord(clip: dict) -> np.ndarray:
    from decord import VideoReader, cpu

    h, w = clip["hw"]
    vr = VideoReader(clip["source"], ctx=cpu(0), width=w, height=h, num_threads=1)
    return vr.get_batch(list(range(clip["start"], clip["stop"], clip["stride"]))).asnumpy()


def time_each(fn, clips: list[dict]) -> list[float]:
    seconds = []
    for clip in clips:
        tic = time.perf_counter()
        fn(clip)
        seconds.append(time.perf_counter() - tic)
    return seconds


def _stats(seconds: list[float] | None) -> dict | None:
    if not seconds:
        return None
    ms = sorted(1000 * s for s in seconds)
    return {"clips": len(ms), "median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2), "mean_ms": round(statistics.fmean(ms), 2)}


def _side_seconds(python: str, side: str, clips: list[dict], env: dict[str, str] | None = None) -> list[float] | str:
    """Timings from a reader's half (`reader_side`) run in a child process, or why it failed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(clips, f)
    try:
        res = subprocess.run([python, "-m", "bench.scale", side, f.name], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, env=env)
    finally:
        os.unlink(f.name)
    if res.returncode != 0:
        return f"failed: {res.stderr.strip().splitlines()[-1:]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def decord_seconds(python: str | None, clips: list[dict]) -> tuple[list[float] | None, str]:
    """decord timings from this interpreter if it has decord, else from `python`."""
    try:
        import decord  # noqa: F401

        return time_each(decode_clip_decord, clips), f"decord in {sys.executable}"
    except ImportError:
        pass
    if not python:
        return None, "decord not importable here and no --decord-python given"
    seconds = _side_seconds(python, DECORD_SIDE, clips)
    if isinstance(seconds, str):
        return None, f"decord run with {python} {seconds}"
    version = subprocess.run([python, "-c", "import decord; print(decord.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    return seconds, f"decord {version} in {python}"


def torchcodec_seconds(path: str | None, clips: list[dict]) -> tuple[list[float] | None, str]:
    """torchcodec timings from a child of this interpreter that imports torchcodec from `path`
    (the folder it was installed into) and links PyAV's FFmpeg."""
    if not path:
        return None, "no --torchcodec-path given"
    version = torchcodec_version(path)
    if version is None:
        return None, f"no torchcodec installed in {path}"
    with tempfile.TemporaryDirectory(prefix="mmae-ffmpeg-links-") as links:
        try:
            env = torchcodec_env(path, Path(links))
        except RuntimeError as e:  # no FFmpeg to link: a note in the table, not a failed benchmark
            return None, f"torchcodec {version} from {path}: {e}"
        seconds = _side_seconds(sys.executable, TORCHCODEC_SIDE, clips, env)
    if isinstance(seconds, str):
        return None, f"torchcodec {version} from {path} {seconds}"
    return seconds, f"torchcodec {version} from {path}, FFmpeg of PyAV's wheel"


def clip_reads(paths: dict[str, str], plan: list[dict], decord_python: str | None,
               torchcodec_path: str | None = None) -> dict:
    """Per reader: stats over every clip, and per stride (stride 4 clips come from the long,
    natural videos: bigger frames, and 4x the frames decoded per frame kept)."""
    from shards import open_shards

    seconds: dict[str, list[float] | None] = {}
    for fmt, path in paths.items():
        with open_shards(path) as ds:
            read_shard_clip(ds, plan[0])  # first touch: imports and codec set-up, not per clip
            seconds[f"shards_{fmt}_all_arrays"] = time_each(lambda c: read_shard_clip(ds, c), plan)
            seconds[f"shards_{fmt}_frames_only"] = time_each(lambda c: read_shard_clip(ds, c, ("frames",)), plan)
    decode_clip_pyav(plan[0])
    seconds["pyav_decode_frames_only"] = time_each(decode_clip_pyav, plan)
    seconds["decord_decode_frames_only"], decord_note = decord_seconds(decord_python, plan)
    seconds["torchcodec_decode_frames_only"], torchcodec_note = torchcodec_seconds(torchcodec_path, plan)
    strides = sorted({c["stride"] for c in plan})
    out: dict = {"decord_note": decord_note, "torchcodec_note": torchcodec_note, "strides": strides}
    for key, values in seconds.items():
        out[key] = _stats(values)
        if values:
            out[key]["by_stride"] = {s: _stats([v for v, c in zip(values, plan) if c["stride"] == s])
                                     for s in strides}
    return out


def k400_estimate(frames_per_s_per_core: float, shard_bytes_per_frame: float) -> dict:
    """Core-hours and shard bytes for K400 at the measured per-core rate and bytes per frame
    (both measured at the corpus's own resolutions: 256 short side here)."""
    frames = K400_CLIPS * K400_SECONDS * K400_FPS
    core_hours = frames / frames_per_s_per_core / 3600
    mme_cores = MME_NODES * MME_CORES_PER_NODE
    return {"frames": frames, "frames_per_s_per_core": frames_per_s_per_core,
            "shard_bytes_per_frame": round(shard_bytes_per_frame), "shard_tb": round(frames * shard_bytes_per_frame / 1e12, 2),
            "core_hours": round(core_hours), "hours_on_mme_nodes": round(core_hours / mme_cores, 1),
            "mme_core_hours_assumed": MME_HOURS * mme_cores, "mme_assumption": f"{MME_NODES} nodes x "
            f"{MME_CORES_PER_NODE} cores x {MME_HOURS} h (cores per node not reported: assumed)",
            "fraction_of_mme": round(core_hours / (MME_HOURS * mme_cores), 3)}


def run(dataset: str = "demo", root: str | None = None, clips: int = 60, seed: int = 0,
        decord_python: str | None = None, workers: tuple[int, ...] = (1, 2),
        torchcodec_path: str | None = None) -> dict:
    from preprocess.config import ExtractConfig
    from preprocess.datasets import list_videos

    items = list_videos(dataset, root=root)
    sources = {it.video_id: it.path for it in items}
    tmp = Path(tempfile.mkdtemp(prefix="mmae-bench-scale-"))
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                    "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
                    "dataset": dataset, "videos": len(items),
                    "source_bytes": sum(Path(p).stat().st_size for p in sources.values())}
    try:
        runs = [extraction(items, ExtractConfig(dataset=dataset, root=root, workers=n, out=str(tmp / f"zarr{n}")),
                           str(tmp / f"zarr{n}")) for n in workers]
        hdf5 = extraction(items, ExtractConfig(dataset=dataset, root=root, workers=max(workers), format="hdf5",
                                               out=str(tmp / "hdf5")), str(tmp / "hdf5"))
        result["extraction"] = runs + [hdf5]
        base = runs[0]
        result["scaling"] = {f"{r['workers']}_vs_{base['workers']}_workers": round(r["frames_per_s"] / base["frames_per_s"], 2)
                             for r in runs[1:]}
        paths = {"zarr": str(tmp / f"zarr{workers[0]}"), "hdf5": str(tmp / "hdf5")}
        result["shard_bytes"] = shard_bytes(paths, sources)
        plan = clip_plan(paths["zarr"], clips, seed)
        result["clip_read"] = clip_reads(paths, plan, decord_python, torchcodec_path)
        zarr = result["shard_bytes"]["zarr"]
        # CPU time, not wall time: other processes on a shared machine do not inflate it
        result["k400"] = k400_estimate(base["frames_per_cpu_s"],
                                       zarr["per_video"]["total"] * zarr["videos"] / base["frames"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def to_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"{r['date']}; {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}; "
             f"load average at start {m['load_avg_at_start']}; `{r['command']}`; "
             f"{r['videos']} videos of '{r['dataset']}', {r['source_bytes'] / 1e6:.1f} MB of source", "",
             "| workers | format | videos | frames | wall s | videos/s | frames/s | frames per CPU-s "
             "| task CPU s | driver CPU s | machine busy core-s | cluster start s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in r["extraction"]:
        lines.append(f"| {e['workers']} | {e['format']} | {e['videos']} | {e['frames']} | {e['wall_s']} | "
                     f"{e['videos_per_s']} | {e['frames_per_s']} | {e['frames_per_cpu_s']} | {e['cpu_seconds']} | "
                     f"{e.get('driver_cpu_s')} | {e.get('machine_busy_core_s')} | {e['startup_s']} |")
    lines += ["", "Scaling (frames/s ratio): " + ", ".join(f"{k.replace('_', ' ')} {v}x"
                                                       for k, v in r["scaling"].items()), ""]
    sb = r["shard_bytes"]
    lines += ["| array | zarr B/video | hdf5 B/video | zarr B/source B | hdf5 B/source B |", "|---|---|---|---|---|"]
    for name in sb["zarr"]["per_video"]:
        lines.append(f"| {name} | {sb['zarr']['per_video'][name]:,} | {sb['hdf5']['per_video'][name]:,} | "
                     f"{sb['zarr']['per_source_byte'][name]} | {sb['hdf5']['per_source_byte'][name]} |")
    cr = r["clip_read"]
    by = " | ".join(f"median ms, stride {s}" for s in cr["strides"])
    lines += ["", f"Random {CLIP_LEN}-frame clip, per clip, one thread:", "",
              f"| reader | what | median ms | p90 ms | mean ms | {by} |", "|---|---|---|---|---|" + "---|" * len(cr["strides"])]
    for key, what in (("shards_zarr_all_arrays", "9 arrays"), ("shards_hdf5_all_arrays", "9 arrays"),
                      ("shards_zarr_frames_only", "frames only"), ("shards_hdf5_frames_only", "frames only"),
                      ("pyav_decode_frames_only", "frames only (decode + resize)"),
                      ("decord_decode_frames_only", "frames only (decode + resize)"),
                      ("torchcodec_decode_frames_only", "frames only (decode + resize)")):
        s = cr.get(key)
        if s:
            per = " | ".join(f"{s['by_stride'][st]['median_ms']} ({s['by_stride'][st]['clips']} clips)"
                             for st in cr["strides"])
            lines.append(f"| {key.split('_')[0]} {key.split('_')[1]} | {what} | {s['median_ms']} | {s['p90_ms']} | "
                         f"{s['mean_ms']} | {per} |")
    lines.append(f"\ndecord: {cr['decord_note']}; torchcodec: {cr['torchcodec_note']}")
    k = r["k400"]
    lines += ["", f"K400 ({K400_CLIPS:,} clips x {K400_SECONDS} s x {K400_FPS} fps = {k['frames'] / 1e6:.0f}M frames) "
              f"at {k['frames_per_s_per_core']:.1f} frames per CPU-second (1 worker): **{k['core_hours']:,} core-hours**, "
              f"{k['hours_on_mme_nodes']} h on {MME_NODES * MME_CORES_PER_NODE} cores; MME: {k['mme_assumption']} = "
              f"{k['mme_core_hours_assumed']:,} core-hours -> {k['fraction_of_mme']}x of it. Shards (zarr) at "
              f"{k['shard_bytes_per_frame'] / 1e3:.1f} kB/frame: {k['shard_tb']} TB."]
    return "\n".join(lines)


def reader_side(decode, clips_json: str) -> None:
    """One reader's half of the clip reads, run by `decord_seconds` in decord's own interpreter and by
    `torchcodec_seconds` with torchcodec's libraries, neither of which need have the project's
    dependencies: the clips as JSON in, the timings as JSON out."""
    clips = json.loads(Path(clips_json).read_text())
    decode(clips[0])  # first touch, as for the other readers
    print(json.dumps(time_each(decode, clips)))


def main(argv: list[str] | None = None) -> None:
    from shards.cli import ArgumentParser  # here, not above: decord's interpreter imports this module too

    p = ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--dataset", default="demo")
    p.add_argument("--root", default=None)
    p.add_argument("--clips", type=int, default=60, help="random clips timed per reader")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decord-python", default=None, help="an interpreter that can import decord")
    p.add_argument("--torchcodec-path", default=None,
                   help="a folder torchcodec was installed into (pip install --no-deps --target DIR torchcodec)")
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    result = run(a.dataset, a.root, a.clips, a.seed, a.decord_python, torchcodec_path=a.torchcodec_path)
    print(to_markdown(result))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == [DECORD_SIDE]:
        reader_side(decode_clip_decord, sys.argv[2])
    elif sys.argv[1:2] == [TORCHCODEC_SIDE]:
        reader_side(decode_clip_torchcodec, sys.argv[2])
    else:
        from shards.cli import run_main

        run_main(main, "python -m bench.scale")
