"""Dataset sources and the folder layouts (imagefolder, csv): class names as written, bad input recorded per file."""
from __future__ import annotations

import os

import pytest

from folder_tree import CLASSES, make_tree, write_image
from imagenet_clean.classes import ClassList
from imagenet_clean.config import parse_params
from imagenet_clean.data.ingest import ingest_split
from imagenet_clean.data.layouts import image_suffixes
from imagenet_clean.data.sources import SOURCES, get_source, imagenet_seen_labels, source_of

CL = ClassList(CLASSES, CLASSES)


def _ingest(root, **kw):
    df, stats = ingest_split(root, classes=CL, hash=False, **kw)
    return df.set_index("sample_id"), stats


def test_three_sources_registered():
    assert set(SOURCES) >= {"embedded", "imagenet", "folders"}
    with pytest.raises(ValueError, match="unknown dataset source 'nope'; known: .*folders"):
        get_source("nope")


def test_source_refuses_a_layout_it_does_not_read():
    p = parse_params({"dataset": {"source": "folders"}, "splits": {"train": {"root": "x", "layout": "train"}}})
    with pytest.raises(ValueError, match="splits.train.layout: 'train' is not a layout of dataset.source 'folders'"):
        source_of(p)


def test_imagefolder_classes_as_written_nested_and_any_case_suffix(tmp_path):
    rels = make_tree(tmp_path)
    write_image(tmp_path / "bée" / "deep" / "er" / "x.WebP", 5)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0")
    df, stats = _ingest(tmp_path, layout="imagefolder")
    assert sorted(df.index) == sorted(rels + ["bée/deep/er/x.WebP"])  # the text file and hidden file are not listed
    assert df.loc["bée/deep/er/x.WebP", "wnid"] == "bée" and df.loc["bée/deep/er/x.WebP", "label"] == 1
    assert df.loc["ant s/sub/img1.JPG", "wnid"] == "ant s" and (df["status"] == "ok").all()


def test_pillow_suffixes_cover_common_formats():
    s = image_suffixes()
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} <= s


def test_unreadable_files_recorded_with_reason(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    df, stats = _ingest(tmp_path, layout="imagefolder")
    assert df.loc["cat/broken.jpg", "status"] == "error" and df.loc["cat/broken.jpg", "reason"].startswith("not an image")
    assert df.loc["cat/empty.png", "reason"].startswith("empty file")
    assert stats["n_error"] == 2


def test_val_class_missing_from_train_recorded_per_file(tmp_path):
    make_tree(tmp_path)
    write_image(tmp_path / "dog" / "a.png", 1)
    write_image(tmp_path / "top.png", 2)
    df, _ = _ingest(tmp_path, layout="imagefolder")
    assert df.loc["dog/a.png", "reason"] == "unknown class folder dog: not a class of the training split"
    assert df.loc["top.png", "reason"].startswith("not in a class folder")


def test_symlink_loops_listed_once_and_never_followed_twice(tmp_path):
    make_tree(tmp_path)
    os.symlink("..", tmp_path / "cat" / "up")  # a folder loop back to the root
    os.symlink("self.png", tmp_path / "cat" / "self.png")  # a link to itself
    df, _ = _ingest(tmp_path, layout="imagefolder")
    assert df.loc["cat/self.png", "reason"].startswith("broken symlink")
    assert not any(s.startswith("cat/up/") for s in df.index)


def test_non_utf8_file_name_recorded_never_opened(tmp_path):
    make_tree(tmp_path)
    bad = os.fsencode(tmp_path / "cat") + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write(b"x")
    df, stats = _ingest(tmp_path, layout="imagefolder")
    row = df.loc["cat/caf\\xe9.png"]
    assert row["status"] == "error" and row["reason"].startswith("non-UTF-8 file name") and row["size"] == -1
    assert stats["errors_by_reason"] == {"non-UTF-8 file name": 1}


def test_csv_layout_labels_paths_and_bad_rows(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        write_image(root / f"p{i}.png", i)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\np0.png,ant s\n./p1.png,bée\np2.png,\np3.png,dog\nmissing.png,cat\n../out.png,cat\n")
    df, stats = _ingest(root, layout="csv", labels=csv)
    assert df.loc["p0.png", "wnid"] == "ant s" and df.loc["p1.png", "label"] == 1  # ./p1.png normalised
    assert df.loc["p2.png", "reason"].startswith("no label: empty label (labels.csv:4)")
    assert df.loc["p3.png", "reason"].startswith("unknown class 'dog' (labels.csv:5)")
    assert df.loc["missing.png", "reason"].startswith("missing file") and df.loc["missing.png", "size"] == -1
    assert df.loc["../out.png", "reason"].startswith("path outside the dataset root")


def test_leakage_rule_by_weights():
    assert "ImageNet-1k" in imagenet_seen_labels("efficientnet_lite0", "pypi", "train")
    assert "in1k" in imagenet_seen_labels("efficientnet_b0", "timm", "train")
    assert imagenet_seen_labels("vit_small_patch16_224.dino", "timm", "train") == ""
    assert imagenet_seen_labels("vit_base_patch16_clip_224.openai", "timm", "train") == ""
    assert imagenet_seen_labels("efficientnet_lite0", "pypi", "val") == ""  # only the split the weights trained on
    assert get_source("folders").seen_labels("efficientnet_lite0", "pypi", "train") == ""  # fine for your own data
