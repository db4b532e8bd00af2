"""Corpus adapters on tiny fake trees of each layout, and the generated demo corpus.

The adapters never decode, so most trees hold empty placeholder files; the folder tree
holds one real encoded clip and the demo corpus is decoded end to end.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import av
import numpy as np
import pytest

from preprocess import synthetic
from preprocess.datasets import DATASETS, DatasetRootError, default_root, get_adapter, list_videos, scan
from preprocess.datasets import demo, synthetic_motion
from preprocess.datasets.base import safe_id
from preprocess.datasets.listfile import parse_line

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in [v for v in os.environ if v.startswith("MOTION_MAE_")]:
        monkeypatch.delenv(var)


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------- fake trees

def make_folder(root: Path) -> dict:
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    synthetic.encode(root / "a" / "clip.mp4", frames)
    touch(root / "b" / "clip.MP4")
    touch(root / "B2" / "Clip.mkv")            # collides with clip only case-insensitively
    touch(root / "top level (1).webm")
    touch(root / "._top.mp4")                   # AppleDouble, not a video
    touch(root / ".cache" / "x.mp4")
    touch(root / "notes.txt")
    return {"root": root}


def make_list(root: Path) -> dict:
    touch(root / "vids" / "a.mp4")
    touch(root / "vids" / "b c.mp4")
    touch(root / "vids" / "frames.mp4")
    touch(root / "vids" / "neg.mp4")
    outside = touch(root.parent / "elsewhere" / "x.avi")
    lines = ["# VideoMAE list", "", "vids/a.mp4 3", "vids/b c.mp4,1", f"{outside} 0",
             "vids/gone.mp4 2", "vids/frames.mp4 300 4", "vids/neg.mp4 -1"]
    return {"list_file": touch(root / "train.csv", "\n".join(lines) + "\n")}


K400_TRAIN = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,aaa,0,10,train,0
air drumming,-bbb,5,15,train,0
zumba,ccc,3,13,train,0
abseiling,gone,0,10,train,0
"""


def make_k400(root: Path) -> dict:
    touch(root / "annotations" / "train.csv", K400_TRAIN)
    touch(root / "annotations" / "val.csv", "label,youtube_id,time_start,time_end,split\nzumba,vvv,1,11,val\n")
    touch(root / "annotations" / "test.csv", "youtube_id,time_start,time_end,split\nttt,0,10,test\n")
    touch(root / "train" / "abseiling" / "aaa_000000_000010.mp4")
    touch(root / "train" / "air drumming" / "-bbb_000005_000015.mp4")
    touch(root / "train" / "zumba" / "ccc_000003_000013.mp4")
    touch(root / "train" / "extra" / "zzz_000000_000010.mp4")   # on disk, in no CSV
    touch(root / "val" / "vvv_000001_000011.mp4")               # flat split folder
    touch(root / "test" / "ttt.mp4")                             # bare youtube id
    return {"root": root}


def make_ssv2(root: Path) -> dict:
    labels = {"Holding something next to something": "0", "Putting something on a surface": "1"}
    train = [{"id": "10", "label": "holding a cup next to a pen", "template": "Holding [something] next to [something]",
              "placeholders": ["a cup", "a pen"]},
             {"id": "11", "label": "putting a cup on a surface", "template": "Putting [something] on a surface",
              "placeholders": ["a cup"]},
             {"id": "99", "label": "putting x on a surface", "template": "Putting [something] on a surface",
              "placeholders": ["x"]}]
    val = [{"id": "20", "label": "putting a pen on a surface", "template": "Putting [something] on a surface",
            "placeholders": ["a pen"]}]
    for name, content in [("labels", labels), ("train", train), ("validation", val), ("test", [{"id": "30"}])]:
        touch(root / "labels" / f"something-something-v2-{name}.json", json.dumps(content))
    for vid in ("10", "11", "20", "30", "40"):
        touch(root / "20bn-something-something-v2" / f"{vid}.webm")
    return {"root": root}


