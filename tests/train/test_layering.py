"""Shards are the contract between the two halves: train/ imports shards/, never preprocess/."""
import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[2] / "train"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_train_imports_nothing_from_preprocess():
    files = sorted(TRAIN.rglob("*.py"))
    assert len(files) > 10
    offenders = {f"{p.relative_to(TRAIN.parent)}: {m}" for p in files for m in imported_modules(p)
                 if m == "preprocess" or m.startswith("preprocess.")}
    assert not offenders, sorted(offenders)


def test_the_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from preprocess.hog import cell_hog\n    import preprocess.trajectories\n")
    assert imported_modules(f) == {"preprocess.hog", "preprocess.trajectories"}
