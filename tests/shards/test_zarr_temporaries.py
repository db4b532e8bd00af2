"""What zarr's local store leaves when a writer is killed mid-write (`<stem>.<32 hex>.partial`,
written before the rename): never a video or a failure, cleaned up by the next finalize, and the
set's own under --overwrite. A kill -9 of an extraction can leave one in `videos/`."""
from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from shards import open_shards, open_writer
from shards.__main__ import main
from shards.owned import foreign_files
from shards.writer import remove_set

from tests.shards.helpers import make_arrays, video_attrs

TEMP = "zarr.75d4ccb7fd6a43b7825d7dff9086b2b2.partial"


def _set_with_temporaries(path: Path) -> Path:
    writer = open_writer(path, format="zarr", config={"a": 1})
    attrs = video_attrs()
    writer.write_video("v1", make_arrays(attrs), attrs)
    writer.finalize()
    for where in ("videos", "failures", "videos/v1", "videos/v1/mv"):
        (path / where / TEMP).write_bytes(b'{"zarr_format": 3, "node_type": "gro')  # cut short
    return path


@pytest.mark.filterwarnings("ignore:Object at zarr.*partial is not recognized")   # the temporary, listed by zarr
def test_a_killed_writes_temporary_is_no_video_and_finalize_removes_it(tmp_path):
    out = _set_with_temporaries(tmp_path / "set")
    with open_shards(str(out)) as ds:
        assert ds.ids() == ["v1"] and ds.failures() == []
    assert main(["verify", str(out)]) == 0
    assert foreign_files(fsspec.filesystem("file"), str(out), "zarr") == []
    open_writer(out, format="zarr").finalize()
    assert not (out / "videos" / TEMP).exists() and not (out / "failures" / TEMP).exists()
    assert "videos" in remove_set(str(out), "zarr")