def make_ucf101(root: Path) -> dict:
    names = {"eye": "ApplyEyeMakeup/v_ApplyEyeMakeup_g{:02d}_c01.avi",
             "hand": "HandstandPushups/v_HandStandPushups_g{:02d}_c01.avi"}  # the real case mismatch
    for pattern in names.values():
        for group in (1, 8):
            touch(root / pattern.format(group))
    lists = root / "ucfTrainTestlist"
    touch(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 HandstandPushups\n")
    for fold, (train_g, test_g) in {1: (8, 1), 2: (1, 8), 3: (8, 1)}.items():
        train = [f"{names['eye'].format(train_g)} 1", f"{names['hand'].format(train_g)} 2"]
        if fold == 1:
            train.append(f"{names['eye'].format(9)} 1")  # not on disk
        touch(lists / f"trainlist{fold:02d}.txt", "\n".join(train) + "\n")
        touch(lists / f"testlist{fold:02d}.txt", f"{names['eye'].format(test_g)}\n{names['hand'].format(test_g)}\n")
    return {"root": root}


def make_hmdb51(root: Path) -> dict:
    for name in ("a.avi", "b.avi", "#20_Rhythm (clap)!.avi"):
        touch(root / "brush_hair" / name)
    for name in ("d.avi", "e.avi"):
        touch(root / "cartwheel" / name)
    splits = root / "testTrainMulti_7030_splits"
    touch(splits / "brush_hair_test_split1.txt", "a.avi 1 \nb.avi 2 \n#20_Rhythm (clap)!.avi 0 \n")
    touch(splits / "brush_hair_test_split2.txt", "a.avi 2 \nb.avi 1 \n#20_Rhythm (clap)!.avi 1 \n")
    touch(splits / "cartwheel_test_split1.txt", "d.avi 1 \ne.avi 2 \nf.avi 1 \n")
    touch(splits / "cartwheel_test_split2.txt", "d.avi 2 \ne.avi 1 \nf.avi 0 \n")
    return {"root": root}


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "demo_videos"
    demo.prepare(root)
    return root


def make_synthetic_motion(root: Path) -> dict:
    synthetic_motion.generate(root, synthetic_motion.SynthConfig(per_class=2, frames=4, height=32, width=32))
    return {"root": root}


BUILDERS = {"folder": make_folder, "list": make_list, "k400": make_k400, "ssv2": make_ssv2,
            "ucf101": make_ucf101, "hmdb51": make_hmdb51, "synthetic-motion": make_synthetic_motion}


@pytest.fixture
def corpus(request, tmp_path, demo_root) -> tuple[str, dict]:
    name = request.param
    return name, {"root": demo_root} if name == "demo" else BUILDERS[name](tmp_path / name)


def by_id(items):
    return {it.video_id: it for it in items}


# ------------------------------------------------------------- every registered adapter

def test_every_dataset_has_a_fake_tree():
    assert set(BUILDERS) | {"demo"} == set(DATASETS)


@pytest.mark.parametrize("corpus", list(DATASETS), indirect=True)
def test_listing_invariants(corpus):
    name, kwargs = corpus
    items = list_videos(name, **kwargs)
    assert items, name
    ids = [it.video_id for it in items]
    assert all(SAFE.match(i) and not i.startswith("__") for i in ids)
    assert len({i.casefold() for i in ids}) == len(ids)
    assert [it.path for it in items] == sorted(it.path for it in items)
    assert all(Path(it.path).is_absolute() and Path(it.path).is_file() for it in items)
    assert all(it.label is None or (isinstance(it.label, int) and it.label >= 0) for it in items)
    assert list_videos(name, **kwargs) == items                       # deterministic
    assert list_videos(name, **kwargs, limit=2) == items[:2]
    splits = DATASETS[name].splits
    for split in {it.split for it in items} - {None}:
        assert not splits or split in splits
        subset = list_videos(name, **kwargs, split=split)
        assert subset == [it for it in items if it.split == split]  # same ids as the full listing


# ----------------------------------------------------------------------------- layouts

def test_folder(tmp_path):
    items = by_id(list_videos("folder", **make_folder(tmp_path)))
    assert len(items) == 4  # hidden files, hidden folders and notes.txt are not videos
    clip_ids = sorted(i for i in items if i.casefold().startswith("clip__"))
    assert len(clip_ids) == 3 and len({i[:6].casefold() for i in clip_ids}) == 1
    assert items["top_level_1_"].label_name is None and items["top_level_1_"].label is None
    assert {it.label_name for it in items.values()} == {None, "a", "b", "B2"}
    assert all(it.split is None for it in items.values())


def test_folder_split_subfolder(tmp_path):
    touch(tmp_path / "train" / "x.mp4")
    touch(tmp_path / "val" / "cls" / "y.mp4")
    (item,) = list_videos("folder", root=tmp_path, split="val")
    assert (item.video_id, item.split, item.label_name) == ("y", "val", "cls")
    with pytest.raises(DatasetRootError, match="no split folder"):
        list_videos("folder", root=tmp_path, split="test")


@pytest.mark.parametrize("line, expected", [
    ("a.mp4 3", ("a.mp4", 3)),
    ("dir/a b.mp4,1", ("dir/a b.mp4", 1)),
    ("x.mp4 300 4", ("x.mp4", 4)),
    ("x.mp4, 7 ,", ("x.mp4", 7)),
    ("clip-1.mp4", ("clip-1.mp4", None)),
    ("neg.mp4 -1", ("neg.mp4", None)),
    ("/abs/v 12.avi\t5", ("/abs/v 12.avi", 5)),
])
def test_parse_list_line(line, expected):
    assert parse_line(line) == expected


def test_list(tmp_path):
    kwargs = make_list(tmp_path / "list")
    listing = scan("list", **kwargs)
    items = by_id(listing.items)
    assert {i: it.label for i, it in items.items()} == {"a": 3, "b_c": 1, "x": 0, "frames": 4, "neg": None}
    assert items["x"].path == str(tmp_path / "elsewhere" / "x.avi")
    assert [Path(it.path).name for it in listing.missing] == ["gone.mp4"]
    # --split alone reads <root>/<split>.csv and tags the items
    tagged = list_videos("list", root=tmp_path / "list", split="train")
    assert [it.video_id for it in tagged] == [it.video_id for it in listing.items] and tagged[0].split == "train"
    with pytest.raises(DatasetRootError, match="val.csv"):
        list_videos("list", root=tmp_path / "list", split="val")


def test_k400(tmp_path):
    listing = scan("k400", **make_k400(tmp_path))
    items = by_id(listing.items)
    assert {i: (it.label, it.label_name, it.split) for i, it in items.items()} == {
        "aaa_000000_000010": (0, "abseiling", "train"),
        "-bbb_000005_000015": (1, "air drumming", "train"),
        "ccc_000003_000013": (2, "zumba", "train"),
        "zzz_000000_000010": (None, None, "train"),
        "vvv_000001_000011": (2, "zumba", "val"),
        "ttt": (None, None, "test"),
    }
    assert [(it.video_id, it.label, it.split) for it in listing.missing] == [("gone_000000_000010", 0, "train")]
    val = list_videos("k400", root=tmp_path, split="validate")
    assert [it.video_id for it in val] == ["vvv_000001_000011"]


def test_k400_csvs_in_root_and_no_csv(tmp_path):
    make_k400(tmp_path)
    (tmp_path / "annotations" / "train.csv").rename(tmp_path / "train.csv")
    (tmp_path / "annotations" / "val.csv").rename(tmp_path / "validate.csv")
    assert by_id(list_videos("k400", root=tmp_path))["vvv_000001_000011"].label == 2
    for csv_file in (tmp_path / "train.csv", tmp_path / "validate.csv", tmp_path / "annotations" / "test.csv"):
        csv_file.unlink()
    with pytest.raises(DatasetRootError, match="--dataset folder"):
        list_videos("k400", root=tmp_path)


def test_ssv2(tmp_path):
    listing = scan("ssv2", **make_ssv2(tmp_path))
    items = by_id(listing.items)
    assert {i: (it.label, it.label_name, it.split) for i, it in items.items()} == {
        "10": (0, "Holding something next to something", "train"),
        "11": (1, "Putting something on a surface", "train"),
        "20": (1, "Putting something on a surface", "val"),
        "30": (None, None, "test"),
        "40": (None, None, None),
    }
    assert [it.video_id for it in listing.missing] == ["99"]
    assert [it.video_id for it in list_videos("ssv2", root=tmp_path, split="validation")] == ["20"]


def test_ucf101(tmp_path):
    listing = scan("ucf101", **make_ucf101(tmp_path))
    items = by_id(listing.items)
    assert {i: (it.label, it.split) for i, it in items.items()} == {
        "v_ApplyEyeMakeup_g01_c01": (0, "test1"), "v_ApplyEyeMakeup_g08_c01": (0, "train1"),
        "v_HandStandPushups_g01_c01": (1, "test1"), "v_HandStandPushups_g08_c01": (1, "train1"),
    }
    assert items["v_HandStandPushups_g01_c01"].label_name == "HandstandPushups"
    assert [it.video_id for it in listing.missing] == ["v_ApplyEyeMakeup_g09_c01"]
    assert list_videos("ucf101", root=tmp_path, split="train") == list_videos("ucf101", root=tmp_path, split="train1")
    fold2 = list_videos("ucf101", root=tmp_path, split="train2")
    assert sorted(it.video_id for it in fold2) == ["v_ApplyEyeMakeup_g01_c01", "v_HandStandPushups_g01_c01"]
    with pytest.raises(ValueError, match="train1"):
        list_videos("ucf101", root=tmp_path, split="train4")


def test_ucf101_flat_with_lists_next_to_root(tmp_path):
    make_ucf101(tmp_path / "tmp")
    flat = tmp_path / "UCF-101"
    flat.mkdir()
    for video in (tmp_path / "tmp").glob("*/*.avi"):
        video.rename(flat / video.name)
    (tmp_path / "tmp" / "ucfTrainTestlist").rename(tmp_path / "ucfTrainTestlist")
    items = by_id(list_videos("ucf101", root=flat))
    assert items["v_HandStandPushups_g08_c01"].label == 1 and items["v_HandStandPushups_g08_c01"].split == "train1"


def test_hmdb51(tmp_path):
    listing = scan("hmdb51", **make_hmdb51(tmp_path))
    items = by_id(listing.items)
    assert {i: (it.label, it.label_name, it.split) for i, it in items.items()} == {
        "a": (0, "brush_hair", "train1"), "b": (0, "brush_hair", "test1"), "_20_Rhythm_clap_": (0, "brush_hair", None),
        "d": (1, "cartwheel", "train1"), "e": (1, "cartwheel", "test1"),
    }
    assert [(it.video_id, it.split) for it in listing.missing] == [("f", "train1")]
    fold2 = list_videos("hmdb51", root=tmp_path, split="train2")
    assert [it.video_id for it in fold2] == ["_20_Rhythm_clap_", "b", "e"]


# ------------------------------------------------- the layouts of common mirrors (docs/datasets.md)

def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dst)


