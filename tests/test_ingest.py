"""Ingestion of every ImageNet layout into the manifest contract (data/ingest.py, data/layouts.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from imagenet_clean.classes import ClassList, write_classes
from imagenet_clean.cli import app
from imagenet_clean.config import parse_params
from imagenet_clean.data.ingest import MANIFEST_SCHEMA, ingest_split, write_manifest
from imagenet_clean.io import read_metadata, read_table
from imagenet_clean.stages.ingest import run as run_ingest
from imagenet_clean.workspace import Workspace

BIG = 10**8
W1, W2, W3 = "n00000001", "n00000002", "n00000003"


def xml(stem, *objects):
    objs = "".join(
        f"<object><name>{w}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for w, b in objects
    )
    return f"<annotation><filename>{stem}</filename>{objs}</annotation>"


@pytest.fixture
def train_tree(tmp_path, write_image):
    root = tmp_path / "train"
    for w in (W1, W2):
        for i in range(2):
            write_image(root / w / f"{w}_{i}.JPEG", size=(30 + i, 20), seed=i)
    boxes = tmp_path / "boxes"
    (boxes / W1).mkdir(parents=True)
    (boxes / W1 / f"{W1}_0.xml").write_text(xml(f"{W1}_0", (W1, (1, 2, 10, 12)), (W2, (3, 3, 4, 4))))
    (boxes / f"{W2}_1.xml").write_text(xml(f"{W2}_1", (W2, (0, 0, 5, 5))))  # flat layout also accepted
    return root, boxes


def rows(df):
    return {r.sample_id: r for r in df.itertuples()}


def test_train_layout_with_voc_boxes(train_tree, classes3):
    root, boxes = train_tree
    df, stats = ingest_split(root, layout="train", classes=classes3, annotations=boxes, max_pixels=BIG)
    assert list(df.columns) == MANIFEST_SCHEMA.names
    assert list(df["sample_id"]) == sorted(df["sample_id"])
    r = rows(df)
    a = r[f"{W1}/{W1}_0.JPEG"]
    assert (a.label, a.wnid, a.width, a.height, a.status, a.reason) == (0, W1, 30, 20, "ok", "")
    assert [list(b) for b in a.boxes] == [[1, 2, 10, 12]]  # only the label's boxes
    assert [list(b) for b in r[f"{W2}/{W2}_1.JPEG"].boxes] == [[0, 0, 5, 5]]
    assert len(r[f"{W2}/{W2}_0.JPEG"].boxes) == 0
    assert stats["n_ok"] == 4 and stats["n_with_boxes"] == 2 and stats["annotation_errors"] == []
    assert all(len(h) == 32 for h in df["content_hash"])


def test_train_layout_with_kaggle_csv(train_tree, classes3, tmp_path):
    root, _ = train_tree
    csv = tmp_path / "LOC_train_solution.csv"
    csv.write_text(f"ImageId,PredictionString\n{W2}_0,{W2} 1 1 8 8\n{W2}_9,{W2} 1 1 8 8\n{W1}_1,n99999999 1 1 2 2\n")
    df, stats = ingest_split(root, layout="train", classes=classes3, annotations=csv, max_pixels=BIG)
    assert [list(b) for b in rows(df)[f"{W2}/{W2}_0.JPEG"].boxes] == [[1, 1, 8, 8]]
    assert f"{csv}:3: no image named '{W2}_9' under {root}" in stats["annotation_errors"]
    assert f"{csv}:4: unknown class id 'n99999999'" in stats["annotation_errors"]
    assert stats["n_ok"] == 4  # bad annotations never make an image an error in train


def test_bad_files_are_recorded_not_dropped(tmp_path, classes3, write_image):
    root = tmp_path / "train"
    write_image(root / W1 / "good.JPEG")
    (root / W1 / "empty.JPEG").write_bytes(b"")
    data = write_image(root / W1 / "trunc.JPEG", size=(64, 64)).read_bytes()
    (root / W1 / "trunc.JPEG").write_bytes(data[:300])
    (root / W1 / "readme.txt").write_text("hello")
    write_image(root / W1 / "cmyk.JPEG", mode="CMYK")
    write_image(root / W1 / "gray.JPEG", mode="L")
    write_image(root / W1 / "png.JPEG", format="PNG")
    write_image(root / W1 / "bomb.JPEG", size=(200, 200))
    write_image(root / "n77777777" / "stray.JPEG")
    write_image(root / "top.JPEG")
    df, stats = ingest_split(root, layout="train", classes=classes3, max_pixels=10_000)
    r = rows(df)
    assert len(df) == 10
    for ok in ("good", "cmyk", "gray", "png"):
        assert r[f"{W1}/{ok}.JPEG"].status == "ok", ok
    expect = {
        f"{W1}/empty.JPEG": "empty file",
        f"{W1}/trunc.JPEG": "truncated file",
        f"{W1}/readme.txt": "not an image",
        f"{W1}/bomb.JPEG": "decompression bomb",
        "n77777777/stray.JPEG": "unknown class folder n77777777",
        "top.JPEG": "not in a class folder",
    }
    for sid, why in expect.items():
        assert r[sid].status == "error" and r[sid].reason.startswith(why), (sid, r[sid].reason)
    assert r["n77777777/stray.JPEG"].label == -1 and r["n77777777/stray.JPEG"].width == 24
    assert stats["n_error"] == 6 and stats["errors_by_reason"]["empty file"] == 1
    assert stats["errors_by_reason"]["unknown class folder"] == 1 and stats["errors_by_reason"]["not an image"] == 1
    assert r[f"{W1}/readme.txt"].width == -1 and r[f"{W1}/empty.JPEG"].size == 0


def test_val_flat_with_kaggle_csv(tmp_path, classes3, write_image):
    root = tmp_path / "val"
    for i in range(1, 4):
        write_image(root / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n00000003 1 2 3 4 n00000003 2 2 6 6\n"
        "ILSVRC2012_val_00000002,n99999999 1 2 3 4\n"
        "ILSVRC2012_val_00000009,n00000001 1 2 3 4\n"
    )
    df, stats = ingest_split(root, layout="val", classes=classes3, annotations=csv, max_pixels=BIG)
    r = rows(df)
    a = r["ILSVRC2012_val_00000001.JPEG"]
    assert (a.label, a.wnid, a.status) == (2, W3, "ok") and len(a.boxes) == 2
    b = r["ILSVRC2012_val_00000002.JPEG"]
    assert b.status == "error" and b.reason == f"unknown class 'n99999999' ({csv}:3)"
    assert stats["errors_by_reason"] == {"no label": 1, "unknown class": 1}
    assert r["ILSVRC2012_val_00000003.JPEG"].reason.startswith("no label")
    assert f"{csv}:4: no image named 'ILSVRC2012_val_00000009' under {root}" in stats["annotation_errors"]


def test_val_flat_with_voc_folder_and_bad_xml(tmp_path, classes3, write_image):
    root, ann = tmp_path / "val", tmp_path / "val_xml"
    ann.mkdir()
    for i in (1, 2, 3):
        write_image(root / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    (ann / "ILSVRC2012_val_00000001.xml").write_text(xml("v1", (W2, (1, 1, 5, 5))))
    (ann / "ILSVRC2012_val_00000002.xml").write_text("<annotation>\n<object>\n")
    (ann / "ILSVRC2012_val_00000003.xml").write_text(
        '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><annotation><object><name>&e;</name></object></annotation>')
    df, stats = ingest_split(root, layout="val", classes=classes3, annotations=ann, max_pixels=BIG)
    r = rows(df)
    assert (r["ILSVRC2012_val_00000001.JPEG"].label, r["ILSVRC2012_val_00000001.JPEG"].status) == (1, "ok")
    assert r["ILSVRC2012_val_00000002.JPEG"].status == "error"  # no label: its only annotation is broken
    errs = "\n".join(stats["annotation_errors"])
    assert "ILSVRC2012_val_00000002.xml:3: malformed XML" in errs
    assert "ILSVRC2012_val_00000003.xml: unsafe XML refused" in errs and "root:" not in errs


def test_val_labels_file_and_class_folders(tmp_path, classes3, write_image):
    root = tmp_path / "val"
    write_image(root / "ILSVRC2012_val_00000001.JPEG")
    write_image(root / "ILSVRC2012_val_00000002.JPEG")
    labels = tmp_path / "val.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000002.JPEG n00000001\n")
    df, _ = ingest_split(root, layout="val", classes=classes3, labels=labels, max_pixels=BIG)
    assert list(df["label"]) == [2, 0]
    folders = tmp_path / "valf"
    write_image(folders / W2 / "x.JPEG")
    df, _ = ingest_split(folders, layout="val", classes=classes3, max_pixels=BIG)
    assert (df["label"][0], df["wnid"][0], df["status"][0]) == (1, W2, "ok")


def test_v2_folders_are_integer_class_indices(tmp_path, write_image):
    classes = ClassList(tuple(f"n{i:08d}" for i in range(12)), tuple(f"c{i}" for i in range(12)))
    root = tmp_path / "v2"
    for k in (0, 2, 10, 11):
        write_image(root / str(k) / "abc.jpeg", seed=k)
    write_image(root / "12" / "x.jpeg")
    write_image(root / "cat" / "y.jpeg")
    df, stats = ingest_split(root, layout="v2", classes=classes, max_pixels=BIG)
    r = rows(df)
    for k in (0, 2, 10, 11):
        assert (r[f"{k}/abc.jpeg"].label, r[f"{k}/abc.jpeg"].wnid) == (k, f"n{k:08d}")
    assert r["12/x.jpeg"].reason == "unknown class folder 12"
    assert r["cat/y.jpeg"].reason == "unknown class folder cat"
    assert stats["n_ok"] == 4


def test_folders_layout_and_missing_root(tmp_path, classes3, write_image):
    write_image(tmp_path / "d" / W3 / "sub" / "deep.png", format="PNG")
    df, _ = ingest_split(tmp_path / "d", layout="folders", classes=classes3, max_pixels=BIG, hash=False)
    assert (df["sample_id"][0], df["label"][0]) == (f"{W3}/sub/deep.png", 2) and df["content_hash"][0] is None
    with pytest.raises(FileNotFoundError, match="nowhere: dataset root not found"):
        ingest_split(tmp_path / "nowhere", layout="train", classes=classes3)
    with pytest.raises(ValueError, match="unknown layout 'coco'"):
        ingest_split(tmp_path / "d", layout="coco", classes=classes3)


def test_symlink_cycle_is_listed_once(tmp_path, classes3, write_image):
    write_image(tmp_path / "t" / W1 / "a.JPEG")
    (tmp_path / "t" / W1 / "loop").symlink_to(tmp_path / "t")
    df, _ = ingest_split(tmp_path / "t", layout="train", classes=classes3)
    assert list(df["sample_id"]) == [f"{W1}/a.JPEG"]


def test_parallel_equals_serial(tmp_path, classes3, write_image, monkeypatch):
    import imagenet_clean.data.ingest as ing

    monkeypatch.setattr(ing, "_CHUNK", 3)
    monkeypatch.setattr(ing, "_MIN_PARALLEL", 0)
    for i in range(10):
        write_image(tmp_path / "t" / W1 / f"{i}.JPEG", seed=i)
    (tmp_path / "t" / W1 / "z.JPEG").write_bytes(b"")
    serial, _ = ingest_split(tmp_path / "t", layout="train", classes=classes3, workers=1)
    parallel, _ = ingest_split(tmp_path / "t", layout="train", classes=classes3, workers=2)
    assert serial.equals(parallel)


def test_manifest_file_schema_and_metadata(train_tree, classes3, tmp_path):
    root, boxes = train_tree
    df, _ = ingest_split(root, layout="train", classes=classes3, annotations=boxes)
    out = tmp_path / "m.parquet"
    write_manifest(out, df, root=root, layout="train", split="train", classes="c.tsv", num_classes=3)
    schema = pq.read_schema(out)
    assert schema.names == MANIFEST_SCHEMA.names
    assert schema.field("boxes").type == MANIFEST_SCHEMA.field("boxes").type
    assert read_metadata(out) == {"root": str(root), "layout": "train", "split": "train", "classes": "c.tsv", "num_classes": "3"}
    back = read_table(out)
    assert [list(b) for b in back["boxes"][0]] == [[1, 2, 10, 12]]


def test_stage_form_writes_manifest_and_metrics(train_tree, classes3, tmp_path, monkeypatch):
    root, boxes = train_tree
    monkeypatch.chdir(tmp_path)
    write_classes("classes.tsv", classes3)
    params = parse_params({"dataset": {"classes": "classes.tsv"},
                           "splits": {"train": {"root": str(root), "layout": "train", "annotations": str(boxes)}},
                           "ingest": {"workers": 1}})
    stats = run_ingest(params, Workspace(), "train")
    assert stats["n_files"] == 4
    assert len(read_table("data/manifests/train.parquet")) == 4
    assert json.loads(Path("metrics/ingest/train.json").read_text())["n_with_boxes"] == 2



def test_stage_form_skips_split_without_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_params({"splits": {"imagenet_r": {"root": None, "layout": "folders"}}})
    for split in ("imagenet_r", "unconfigured"):
        stats = run_ingest(params, Workspace(), split)
        assert stats["skipped"] and stats["n_files"] == 0
        df = read_table(f"data/manifests/{split}.parquet")
        assert df.empty and list(df.columns) == MANIFEST_SCHEMA.names


def test_cli_root_form(train_tree, classes3, tmp_path):
    root, boxes = train_tree
    write_classes(tmp_path / "c.tsv", classes3)
    out = tmp_path / "out" / "train.parquet"
    res = CliRunner().invoke(app, ["ingest", "--root", str(root), "--layout", "train", "--annotations", str(boxes),
                                   "--classes", str(tmp_path / "c.tsv"), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "4 files, 4 ok, 2 with boxes" in res.output
    assert len(read_table(out)) == 4


def test_symlinks_leaving_the_root_or_dangling_are_listed_never_opened(tmp_path, classes3, write_image):
    root, outside = tmp_path / "t", tmp_path / "outside"
    write_image(root / W1 / "a.JPEG", seed=1)
    write_image(outside / "secret.JPEG", seed=2)
    write_image(outside / "folder" / "b.JPEG", seed=3)
    (root / W1 / "inside.JPEG").symlink_to(root / W1 / "a.JPEG")
    (root / W1 / "escape.JPEG").symlink_to(outside / "secret.JPEG")
    (root / W1 / "escape_dir").symlink_to(outside / "folder", target_is_directory=True)
    (root / W2).mkdir()
    (root / W2 / "dangling.JPEG").symlink_to(tmp_path / "gone.JPEG")
    (root / W2 / "relative_up.JPEG").symlink_to("../../outside/secret.JPEG")
    df, stats = ingest_split(root, layout="train", classes=classes3, max_pixels=BIG)
    r = {x.sample_id: x for x in df.itertuples()}
    assert sorted(r) == [f"{W1}/a.JPEG", f"{W1}/escape.JPEG", f"{W1}/escape_dir", f"{W1}/inside.JPEG",
                         f"{W2}/dangling.JPEG", f"{W2}/relative_up.JPEG"]  # nothing listed inside escape_dir
    assert r[f"{W1}/inside.JPEG"].status == "ok" and r[f"{W1}/inside.JPEG"].content_hash == r[f"{W1}/a.JPEG"].content_hash
    assert r[f"{W1}/escape.JPEG"].reason == f"symlink outside the dataset root: {W1}/escape.JPEG -> {outside / 'secret.JPEG'}"
    assert r[f"{W1}/escape_dir"].reason.startswith("symlink outside the dataset root: ")
    assert r[f"{W2}/relative_up.JPEG"].reason.endswith("-> ../../outside/secret.JPEG")
    assert r[f"{W2}/dangling.JPEG"].reason == f"broken symlink: {W2}/dangling.JPEG -> {tmp_path / 'gone.JPEG'}"
    for sid in (f"{W1}/escape.JPEG", f"{W1}/escape_dir", f"{W2}/dangling.JPEG", f"{W2}/relative_up.JPEG"):
        x = r[sid]
        assert (x.status, x.width, x.height, x.size, x.mtime_ns) == ("error", -1, -1, -1, -1), sid
        assert pd.isna(x.content_hash), sid
        assert x.label >= 0  # the class of the folder is kept for the record
    assert stats["errors_by_reason"] == {"broken symlink": 1, "symlink outside the dataset root": 3}


def test_val_flat_symlink_leaving_the_root_keeps_its_label_and_reason(tmp_path, classes3, write_image):
    write_image(tmp_path / "outside.JPEG")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").symlink_to(tmp_path / "outside.JPEG")
    labels = tmp_path / "val.txt"
    labels.write_text(f"ILSVRC2012_val_00000001.JPEG {W2}\n")
    df, _ = ingest_split(tmp_path / "val", layout="val", classes=classes3, labels=labels, max_pixels=BIG)
    assert (df["label"][0], df["status"][0]) == (1, "error")
    assert df["reason"][0].startswith("symlink outside the dataset root: ILSVRC2012_val_00000001.JPEG -> ")
