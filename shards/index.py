"""The corpus index a finalized shard set keeps in its root attrs, and the root attrs a
reopened set takes: what every backend writes and the reader reads.

`finalize` writes the index of the committed ids, with their label, split and frame count
(`INDEX_ATTRS`), so that a reader opens a large corpus, and picks a split, without listing it.
"""
from __future__ import annotations

from .metadata import jsonable

INDEX_KEY = "index"  # root attr holding the corpus index
INDEX_ATTRS = ("label", "split", "num_frames")  # per-video attrs copied into the corpus index
# Root attr where a writer that reopens a finalized set parks the old index: `finalize` takes
# the rows of videos it lists from there instead of reading every video's attrs again.
INDEX_BASE_KEY = "index_base"


def merge_config(stored_attrs: dict, config: dict | None, where: str) -> dict:
    """Root attr updates when reopening a shard set with `config`.

    The first config written stays: a resumed run is compared with it by the caller
    (`ShardWriter.config()`), which knows which keys change the arrays (flow method,
    traj_len) and which do not (worker count, limit).
    """
    if config is None or stored_attrs.get("config"):
        return {}
    return {"config": jsonable(config)}


def build_index(videos) -> dict:
    """The corpus index written by `finalize`: committed ids and what a sampler asks of them.

    `videos` yields (id, video attrs). Columns are parallel lists in id order, so K400's
    240k videos make a few MB of JSON, read once when the shard set is opened; class names
    are kept once per label in `label_names`, not once per video.
    """
    rows = sorted(videos, key=lambda row: row[0])
    index: dict = {"videos": [vid for vid, _ in rows]}
    for key in INDEX_ATTRS:
        index[key] = [attrs.get(key) for _, attrs in rows]
    names: dict[str, str] = {}
    for _, attrs in rows:
        if attrs.get("label") is not None and attrs.get("label_name") is not None:
            names.setdefault(str(attrs["label"]), attrs["label_name"])
    index["label_names"] = names
    return jsonable(index)


def index_rows(index: dict | None) -> dict[str, dict]:
    """id -> the attrs `build_index` keeps, recovered from a written index (None: {})."""
    if not index:
        return {}
    names = index.get("label_names") or {}
    rows = {}
    for i, vid in enumerate(index.get("videos", [])):
        attrs = {key: index[key][i] for key in INDEX_ATTRS if key in index}
        if attrs.get("label") is not None and str(attrs["label"]) in names:
            attrs["label_name"] = names[str(attrs["label"])]
        rows[vid] = attrs
    return rows


def incremental_index(base: dict | None, committed: set[str], read_attrs) -> dict:
    """The corpus index of the `committed` ids, reading attrs (`read_attrs(id)`) only of the
    ids the `base` index (that of the last finalize) does not list: a committed video is
    never rewritten, so its row cannot have changed. K400's 240k videos otherwise cost one
    metadata read each at every finalize (a GET each on object stores)."""
    known = index_rows(base)
    return build_index((vid, known[vid] if vid in known else read_attrs(vid)) for vid in committed)