def test_k400_deepmind_tarball_and_openmmlab_layouts(tmp_path):
    reference = {i: (it.label, it.split) for i, it in by_id(scan("k400", **make_k400(tmp_path / "ref")).items).items()}
    deepmind = tmp_path / "deepmind"  # kinetics400.tar.gz unpacked in the root: kinetics400/{train,validate}.csv
    make_k400(deepmind)
    _move(deepmind / "annotations" / "train.csv", deepmind / "kinetics400" / "train.csv")
    _move(deepmind / "annotations" / "val.csv", deepmind / "kinetics400" / "validate.csv")
    _move(deepmind / "annotations" / "test.csv", deepmind / "kinetics400" / "test.csv")
    assert {i: (it.label, it.split) for i, it in by_id(list_videos("k400", root=deepmind)).items()} == reference

    mm = tmp_path / "openmmlab"  # annotations/kinetics_{train,val,test}.csv, videos_{train,val,test}/<class>/
    make_k400(mm)
    for split in ("train", "val", "test"):
        _move(mm / "annotations" / f"{split}.csv", mm / "annotations" / f"kinetics_{split}.csv")
        _move(mm / split, mm / f"videos_{split}")
    assert {i: (it.label, it.split) for i, it in by_id(list_videos("k400", root=mm)).items()} == reference
    assert [it.video_id for it in list_videos("k400", root=mm, split="val")] == ["vvv_000001_000011"]


