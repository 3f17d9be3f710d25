"""`apply` of a folder dataset: <out>/<class>/<path below the class folder>, fixes moved, removals gone or kept aside."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from folder_tree import make_tree, write_image
from imagenet_clean.classes import load_classes
from imagenet_clean.cleanup.ensemble import clean_manifest
from imagenet_clean.data.ingest import ingest_split, write_manifest
from imagenet_clean.data.scan import scan_split
from imagenet_clean.io import write_json, write_table
from imagenet_clean.publish.apply import RENAMED_FILE, apply_clean


def _project(tmp_path, *, decide):
    """Tree -> scan (class list) -> ingest -> decisions (``decide(manifest) -> {sample_id: (action, new class)}``) -> clean."""
    root = tmp_path / "photos"
    make_tree(root)
    write_image(root / "cat" / "only" / "x.png", 99)  # fixed into bée: bée/only/x.png, no clash
    write_image(root / "bée" / "img1.png", 98)  # fixed into ant s, where ant s/img1.png exists: a name clash
    write_image(root / "ant s" / "img1.png", 97)
    scan = tmp_path / "train.json"
    write_json(scan, scan_split("train", root, layout="imagefolder", class_list=True))
    classes = load_classes(scan)
    man, _ = ingest_split(root, layout="imagefolder", classes=classes, hash=True)
    write_manifest(tmp_path / "manifest.parquet", man, root=root, layout="imagefolder", split="train",
                   classes=str(scan), num_classes=len(classes))
    plan = decide(man)
    dec = man[["sample_id", "path", "label", "wnid"]].copy()
    dec["action"] = [plan.get(s, ("keep", None))[0] for s in dec["sample_id"]]
    dec["new_label"] = [classes.index(plan[s][1]) if plan.get(s, ("keep", None))[0] == "fix" else lab
                        for s, lab in zip(dec["sample_id"], dec["label"])]
    clean = clean_manifest(man, dec, {}, classes)
    meta = {"root": str(root), "layout": "imagefolder", "split": "train", "classes": str(scan), "num_classes": len(classes)}
    write_table(tmp_path / "clean.parquet", pa.Table.from_pandas(clean, preserve_index=False), metadata=meta)
    write_table(tmp_path / "decisions.parquet", dec, metadata=meta)
    return root, classes


def _decide(man: pd.DataFrame) -> dict:
    return {"bée/img1.png": ("fix", "ant s"), "cat/only/x.png": ("fix", "bée"), "cat/img0.png": ("remove", None)}


def test_apply_folder_dataset_loads_in_torchvision_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder

    root, classes = _project(tmp_path, decide=_decide)
    out, keep = tmp_path / "clean", tmp_path / "removed"
    counts = apply_clean(tmp_path / "clean.parquet", root, out, mode="copy", decisions=tmp_path / "decisions.parquet",
                         keep_removed=keep)
    ds = ImageFolder(str(out))
    got = {Path(s).relative_to(out).as_posix(): ds.classes[t] for s, t in ds.samples}
    assert ds.classes == list(classes.wnids)  # same names, same order (ImageFolder sorts, so does scan)
    assert got["bée/only/x.png"] == "bée"  # the fix landed in its new class, its sub-folder kept
    assert "cat/only/x.png" not in got
    assert "cat/img0.png" not in got  # the removal is gone
    assert got["ant s/img1~1.png"] == "ant s" and got["ant s/img1.png"] == "ant s"  # the clash renamed, both present
    assert counts["renamed"] == 1
    assert (out / RENAMED_FILE).read_text() == "bée/img1.png\tant s/img1~1.png\n"
    assert counts["kept_removed"] == 1 and (keep / "cat" / "img0.png").is_file()
    n_images = sum(1 for _ in root.rglob("*") if _.is_file())
    assert len(ds.samples) == n_images - 1


def test_apply_folder_dataset_second_run_changes_nothing(tmp_path):
    root, _ = _project(tmp_path, decide=_decide)
    out = tmp_path / "clean"
    apply_clean(tmp_path / "clean.parquet", root, out, mode="symlink")
    again = apply_clean(tmp_path / "clean.parquet", root, out, mode="symlink")
    assert again["created"] == 0 and again["unchanged"] == again["images"]


def test_keep_removed_inside_out_refused(tmp_path):
    root, _ = _project(tmp_path, decide=_decide)
    with pytest.raises(ValueError, match="--keep-removed .* overlaps --out"):
        apply_clean(tmp_path / "clean.parquet", root, tmp_path / "clean", decisions=tmp_path / "decisions.parquet",
                    keep_removed=tmp_path / "clean" / "removed")
    assert not (tmp_path / "clean").exists()  # nothing half-written


def test_keep_removed_needs_decisions(tmp_path):
    root, _ = _project(tmp_path, decide=_decide)
    with pytest.raises(ValueError, match="--keep-removed needs --decisions"):
        apply_clean(tmp_path / "clean.parquet", root, tmp_path / "clean", keep_removed=tmp_path / "removed")


@pytest.mark.parametrize("name", ["..", "a/b", "/abs", ".hidden"])
def test_unsafe_class_name_refused_in_one_line(tmp_path, name):
    root = tmp_path / "photos"
    make_tree(root)
    clean = pd.DataFrame({"sample_id": ["cat/img0.png"], "path": ["cat/img0.png"], "label": [0], "wnid": [name],
                          "orig_label": [0], "orig_wnid": [name], "action": ["keep"],
                          "size": [(root / "cat/img0.png").stat().st_size], "content_hash": [None]})
    write_table(tmp_path / "clean.parquet", clean, metadata={"layout": "csv", "split": "train"})
    with pytest.raises(ValueError) as e:
        apply_clean(tmp_path / "clean.parquet", root, tmp_path / "out")
    assert "cannot be a folder" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_counts_are_json(tmp_path):
    root, _ = _project(tmp_path, decide=_decide)
    counts = apply_clean(tmp_path / "clean.parquet", root, tmp_path / "clean", mode="hardlink")
    json.dumps(counts)


def test_csv_dataset_tree_is_class_then_csv_path(tmp_path):
    """A csv-layout dataset (flat files labelled by a CSV) becomes <out>/<class>/<path in the CSV>."""
    from torchvision.datasets import ImageFolder

    root = tmp_path / "flat"
    for i in range(4):
        write_image(root / "shots" / f"p{i}.png", i)
    rows = [("shots/p0.png", "x", "x", "keep"), ("shots/p1.png", "x", "x", "keep"),
            ("shots/p2.png", "y", "x", "fix"), ("shots/p3.png", "y", "y", "keep")]
    labels = {"x": 0, "y": 1}
    clean = pd.DataFrame({"sample_id": [r[0] for r in rows], "path": [r[0] for r in rows],
                          "label": [labels[r[1]] for r in rows], "wnid": [r[1] for r in rows],
                          "orig_label": [labels[r[2]] for r in rows], "orig_wnid": [r[2] for r in rows],
                          "action": [r[3] for r in rows], "size": [(root / r[0]).stat().st_size for r in rows],
                          "content_hash": [None] * 4})
    write_table(tmp_path / "clean.parquet", clean, metadata={"layout": "csv", "split": "train", "num_classes": 2})
    apply_clean(tmp_path / "clean.parquet", root, tmp_path / "out", mode="copy")
    ds = ImageFolder(str(tmp_path / "out"))
    got = {Path(s).relative_to(tmp_path / "out").as_posix(): ds.classes[t] for s, t in ds.samples}
    assert got == {"x/shots/p0.png": "x", "x/shots/p1.png": "x", "y/shots/p2.png": "y", "y/shots/p3.png": "y"}
