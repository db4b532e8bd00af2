"""Every mistake a user makes with `extract.py` or `python -m shards` is one line on stderr.

Each case runs the real command line (`cli` / `run_main`, as `python preprocess/extract.py`
does) and checks: exit status (2 for a wrong command line, 1 for one that cannot run),
exactly one line on stderr naming what is wrong, and no traceback. Ctrl-C runs the real
script in its own process group, as a terminal would signal it.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import PROG, cli, run
from preprocess.synthetic import MovingObject, Scene, encode, render
from shards import open_shards, open_writer
from shards.__main__ import main as shards_main
from shards.cli import DEBUG_ENV, run_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two real 8-frame videos: `a/pan.mp4` and `b/object.mp4`."""
    root = tmp_path_factory.mktemp("videos")
    encode(root / "a" / "pan", render(Scene(height=64, width=96, num_frames=8, bg_velocity=(2.0, 0.0), seed=1)),
           codec="h264")
    encode(root / "b" / "object", render(Scene(height=64, width=96, num_frames=8, seed=2,
                                               objects=(MovingObject(16, (20, 20), (2.0, 1.0)),))), codec="h264")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(capsys, monkeypatch, entry, argv: list[str], prog: str) -> tuple[int, str]:
    """Run `entry` as its script would (argv, no debug) -> (exit status, the one stderr line)."""
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return exit_info.value.code, lines[0]


