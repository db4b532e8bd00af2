"""docs/shards.md states what the code does: its HDF5 example runs on a real set, its numbers match."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from shards import open_shards, open_writer
from shards.schema import ARRAYS, JPEG_QUALITY, SCHEMA_VERSION
from shards.zarr_store import COMPRESSOR

from .helpers import make_arrays, video_attrs

DOC = (Path(__file__).resolve().parents[2] / "docs" / "shards.md").read_text()


def test_the_hdf5_example_reads_a_real_file(tmp_path):
    attrs = video_attrs(num_frames=9)
    w = open_writer(tmp_path / "mine", format="hdf5", config={"dataset": "folder"})
    w.write_video("clip", make_arrays(attrs, seed=0), attrs)
    w.finalize()
    block = DOC.split("Reading a file with\nh5py alone", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(block.replace("data/shards/mine", str(tmp_path / "mine")), scope)  # the doc, literally
    assert scope["schema"]["schema_version"] == SCHEMA_VERSION
    assert scope["root"]["config"] == {"dataset": "folder"}
    assert scope["video"]["num_frames"] == 9 and scope["video"]["complete"] is True
    np.testing.assert_allclose(scope["mv"], open_shards(tmp_path / "mine")["clip"]["mv"][:8])
    assert scope["jpegs"].dtype == np.uint8 and scope["jpegs"].shape[0] == 2


def test_numbers_in_the_doc_are_the_code_s():
    assert f"Blosc zstd level {COMPRESSOR.clevel}" in DOC and COMPRESSOR.cname.value == "zstd"
    assert f"Schema version: **{SCHEMA_VERSION}**" in DOC
    assert f"JPEG (quality {JPEG_QUALITY}" in DOC
    for name, spec in ARRAYS.items():
        row = re.search(rf"^\| `{name}` \|(.+)$", DOC, re.M)[1].split("|")
        stored, chunk = ("-", "-") if spec.derived else (spec.stored_dtype, str(spec.frame_chunk))
        assert row[1].strip() == spec.dtype and row[2].strip() == stored, name
        assert row[5].strip() == chunk, name
