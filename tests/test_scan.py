"""scan@<split>: a listing fingerprint that changes with the tree and only then; a folder dataset's class list."""
from __future__ import annotations

import json
import os

import pytest

from folder_tree import CLASSES, make_tree, write_image
from imagenet_clean.config import parse_params
from imagenet_clean.data.scan import scan_split
from imagenet_clean.stages import scan as stage
from imagenet_clean.workspace import Workspace


def _run(tmp_path, root, **split):
    p = parse_params({"dataset": {"source": "folders", "classes": "data/scan/train.json"},
                      "splits": {"train": {"root": str(root), "layout": "imagefolder", **split}}})
    ws = Workspace(tmp_path / "proj")
    stage.run(p, ws, "train")
    return ws.scan("train").read_bytes()


def test_unchanged_tree_same_bytes_each_change_new_bytes(tmp_path):
    root = tmp_path / "photos"
    rels = make_tree(root)
    first = _run(tmp_path, root)
    assert _run(tmp_path, root) == first  # nothing changed: byte-identical (DVC reruns nothing downstream)
    seen = {first}
    write_image(root / "cat" / "new.png", 7)  # added
    seen.add(_run(tmp_path, root))
    os.rename(root / rels[0], root / "cat" / "moved.png")  # moved
    seen.add(_run(tmp_path, root))
    (root / "cat" / "new.png").unlink()  # removed
    seen.add(_run(tmp_path, root))
    p = root / "bée" / "img0.png"  # edited (same size, new time)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    seen.add(_run(tmp_path, root))
    assert len(seen) == 5


def test_train_scan_lists_classes_sorted_and_empty_folders(tmp_path):
    root = tmp_path / "photos"
    make_tree(root)
    (root / "empty class").mkdir()
    out = json.loads(_run(tmp_path, root))
    assert out["classes"] == sorted(CLASSES) and out["empty_class_folders"] == ["empty class"]


@pytest.mark.parametrize("classes, match", [((), "no class with an image"), (("solo",), "1 class \\('solo'\\)")])
def test_fewer_than_two_classes_one_line(tmp_path, classes, match):
    root = tmp_path / "photos"
    root.mkdir()
    if classes:
        make_tree(root, classes=classes)
    with pytest.raises(ValueError, match=match) as e:
        scan_split("train", root, layout="imagefolder", class_list=True)
    assert "at least 2 classes" in str(e.value) and "\n" not in str(e.value)


def test_missing_root_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset root of split train not found"):
        scan_split("train", tmp_path / "nope", layout="imagefolder")


def test_embedded_source_records_no_listing(tmp_path):
    p = parse_params({"splits": {"train": {"root": str(tmp_path), "layout": "train"}}})
    ws = Workspace(tmp_path / "proj")
    assert stage.run(p, ws, "train")["listing"].startswith("none: the tree is a DVC output")


def test_csv_labels_change_the_scan(tmp_path):
    root = tmp_path / "flat"
    write_image(root / "a.png", 1)
    write_image(root / "b.png", 2)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.png,x\nb.png,y\n")
    first = scan_split("train", root, layout="csv", labels=csv, class_list=True)
    assert first["classes"] == ["x", "y"]
    csv.write_text("path,label\na.png,y\nb.png,x\n")
    assert scan_split("train", root, layout="csv", labels=csv, class_list=True)["labels_blake2b"] != first["labels_blake2b"]


@pytest.mark.slow
def test_dvc_repro_reruns_ingest_only_when_the_tree_changes(tmp_path):
    """Real DVC on a folder dataset: scan always runs; ingest reruns after a photo is added, and only then."""
    import yaml

    from imagenet_clean.presets_folders import folders_params
    from pipeline_project import run, scaffold_project, stages_run

    photos = tmp_path / "photos"
    make_tree(photos)
    project = tmp_path / "project"
    project.mkdir()
    params = folders_params(train=photos, models=["digits_vgg"], mode="scratch")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    scaffold_project(project)
    ran, _ = stages_run(run(["dvc", "repro", "ingest@train"], project).stdout)
    assert {"scan@train", "ingest@train"} <= ran
    manifest = (project / "data/manifests/train.parquet").read_bytes()
    ran, skipped = stages_run(run(["dvc", "repro", "ingest@train"], project).stdout)
    assert "scan@train" in ran and "ingest@train" not in ran  # always run, changing nothing downstream
    assert (project / "data/manifests/train.parquet").read_bytes() == manifest
    write_image(photos / "cat" / "new.png", 5)
    ran, _ = stages_run(run(["dvc", "repro", "ingest@train"], project).stdout)
    assert "ingest@train" in ran
    assert json.loads((project / "data/scan/train.json").read_text())["n_files"] == len(list(photos.rglob("*.*")))
