"""Every benchmark command parses with `shards.cli.ArgumentParser` and runs under `run_main`, as the
user commands do: a wrong command line is one line and exit 2, `--debug` in every help."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from shards.cli import UsageError

BENCH = Path(__file__).resolve().parents[2] / "bench"
# clip_worker: a subprocess worker on another checkout's code; torchcodec_reader: a reader bench.scale times
NOT_COMMANDS = {"__init__", "budget", "clip_worker", "torchcodec_reader"}
COMMANDS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in NOT_COMMANDS)


def entry_point(name: str) -> str:
    """The source of the module's `if __name__ == "__main__":` block."""
    tree = ast.parse((BENCH / f"{name}.py").read_text())
    blocks = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert len(blocks) == 1, name
    return ast.unparse(blocks[0])


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bench_command_runs_under_run_main_and_refuses_a_bad_flag_in_one_line(name):
    assert f"run_main(main, 'python -m bench.{name}')" in entry_point(name)
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(UsageError, match=f"see python -m bench.{name} --help"):
        module.main(["--no-such-flag"])


def test_the_whole_path_one_line_and_exit_2():
    run = subprocess.run([sys.executable, "-m", "bench.micro", "--no-such-flag"], capture_output=True, text=True,
                         cwd=BENCH.parent, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("python -m bench.micro: error: unrecognized arguments: --no-such-flag "
                                  "(see python -m bench.micro --help)")


def test_the_decord_side_of_bench_scale_imports_nothing_of_the_project():
    """`bench.scale` runs its decord half in decord's own interpreter: the module, and that half's entry
    (argv[1] DECORD_SIDE, no parser), must not need the project's dependencies."""
    code = "import sys, bench.scale; assert not {'shards', 'train', 'preprocess'} & set(sys.modules), sorted(sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=BENCH.parent, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "DECORD_SIDE" in entry_point("scale")
