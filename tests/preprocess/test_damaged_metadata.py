"""Garbage in a shard set's JSON documents: one clear message from readers, and an
extraction re-run that repairs what the set owns (root attrs, failure records, manifest)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from preprocess.config import ExtractConfig
from preprocess.extract import run
from preprocess.manifest import read_manifest
from preprocess.synthetic import Scene, encode, render
from shards import open_shards
from shards.metadata import DamagedMetadata

GARBAGE = bytes(range(255, 0, -1))  # not UTF-8: what used to raise UnicodeDecodeError
ROOT = {"zarr": "zarr.json", "hdf5": "motion_mae.json"}
RECORD = {"zarr": "failures/bad/zarr.json", "hdf5": "failures/bad.json"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    encode(root / "good", render(Scene(height=64, width=64, num_frames=6, seed=1, bg_velocity=(1.0, 0.0))),
           codec="h264")
    (root / "bad.mp4").write_bytes(b"not a video")
    return root


def _extract(corpus: Path, out: Path, fmt: str, lines: list | None = None, **kw) -> dict:
    cfg = ExtractConfig(dataset="folder", root=str(corpus), out=str(out), short_side=64, workers=0,
                        format=fmt, **kw)
    return run(cfg, log=(lines.append if lines is not None else lambda s: None))


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_garbage_root_failure_record_and_manifest(corpus, tmp_path, fmt):
    out = tmp_path / "s"
    _extract(corpus, out, fmt)

    (out / RECORD[fmt]).write_bytes(GARBAGE)
    with pytest.raises(DamagedMetadata, match=r"failures/bad.*the failure record.*is damaged \(not valid JSON: "
                                              r"binary data, not text\); re-run the extraction"):
        open_shards(str(out)).failures()
    lines: list[str] = []
    _extract(corpus, out, fmt, lines)
    assert any("removed 1 damaged failure records (bad)" in x for x in lines)
    assert [f["id"] for f in open_shards(str(out)).failures()] == ["bad"]  # re-recorded

    (out / "manifest.json").write_bytes(GARBAGE)
    with pytest.raises(DamagedMetadata, match="manifest.json: the manifest is damaged"):
        read_manifest(str(out))
    again = _extract(corpus, out, fmt)
    assert again["skipped"] == 1 and read_manifest(str(out))["counts"]["videos"] == 1

    (out / ROOT[fmt]).write_bytes(b'{"motion_mae": {"schema_ver')  # torn write
    with pytest.raises(DamagedMetadata, match=f"the root {ROOT[fmt]} is damaged"):
        open_shards(str(out))
    lines = []
    again = _extract(corpus, out, fmt, lines)  # rebuilt from the manifest's config, video kept
    assert again["skipped"] == 1 and again["done"] == 0 and "rebuilding the root" in lines[0]
    ds = open_shards(str(out))
    assert ds.ids() == ["good"] and ds.ids(split=None) == ["good"] and ds["good"]["frames"].shape[0] == 6
    doc = json.loads((out / ROOT[fmt]).read_text())
    attrs = doc["attributes"] if fmt == "zarr" else doc
    assert attrs["index"]["videos"] == ["good"]  # the corpus index came back with finalize


def test_garbage_root_without_manifest_needs_overwrite(corpus, tmp_path, capsys):
    from preprocess.extract import main

    out = tmp_path / "s"
    _extract(corpus, out, "zarr")
    (out / "zarr.json").write_bytes(GARBAGE)
    (out / "manifest.json").unlink()
    args = ["--dataset", "folder", "--root", str(corpus), "--out", str(out), "--workers", "0", "--short-side", "64"]
    from shards.cli import run_main

    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(args), "extract.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1
    assert "root zarr.json is damaged" in err[0] and "--overwrite" in err[0]
    assert main([*args, "--overwrite"]) == 1  # exit 1: bad.mp4 failed; the set is whole again
    assert open_shards(str(out)).ids() == ["good"]


WRONG_SHAPES = [("zarr", "zarr.json", b"[1, 2]", "the root zarr.json is damaged (valid JSON of the wrong shape"),
                ("zarr", "zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": [1]}',
                 "the root zarr.json is damaged (valid JSON of the wrong shape"),
                ("zarr", "videos/zarr.json", b"[1, 2]", "videos/zarr.json is damaged (valid JSON of the wrong shape"),
                ("zarr", "failures/bad/zarr.json", b'{"attributes": [1]}',
                 "failure record zarr.json is damaged (valid JSON of the wrong shape: 'attributes' is a JSON list"),
                ("zarr", "manifest.json", b'{"videos": [1, 2]}', "the manifest is damaged (valid JSON of the wrong "
                                                                   "shape: 'videos' is a JSON list, not an object)"),
                ("hdf5", "manifest.json", b'{"videos": {"good": {"frames": "six"}}}',
                 "the manifest is damaged (valid JSON of the wrong shape: its entry of video 'good' lacks"),
                ("hdf5", "motion_mae.json", b"[1, 2]", "the root motion_mae.json is damaged (valid JSON of the wrong "
                                                       "shape: a JSON list, not an object)")]


@pytest.mark.parametrize("fmt,name,doc,message", WRONG_SHAPES)
def test_json_of_the_wrong_shape_is_one_line_and_the_next_run_repairs_it(corpus, tmp_path, fmt, name, doc, message):
    out = tmp_path / "s"
    _extract(corpus, out, fmt)
    (out / name).write_bytes(doc)
    with pytest.raises(DamagedMetadata) as err:
        with open_shards(str(out)) as ds:
            ds.failures()
            read_manifest(str(out))
    assert message in str(err.value) and "\n" not in str(err.value)
    again = _extract(corpus, out, fmt)  # rebuilt from what the set holds, nothing re-extracted
    assert (again["skipped"], again["done"]) == (1, 0)
    with open_shards(str(out)) as ds:
        assert ds.ids() == ["good"] and [f["id"] for f in ds.failures()] == ["bad"]


def test_a_video_file_that_is_not_hdf5_is_one_line_naming_it_and_the_repair(corpus, tmp_path):
    from shards.hdf5_store import DamagedVideoFile

    out = tmp_path / "s"
    _extract(corpus, out, "hdf5")
    (out / "videos" / "good.h5").write_bytes(b"not an HDF5 file")
    doc = json.loads((out / "motion_mae.json").read_text())
    doc.pop("index", None)  # a set whose last run died before its index: finalize reads the file
    (out / "motion_mae.json").write_text(json.dumps(doc))
    with pytest.raises(DamagedVideoFile, match=r"videos/good.h5: not a readable HDF5 video \(.*\); "
                                               r"python -m shards verify .* --repair deletes and re-extracts it"):
        _extract(corpus, out, "hdf5")
