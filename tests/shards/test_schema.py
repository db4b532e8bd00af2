"""docs/shards.md is the prose twin of shards/schema.py: they must agree."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from shards.schema import ARRAYS, CONVENTIONS, SCHEMA_VERSION

DOC = (Path(__file__).resolve().parents[2] / "docs" / "shards.md").read_text()


def table_row(name: str) -> list[str]:
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"docs/shards.md needs exactly one table row for `{name}`"
    return [c.strip() for c in rows[0].strip("|").split("|")]


@pytest.mark.parametrize("name", list(ARRAYS))
def test_every_array_is_documented(name):
    spec = ARRAYS[name]
    _, dims, dtype, stored, scale, units, chunk, _ = table_row(name)
    assert dims == " x ".join(map(str, spec.dims))
    assert (dtype, stored, units) == (spec.dtype, spec.stored_dtype, spec.units)
    if spec.derived:  # not on disk: no scale, no chunks
        assert (scale, chunk) == ("-", "-")
        return
    assert float(Fraction(scale)) == pytest.approx(spec.scale)
    assert int(chunk) == spec.frame_chunk


def test_version_and_conventions_documented():
    assert f"Schema version: **{SCHEMA_VERSION}**" in DOC
    for key in CONVENTIONS:
        assert f"**{key.replace('_', ' ')}**" in DOC, key


def test_an_unknown_version_is_one_line_from_every_cli(tmp_path, capsys):
    """SchemaVersionError is a CliError: the CLIs print its message, not a bug report."""
    import pytest

    from shards.__main__ import main
    from shards.cli import run_main

    root = tmp_path / "set"
    root.mkdir()
    (root / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": '
                                    '{"motion_mae": {"schema_version": 99}}}')
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(["inspect", str(root)]), "shards")
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and err.count("\n") == 0
    assert "schema version 99 is not supported" in err and "--debug" not in err