def test_ssv2_qualcomm_short_names_and_openmmlab_videos(tmp_path):
    reference = {i: (it.label, it.split) for i, it in by_id(scan("ssv2", **make_ssv2(tmp_path / "ref")).items).items()}
    root = tmp_path / "qualcomm"  # labels/{labels,train,validation,test}.json, videos/<id>.webm
    make_ssv2(root)
    for name in ("labels", "train", "validation", "test"):
        _move(root / "labels" / f"something-something-v2-{name}.json", root / "labels" / f"{name}.json")
    _move(root / "20bn-something-something-v2", root / "videos")
    assert {i: (it.label, it.split) for i, it in by_id(list_videos("ssv2", root=root)).items()} == reference


def test_ucf101_openmmlab_layout(tmp_path):
    reference = {i: (it.label, it.split) for i, it in by_id(scan("ucf101", **make_ucf101(tmp_path / "ref")).items).items()}
    root = tmp_path / "openmmlab"  # videos/<Class>/*.avi, annotations/{classInd,trainlist0N,testlist0N}.txt
    make_ucf101(root)
    for folder in [p for p in root.iterdir() if p.name != "ucfTrainTestlist"]:
        _move(folder, root / "videos" / folder.name)
    _move(root / "ucfTrainTestlist", root / "annotations")
    assert {i: (it.label, it.split) for i, it in by_id(list_videos("ucf101", root=root)).items()} == reference


