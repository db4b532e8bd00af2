"""One-line errors for every command-line entry point (extract, pretrain, evaluate, visualize, shards, bench).

A user who mistypes a flag should read one line saying what is wrong and what to do, not a
traceback. Entry points raise `UsageError` (exit 2: the command line is wrong) or `CliError`
(exit 1: the command is right but cannot run, e.g. a missing file) with that line, and wrap
`main` in `run_main`. Anything else is a bug: one line naming the exception and how to get the
traceback. Tracebacks come back with `--debug` on the command line or `MOTION_MAE_DEBUG=1`.
`CliError`, and the storage errors built on it, live in shards/errors.py: the storage layer
raises them without importing this module.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

from .errors import CliError

DEBUG_ENV = "MOTION_MAE_DEBUG"
DEBUG_FLAG = "--debug"


class UsageError(CliError):
    """The command line itself is wrong: a bad flag value, a missing argument (exit 2)."""

    exit_code = 2


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def add_debug_flag(parser) -> None:
    """`--debug` in every parser's help; `run_main` reads it before parsing."""
    if DEBUG_FLAG in parser._option_string_actions:  # ArgumentParser adds it already
        return
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"show full tracebacks instead of one-line errors (or {DEBUG_ENV}=1)")


def run_main(main: Callable[[], object], prog: str,
             interrupted: Callable[[], str] | None = None) -> NoReturn:
    """Call `main()` and exit: its int return value (0 for anything else), or one line on error.

    `interrupted`, when given, returns the line printed on Ctrl-C (e.g. how many videos were
    committed and how to resume)."""
    if debug_requested():
        rc = main()
        sys.exit(rc if isinstance(rc, int) else 0)
    try:
        rc = main()
    except KeyboardInterrupt:
        line = interrupted() if interrupted else "interrupted"
        print(f"{prog}: {line}", file=sys.stderr, flush=True)
        sys.exit(130)
    except CliError as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # a bug or an unforeseen failure: one line, the traceback on request
        print(f"{prog}: error: {type(e).__name__}: {e} (run with {DEBUG_FLAG} or {DEBUG_ENV}=1 "
              "for the traceback)", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


class ArgumentParser(argparse.ArgumentParser):
    """The parser of every command (extract, shards, pretrain, evaluate, visualize, export, study,
    heldout, the benchmarks under bench/): a bad command line is a `UsageError`, one line and exit 2
    through `run_main` (the usage of a CLI with 40 flags is ten lines that hide the error); `--debug`
    is in every help; every flag's help shows its real default once.

    A default is appended as "(default: X)" unless it is None, False or empty (a repeatable flag
    given no times: nothing to show) or the help text already says what the default is ("default"
    in it).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)
        add_debug_flag(self)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


class DefaultsOnceFormatter(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default) or not action.option_strings):
            return text
        return f"{text} (default: {default})"