def _extract_cases(tmp: Path, videos: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (argv, exit status, a phrase the line must hold); `tmp` holds a file `a_file`."""
    folder = ["--dataset", "folder", "--root", str(videos), "--workers", "0"]
    return {
        "out is a file": (["--out", str(tmp / "a_file")], 2, "is a file"),
        "out under a file": (["--out", str(tmp / "a_file" / "sub")], 2, "is a file"),
        "unknown split": (["--dataset", "k400", "--split", "tarin", "--root", str(tmp)], 2,
                          "unknown split 'tarin'; choose one of test, train, val"),
        "folder split absent": ([*folder, "--split", "train", "--out", str(tmp / "o")], 1, "no split folder"),
        "list without a list": (["--dataset", "list", "--root", str(tmp)], 2, "give --list FILE"),
        "list file for another dataset": ([*folder, "--list", str(tmp / "a_file")], 2, "--list is only read"),
        "missing root": (["--dataset", "folder", "--root", str(tmp / "nope")], 1, "docs/datasets.md"),
        "unknown dataset": (["--dataset", "kinetics"], 2, "invalid choice: 'kinetics'"),
        "unknown format": (["--format", "parquet"], 2, "invalid choice: 'parquet'"),
        "negative limit": (["--limit", "-1"], 2, "must be >= 0"),
        "zero shard size": (["--shard-size", "0"], 2, "must be >= 1"),
        "not a number": (["--workers", "two"], 2, "expected an integer, got 'two'"),
        "overwrite and append": (["--overwrite", "--append"], 2, "exclude each other"),
        "memory store with workers": ([*folder[:-2], "--out", "memory://x/y"], 2, "--workers 0"),
        "out holds the other format": ([*folder, "--out", str(tmp / "zarr_set"), "--format", "hdf5"], 1,
                                       "is a zarr shard set; open it with format='zarr': pass --format zarr"),
        "unreachable scheduler": ([*folder[:-2], "--out", str(tmp / "s"), "--scheduler",
                                   f"tcp://127.0.0.1:{_free_port()}", "--scheduler-timeout", "1"], 1,
                                  "could not connect to the Dask scheduler"),
    }


CASES = list(_extract_cases(Path("/nonexistent"), Path("/nonexistent")))


@pytest.mark.parametrize("case", CASES)
def test_extract_mistakes_are_one_line(case, tmp_path, videos, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    open_writer(tmp_path / "zarr_set", format="zarr")
    argv, status, phrase = _extract_cases(tmp_path, videos)[case]
    code, line = _one_line(capsys, monkeypatch, cli, argv, PROG)
    assert code == status, line
    assert phrase in line


def test_scheduler_timeout_is_what_it_says(tmp_path, videos, capsys, monkeypatch):
    argv = ["--dataset", "folder", "--root", str(videos), "--out", str(tmp_path / "s"),
            "--scheduler", f"tcp://127.0.0.1:{_free_port()}", "--scheduler-timeout", "1"]
    start = time.monotonic()
    _, line = _one_line(capsys, monkeypatch, cli, argv, PROG)
    assert "within 1 s" in line and time.monotonic() - start < 10  # not Dask's 30 s default


@pytest.mark.parametrize("argv,status,phrase", [
    (["verify", "{tmp}/none"], 1, "not a shard set"),
    (["inspect", "{tmp}/none"], 1, "not a shard set"),
    (["inspect", "{set}", "nope"], 1, "nope"),
    (["check", "{tmp}"], 2, "invalid choice: 'check'"),
    ([], 2, "required"),
])
def test_shards_mistakes_are_one_line(argv, status, phrase, tmp_path, videos, capsys, monkeypatch):
    shard_set = tmp_path / "set"
    if "{set}" in argv:
        run(ExtractConfig(dataset="folder", root=str(videos / "a"), out=str(shard_set), short_side=64, workers=0),
            log=lambda _: None)
    argv = [a.format(tmp=tmp_path, set=shard_set) for a in argv]
    code, line = _one_line(capsys, monkeypatch, lambda: run_main(shards_main, "python -m shards"), argv,
                           "python -m shards")
    assert code == status, line
    assert phrase in line


def test_debug_flag_brings_the_traceback_back(tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(sys, "argv", [PROG, "--out", str(tmp_path / "a_file"), "--debug"])
    from shards.cli import UsageError
    with pytest.raises(UsageError, match="is a file"):
        cli()


# ---------------------------------------------------------------- another dataset or root

def test_another_dataset_or_root_is_refused_unless_append_or_overwrite(tmp_path, videos, capsys, monkeypatch):
    out = tmp_path / "s"
    base = ["--dataset", "folder", "--out", str(out), "--workers", "0", "--short-side", "64"]
    run(ExtractConfig(dataset="folder", root=str(videos / "a"), out=str(out), short_side=64, workers=0),
        log=lambda _: None)
    assert open_shards(out).ids() == ["pan"]

    code, line = _one_line(capsys, monkeypatch, cli, [*base, "--root", str(videos / "b")], PROG)
    assert code == 1
    assert f"root: '{videos / 'a'}' there vs '{videos / 'b'}' now" in line and "--append" in line
    lst = tmp_path / "clips.txt"
    lst.write_text(f"{videos / 'a' / 'pan.mp4'} 0\n")
    code, line = _one_line(capsys, monkeypatch, cli,
                           ["--dataset", "list", "--list", str(lst), *base[2:]], PROG)
    assert code == 1 and "dataset: 'folder' there vs 'list' now" in line
    assert open_shards(out).ids() == ["pan"]  # nothing merged

    monkeypatch.setattr(sys, "argv", [PROG, *base, "--root", str(videos / "b"), "--append"])
    with pytest.raises(SystemExit) as ok:
        cli()
    assert ok.value.code == 0
    assert open_shards(out).ids() == ["object", "pan"]
    assert "--append: adding folder videos" in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", [PROG, *base, "--root", str(videos / "b"), "--overwrite"])
    with pytest.raises(SystemExit) as ok:
        cli()
    assert ok.value.code == 0
    assert open_shards(out).ids() == ["object"]  # replaced: the set now holds root b only


def test_append_still_refuses_other_settings(tmp_path, videos, capsys, monkeypatch):
    out = tmp_path / "s"
    run(ExtractConfig(dataset="folder", root=str(videos / "a"), out=str(out), short_side=64, workers=0),
        log=lambda _: None)
    code, line = _one_line(capsys, monkeypatch, cli, ["--dataset", "folder", "--root", str(videos / "b"), "--out",
                                                      str(out), "--short-side", "48", "--append"], PROG)
    assert code == 1 and "short_side: 64 there vs 48 now" in line and "root:" in line


# --------------------------------------------------------------------------------- Ctrl-C

def _committed(out: Path) -> int:
    try:
        return len(open_shards(str(out)).ids())
    except (FileNotFoundError, ValueError):  # no root yet, or caught mid-write
        return 0


def test_ctrl_c_is_one_line_and_the_run_resumes(tmp_path):
    root = tmp_path / "corpus"
    n = 12
    for i in range(n):
        scene = Scene(height=64, width=96, num_frames=24, bg_velocity=(1.0 + i % 6, 0.5), seed=20 + i)
        encode(root / f"clip{i}", render(scene), codec="h264")
    out = tmp_path / "s"
    cmd = [sys.executable, str(REPO / "preprocess" / "extract.py"), "--dataset", "folder", "--root", str(root),
           "--out", str(out), "--workers", "1", "--short-side", "64"]
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    # SIGINT back to its default in the child: a shell runs background jobs (CI under `cmd &`) with
    # SIGINT ignored, which the child would inherit, while a terminal's extract.py receives it
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while _committed(out) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # the whole group, as Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    match = re.fullmatch(rf"{re.escape(PROG)}: interrupted: (\d+) videos committed in {re.escape(str(out))} "
                         r"\((\d+) by this run\); run the same command to resume", err.strip())
    assert match and match[1] == match[2], err
    committed = _committed(out)
    assert 1 <= int(match[1]) == committed < n, (err, committed)

    res = subprocess.run([*cmd[:-4], "--workers", "0", *cmd[-2:]], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr  # the same set, resumed (in process: no second cluster to start)
    assert f"{committed} already done" in res.stdout and _committed(out) == n


def test_a_set_that_stored_its_root_as_given_still_resumes(tmp_path, videos, monkeypatch):
    """Sets written before roots were stored resolved hold `--root` as typed (None, or relative)."""
    from preprocess.resume import source_diff

    monkeypatch.chdir(videos)
    cfg = ExtractConfig(dataset="folder", root=str(videos / "a"))
    assert source_diff({"dataset": "folder", "root": "a"}, cfg) == ""
    assert source_diff({"dataset": "folder", "root": None}, cfg) == ""
    assert source_diff({"dataset": "folder", "root": "b"}, cfg) == f"root: '{videos / 'b'}' there vs '{videos / 'a'}' now"


# ----------------------------------------------------------------------------------- help

def test_every_extract_flag_has_help_and_its_default_once():
    from dataclasses import fields

    from preprocess.extract import build_parser
    from shards.cli import DefaultsOnceFormatter

    parser = build_parser()
    formatter = DefaultsOnceFormatter(PROG)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    for action in flags:
        text = formatter._get_help_string(action)
        assert action.help and text.lower().count("default") <= 1, (action.dest, text)
        if action.default not in (None, False, [], ()):  # the real default: the config's own
            assert f"(default: {action.default})" in text, (action.dest, text)
            assert action.default == getattr(ExtractConfig(), action.dest), action.dest
    config_fields = {f.name for f in fields(ExtractConfig)}
    assert {a.dest for a in flags} - {"debug"} == config_fields  # every setting is a flag
    choices = {a.dest: a.choices for a in flags if a.choices}
    assert set(choices) == {"dataset", "format", "frames", "flow_method", "dis_preset", "features", "compensation"}
    usage = parser.format_help()
    assert "{zarr,hdf5}" in usage and "{ultrafast,fast,medium}" in usage


def test_a_repeatable_flag_given_no_times_shows_no_default():
    from shards.cli import ArgumentParser

    parser = ArgumentParser(prog="x")
    parser.add_argument("--side", nargs=3, action="append", default=[], help="a side to measure; repeat")
    parser.add_argument("--clips", type=int, default=24, help="clips a round")
    text = parser.format_help()
    assert "repeat\n" in text and "default: []" not in text and "(default: 24)" in text


def test_shards_help_has_text_for_every_argument(capsys, monkeypatch):
    for argv in (["--help"], ["verify", "--help"], ["inspect", "--help"]):
        with pytest.raises(SystemExit) as done:
            shards_main(argv)
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert "shard set: a directory or fsspec URL" in out and "one video's id" in out