def test_hmdb51_openmmlab_layout(tmp_path):
    reference = {i: (it.label, it.split) for i, it in by_id(scan("hmdb51", **make_hmdb51(tmp_path / "ref")).items).items()}
    root = tmp_path / "openmmlab"  # videos/<class>/*.avi, annotations/<class>_test_splitN.txt
    make_hmdb51(root)
    for cls in ("brush_hair", "cartwheel"):
        _move(root / cls, root / "videos" / cls)
    _move(root / "testTrainMulti_7030_splits", root / "annotations")
    assert {i: (it.label, it.split) for i, it in by_id(list_videos("hmdb51", root=root)).items()} == reference
    assert sorted(it.video_id for it in list_videos("hmdb51", root=root, split="train2")) == ["_20_Rhythm_clap_", "b", "e"]


# -------------------------------------------------------------------------- ids, roots

def test_safe_id():
    assert safe_id("a b(c)") == "a_b_c_"
    assert safe_id("__x") == "v__x" and safe_id(".x") == "v.x" and safe_id("-yt_id") == "-yt_id"
    long = safe_id("x" * 300)
    assert len(long) <= 120 and SAFE.match(long) and long != safe_id("x" * 299)


def test_ids_do_not_depend_on_split_or_limit(tmp_path):
    touch(tmp_path / "train" / "clip.mp4")
    touch(tmp_path / "val" / "clip.mp4")
    everything = by_id(list_videos("folder", root=tmp_path))
    (val,) = list_videos("folder", root=tmp_path, split="val")
    assert val.video_id.startswith("clip__")
    assert list_videos("folder", root=tmp_path, limit=1)[0].video_id in everything


