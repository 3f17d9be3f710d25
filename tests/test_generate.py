"""The embedded mini-ImageNet generator (data/generate.py)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from imagenet_clean.classes import load_classes
from imagenet_clean.cli import app
from imagenet_clean.config import GenerateConfig, NoiseConfig
from imagenet_clean.data.generate import FLIP_PARTNERS, embedded_classes, generate
from imagenet_clean.data.ingest import ingest_split
from imagenet_clean.io import read_table

NOISE = NoiseConfig(flip=0.1, minuscule=0.05, bad_quality=0.05, multi_object=0.05)


def small(out, **kw) -> GenerateConfig:
    return GenerateConfig(**{"out": str(out), "n_train": 100, "n_val": 40, "n_v2": 30, "noise": NOISE, **kw})


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "raw"
    summary = generate(small(out), seed=3)
    return out, summary


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_is_byte_identical_and_seed_matters(raw, tmp_path):
    out, _ = raw
    generate(small(tmp_path / "again"), seed=3)
    assert tree_digest(tmp_path / "again") == tree_digest(out)
    generate(small(tmp_path / "other"), seed=4)
    assert tree_digest(tmp_path / "other") != tree_digest(out)


def test_classes(raw):
    out, summary = raw
    cl = load_classes(out / "classes.tsv")
    assert cl == embedded_classes()
    assert cl.wnids[0] == "n90000000" and cl.wnids[10] == "n90000010" and len(cl) == 11 == summary["classes"]
    assert cl.names[3] == "digit three" and "variant" in cl.names[10]


def test_truth_table_records_injected_problems(raw):
    out, summary = raw
    t = read_table(out / "truth.parquet")
    assert list(t.columns) == ["split", "sample_id", "true_label", "given_label", "problem", "true_labels"]
    for split, n in (("train", 100), ("val", 40), ("v2", 30)):
        s = t[t["split"] == split]
        assert len(s) == n and s["sample_id"].is_unique
        counts = s["problem"].value_counts()
        assert counts["flip"] == round(0.1 * n) and counts["minuscule"] == round(0.05 * n)
        assert counts.get("multi_object", 0) == round(0.05 * n)
        assert summary["splits"][split]["problems"] == counts.to_dict()
    syn = t[t["problem"] == "synonym"]
    assert len(syn) > 0 and (syn["true_label"] == 1).all() and (syn["given_label"] == 10).all()
    ones = t[t["true_label"] == 1]
    assert 0.2 < len(syn) / len(ones) < 0.8
    flips = t[t["problem"] == "flip"]
    assert all(g in FLIP_PARTNERS[tl] for tl, g in zip(flips["true_label"], flips["given_label"]))
    clean = t[~t["problem"].isin(["flip", "synonym"])]
    assert (clean["true_label"] == clean["given_label"]).all()
    assert set(t["true_label"]) == set(range(10))


def test_layouts_ingest_cleanly_with_the_given_labels(raw):
    out, _ = raw
    classes = load_classes(out / "classes.tsv")
    truth = read_table(out / "truth.parquet").set_index(["split", "sample_id"])
    specs = {"train": dict(annotations=out / "train_boxes"), "val": dict(annotations=out / "LOC_val_solution.csv"), "v2": {}}
    for split, kw in specs.items():
        df, stats = ingest_split(out / split, layout=split, classes=classes, **kw)
        assert stats["n_error"] == 0 and stats["annotation_errors"] == [], stats
        given = truth.loc[split].loc[df["sample_id"], "given_label"].to_numpy()
        np.testing.assert_array_equal(df["label"].to_numpy(), given)
        assert ((df["width"] == 64) & (df["height"] == 64)).all()
        if split == "train":
            assert stats["n_with_boxes"] == 50
            assert all(s.startswith(f"{w}/{w}_") and s.endswith(".JPEG") for s, w in zip(df["sample_id"], df["wnid"]))
        if split == "val":
            assert stats["n_with_boxes"] == 40 and df["sample_id"].iloc[0] == "ILSVRC2012_val_00000001.JPEG"
        if split == "v2":
            assert stats["n_with_boxes"] == 0
            assert all(s.split("/")[0] == str(lab) and len(s.split("/")[1]) == 40 + 5 for s, lab in zip(df["sample_id"], df["label"]))


def test_boxes_are_the_digit_ink_extent(raw):
    out, _ = raw
    classes = load_classes(out / "classes.tsv")
    df, _ = ingest_split(out / "val", layout="val", classes=classes, annotations=out / "LOC_val_solution.csv")
    truth = read_table(out / "truth.parquet").query("split == 'val'").set_index("sample_id")
    for sid, boxes in zip(df["sample_id"], df["boxes"]):
        (x0, y0, x1, y1), = boxes
        problem = truth.loc[sid, "problem"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        if problem == "minuscule":
            assert 4 <= y1 - y0 <= 10, (sid, y1 - y0)
        elif problem in ("none", "flip", "synonym"):
            assert 24 <= y1 - y0 <= 52, (sid, y1 - y0)  # STYLES: 30/64 .. 50/64 of the image height
            from PIL import Image

            img = np.asarray(Image.open(out / "val" / sid).convert("L"), dtype=float)
            inside = img[int(y0):int(y1), int(x0):int(x1)]
            outside = np.concatenate([img[:, : int(x0)].ravel(), img[:, int(x1):].ravel(), img[: int(y0)].ravel(), img[int(y1):].ravel()])
            if outside.size > 50:  # the digit's ink sets the box apart from the background
                assert abs(np.median(inside) - np.median(outside)) > 10 or inside.std() > outside.std(), sid


def test_disabled_writes_only_classes_and_marker(tmp_path):
    summary = generate(small(tmp_path / "raw", enabled=False), seed=0)
    assert summary["enabled"] is False
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["classes.tsv", "generate.json"]


def test_rerun_replaces_old_output_and_refuses_foreign_folder(tmp_path):
    out = tmp_path / "raw"
    generate(small(out, n_train=30), seed=0)
    generate(small(out, n_train=20), seed=0)
    assert len(list((out / "train").rglob("*.JPEG"))) == 20
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="refusing to replace"):
        generate(small(foreign), seed=0)
    assert (foreign / "keep.jpg").exists() and not list(tmp_path.glob(".photos*"))


def test_cli_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump({"generate": {"out": "data/raw", "n_train": 20, "n_val": 10, "n_v2": 10}}))
    res = CliRunner().invoke(app, ["generate"])
    assert res.exit_code == 0, res.output
    assert "train: 20 images" in res.output and Path("data/raw/truth.parquet").is_file()


def test_file_times_are_a_constant_of_seed_and_config(raw, tmp_path):
    from imagenet_clean.data.generate import file_mtime_ns

    out, _ = raw
    t = file_mtime_ns(small(out), seed=3)
    assert {p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == {t}
    assert file_mtime_ns(small(tmp_path / "elsewhere"), seed=3) == t  # the output folder does not count
    assert file_mtime_ns(small(out), seed=4) != t and file_mtime_ns(small(out, n_train=99), seed=3) != t
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700


def test_disk_full_is_one_outputerror_and_keeps_the_old_tree(tmp_path, monkeypatch):
    import errno

    from PIL import Image

    from imagenet_clean.io import OutputError

    out = tmp_path / "raw"
    generate(small(out, n_train=20, n_val=10, n_v2=10), seed=0)
    before = tree_digest(out)
    real_save = Image.Image.save

    def save(self, fp, *a, **kw):
        if str(fp).endswith("_5.JPEG"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(OutputError, match=rf"^cannot write {out}: No space left on device$"):
        generate(small(out, n_train=30, n_val=10, n_v2=10), seed=1)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # the temporary tree is gone


def test_leftovers_of_killed_runs_are_removed_but_not_others(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "raw"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    for name in (f".raw.tmp-{pid}-abc_123", f".raw.old-{pid}", f".raw.tmp-{os.getpid()}-live",
                 ".raw.tmp-notapid", ".raw.old-12x", f".other.old-{pid}", "mine"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(b"x")
    generate(small(out, enabled=False), seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".raw.tmp-{os.getpid()}-live", ".raw.tmp-notapid", ".raw.old-12x", f".other.old-{pid}", "mine", "raw"])


def test_the_truth_lists_every_digit_a_scene_shows(tmp_path):
    """``true_labels``: the labelled digit first, then a multi-object scene's other digits in increasing order."""
    import dataclasses

    from imagenet_clean.config import GenerateConfig, NoiseConfig
    from imagenet_clean.data.generate import generate
    from imagenet_clean.io import read_table

    cfg = dataclasses.replace(GenerateConfig(), out=str(tmp_path / "raw"), n_train=40, n_val=20, n_v2=20,
                              noise=NoiseConfig(multi_object=0.25))
    generate(cfg, seed=3)
    truth = read_table(tmp_path / "raw" / "truth.parquet")
    multi = truth["problem"] == "multi_object"
    assert multi.sum() == 10 + 5 + 5
    for t, labels, is_multi in zip(truth["true_label"], truth["true_labels"], multi):
        labels = list(labels)
        assert labels[0] == t and len(set(labels)) == len(labels)
        assert (2 <= len(labels) <= 4 and labels[1:] == sorted(labels[1:])) if is_multi else labels == [t]