def test_missing_root_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path / "nowhere"))
    assert default_root("k400") == tmp_path / "nowhere" / "k400"
    with pytest.raises(DatasetRootError) as err:
        list_videos("k400")
    message = str(err.value)
    for needle in (str(tmp_path / "nowhere" / "k400"), "$MOTION_MAE_DATA/k400", "--root", "MOTION_MAE_K400_ROOT"):
        assert needle in message
    with pytest.raises(DatasetRootError, match="from --root"):
        list_videos("ucf101", root=tmp_path / "elsewhere")


def test_per_dataset_root_variable_wins(tmp_path, monkeypatch):
    make_hmdb51(tmp_path / "hmdb")
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MOTION_MAE_HMDB51_ROOT", str(tmp_path / "hmdb"))
    assert default_root("hmdb51") == tmp_path / "hmdb"
    assert len(list_videos("hmdb51")) == 5


def test_bad_arguments(tmp_path):
    with pytest.raises(KeyError, match="known: demo"):
        list_videos("kinetics")
    with pytest.raises(ValueError, match="only read by --dataset list"):
        list_videos("folder", root=tmp_path, list_file=tmp_path / "x.txt")
    with pytest.raises(DatasetRootError, match="found no videos"):
        list_videos("folder", root=tmp_path)


# -------------------------------------------------------------------------------- demo

def test_demo_clips_decode(demo_root):
    items = list_videos("demo", root=demo_root)
    synthetic_items = [it for it in items if it.label is not None]
    assert len(synthetic_items) == len(demo.CLIPS) == 8
    codecs = {}
    for item in items:
        with av.open(item.path) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
        codecs[item.video_id] = stream.codec_context.name
        if item.label is not None:
            assert len(frames) == demo.FRAMES
            assert frames[0].to_ndarray(format="rgb24").shape == (demo.HEIGHT, demo.WIDTH, 3)
        if item.video_id == "object_h264_bframes":
            assert any(f.pict_type == av.video.frame.PictureType.B for f in frames)
    assert {"h264", "hevc", "vp9", "mpeg4"} <= set(codecs.values())
    for split in ("train", "val"):
        assert {it.label_name for it in items if it.split == split and it.label is not None} == set(demo.CLASSES)


def test_demo_regenerates_only_missing_files(demo_root):
    before = {p.name: p.stat().st_mtime_ns for p in demo_root.iterdir()}
    demo.prepare(demo_root)
    assert {p.name: p.stat().st_mtime_ns for p in demo_root.iterdir()} == before
    (demo_root / "pan_mpeg4.avi").unlink()
    list_videos("demo", root=demo_root)
    after = {p.name: p.stat().st_mtime_ns for p in demo_root.iterdir()}
    assert after.keys() == before.keys()  # no partial folder left behind
    assert {name for name in after if after[name] != before[name]} == {"pan_mpeg4.avi"}


def test_demo_default_root_is_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTION_MAE_DATA", str(tmp_path))
    assert default_root("demo") == tmp_path / "demo_videos"


def test_every_command_in_docs_datasets_parses():
    """docs/datasets.md's commands use flags and values extract.py accepts, one per corpus layout."""
    import shlex

    from preprocess.extract import parse_args

    doc = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    commands = [line.split("#")[0] for line in doc.splitlines() if line.startswith("python preprocess/extract.py")]
    configs = [parse_args(shlex.split(c)[2:]) for c in commands]
    assert {c.dataset for c in configs} >= {"k400", "ssv2", "ucf101", "hmdb51", "list", "folder"}
    for c in configs:
        get_adapter(c.dataset).canonical_split(c.split)  # raises on a split the adapter does not know
    for name in ("k400", "ssv2", "ucf101", "hmdb51", "list", "folder"):
        assert f"## {name}" in doc
