"""The duplicates stage on a tiny embedded project with injected copies (stages/duplicates.py, `imagenet-clean duplicates`)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from embedded_tiny import embedded_params, full_checkpoint
from imagenet_clean.config import ConfigError, parse_params
from imagenet_clean.io import read_table
from imagenet_clean.stages import duplicates as stage
from imagenet_clean.stages import generate as generate_stage
from imagenet_clean.stages import ingest as ingest_stage
from imagenet_clean.workspace import Workspace

SPLITS = ("train", "val", "v2")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("dup")
    params = parse_params(embedded_params(max_distance=0.02, remove=True, remove_max_distance=0.01))
    ws = Workspace(root)
    import os

    old = os.getcwd()
    os.chdir(root)
    try:
        generate_stage.run(params, ws)
        for s in SPLITS:
            ingest_stage.run(params, ws, s)
        full_checkpoint(params, ws)
        victim = read_table(ws.manifest("val"))["path"].iloc[3]
        data = (root / "data/raw/val" / victim).read_bytes()
        (root / "data/raw/val" / victim).write_bytes(data[: len(data) // 3])  # broken after ingest: no features now
        report = stage.run(params, ws)
    finally:
        os.chdir(old)
    return root, params, report, victim


def test_pairs_are_written_per_split_pair_and_counted(project):
    root, _, report, _ = project
    names = ["train-train", "train-val", "train-v2", "val-val", "val-v2", "v2-v2"]
    assert sorted(report["pairs"]) == sorted(names)
    for name in names:
        df = read_table(root / "data/duplicates" / f"{name}.parquet")
        assert list(df.columns) == ["split_a", "sample_id_a", "split_b", "sample_id_b", "kind", "distance"]
        assert {f"{a}-{b}" for a, b in zip(df["split_a"], df["split_b"])} <= {name}
        assert report["pairs"][name] == {k: int((df["kind"] == k).sum()) for k in ("exact", "near")}
        assert (df.loc[df["kind"] == "near", "distance"] <= 0.02).all()
    assert set(report["leakage"]) == {"train-val", "train-v2", "val-v2"}
    assert report["leakage"]["train-val"] == sum(report["pairs"]["train-val"].values()) > 0
    assert json.loads((root / "metrics/duplicates.json").read_text()) == report


def test_found_pairs_are_scored_against_the_injected_copies(project):
    _, _, report, _ = project
    s = report["scores"]
    assert s["exact"]["true"] > 0 and s["exact"]["recall"] == 1.0 and s["exact"]["precision"] == 1.0
    assert s["near"]["true"] > 0 and s["near"]["found"] > 0
    assert s["across"]["true"] > 0 and s["within"]["true"] > 0


def test_an_image_unreadable_now_gets_no_features_and_is_recorded(project):
    root, _, report, victim = project
    bad = read_table(root / "data/duplicates/no_features.parquet")
    assert bad[["split", "sample_id"]].to_numpy().tolist() == [["val", victim]]
    assert bad["reason"].iloc[0].startswith("unreadable")
    assert report["splits"]["val"]["no_features"] == 1 and report["splits"]["train"]["no_features"] == 0


def test_the_removal_list_keeps_one_representative_per_group(project):
    root, _, report, _ = project
    drop = read_table(root / "data/duplicates/removals.parquet")
    assert len(drop) == sum(report["removals"].values()) > 0
    pairs = pd.concat([read_table(root / "data/duplicates" / f"{s}-{s}.parquet") for s in SPLITS])
    for split, g in drop.groupby("split"):
        kept = set(g["representative"])
        assert not kept & set(g["sample_id"])  # no representative is removed
        inside = pairs[pairs["split_a"] == split]
        members = set(inside["sample_id_a"]) | set(inside["sample_id_b"])
        assert set(g["sample_id"]) < members


def test_the_clean_stage_reads_the_stage_removal_list_and_drops_exactly_it(project):
    from imagenet_clean.cleanup.duplicate_rule import apply_duplicate_rule, read_removals

    root, _, _, _ = project
    ws = Workspace(root)
    drop = read_removals(ws.duplicate_removals, remove_max_distance=0.01)
    with pytest.raises(ValueError, match="stale"):
        read_removals(ws.duplicate_removals, remove_max_distance=0.02)
    for split, g in drop.groupby("split"):
        man = read_table(ws.manifest(split))
        dec = pd.DataFrame({"sample_id": man["sample_id"], "action": "keep", "reason": "",
                            "rules": pd.Series([[] for _ in range(len(man))], dtype=object)})
        out = apply_duplicate_rule(dec, drop, split=split)
        assert set(out.loc[out["action"] == "remove", "sample_id"]) == set(g["sample_id"])
        reps = dict(zip(g["sample_id"], g["representative"]))
        assert all(r == f"duplicate of {reps[s]}" for s, r in zip(out["sample_id"], out["reason"]) if s in reps)


def test_a_rerun_is_byte_identical(project, tmp_path):
    root, params, _, _ = project
    before = {p.name: p.read_bytes() for p in (root / "data/duplicates").glob("*.parquet")}
    metric = (root / "metrics/duplicates.json").read_bytes()
    stage.run(params, Workspace(root))
    assert {p.name: p.read_bytes() for p in (root / "data/duplicates").glob("*.parquet")} == before
    assert (root / "metrics/duplicates.json").read_bytes() == metric


@pytest.mark.parametrize("dup, message", [
    ({"max_distance": 2.5}, r"^duplicates.max_distance: 2.5 is out of range; allowed: a cosine distance in \[0, 2\]$"),
    ({"max_distance": -0.1}, r"^duplicates.max_distance: -0.1 is out of range"),
    ({"k": 1}, r"^duplicates.k: 1 is out of range; allowed: an integer >= 2$"),
    ({"remove_max_distance": 0.05}, r"^duplicates.remove_max_distance: 0.05 is beyond duplicates.max_distance 0.04"),
    ({"models": ["nope"]}, r"^duplicates.models: 'nope' is not a cleanup model; one of vgg$"),
    ({"features": "logits"}, r"^duplicates.features: 'logits' is out of range; allowed: map or pooled$"),
    ({"pixels": -1}, r"^duplicates.pixels: -1 is out of range; allowed: 0 \(off\) or a thumbnail side 1-64$"),
    ({"pixels": 65}, r"^duplicates.pixels: 65 is out of range"),
])
def test_bad_duplicates_params_are_one_line_config_errors(dup, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_params(embedded_params(**dup))
    assert "\n" not in str(e.value)


def test_the_cli_prints_the_counts(project, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app

    root, params, report, _ = project
    (root / "params.yaml").write_text(yaml.safe_dump(embedded_params(max_distance=0.02, remove=True, remove_max_distance=0.01)))
    monkeypatch.chdir(root)
    res = CliRunner().invoke(app, ["duplicates"])
    assert res.exit_code == 0, res.output
    assert "train-val:" in res.output and "(leakage)" in res.output and "images without features" in res.output
    assert f"precision {report['scores']['all']['precision']}" in res.output
    assert np.isfinite(report["scores"]["all"]["recall"])


@pytest.mark.parametrize("kind", ["map", "pooled"])
def test_feature_kinds_stream_the_manifest_rows(project, kind):
    import torch

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.embeddings import penultimate_features
    from imagenet_clean.models.factory import build_model

    root, _, _, victim = project
    model, data_cfg = build_model(ModelConfig(arch="digits_vgg"), num_classes=11)
    paths = read_table(root / "data/manifests/val.parquet")["path"].tolist()[:7]
    x, reasons = penultimate_features(model, data_cfg, root / "data/raw/val", paths, batch_size=3, kind=kind)
    width = model.num_features if kind == "pooled" else model.forward_features(torch.zeros(1, *data_cfg["input_size"])).numel()
    assert x.shape == (7, width)
    assert [bool(r) for r in reasons] == [p == victim for p in paths]  # the broken image: a reason and a zero row
    assert not x[[p == victim for p in paths]].any() and np.abs(x[[p != victim for p in paths]]).sum(axis=1).min() > 0


def test_pixel_thumbnails_keep_a_recoloured_or_reencoded_copy_close_and_other_pictures_apart(project, tmp_path):
    import io

    from PIL import Image

    from imagenet_clean.models.embeddings import pixel_features

    root, _, _, victim = project
    man = read_table(root / "data/manifests/train.parquet")
    src = Image.open(root / "data/raw/train" / man["path"].iloc[0]).convert("RGB")
    a = np.asarray(src, np.float32)
    Image.fromarray(np.clip(a * [1.1, 0.9, 1.05] + 10, 0, 255).astype(np.uint8)).save(tmp_path / "recolour.png")
    buf = io.BytesIO()
    src.save(buf, "JPEG", quality=40)
    (tmp_path / "jpeg.jpg").write_bytes(buf.getvalue())
    src.save(tmp_path / "orig.png")
    others = [f"o{i}.png" for i in range(1, 12)]
    for name, p in zip(others, man["path"].iloc[1:12]):
        Image.open(root / "data/raw/train" / p).convert("RGB").save(tmp_path / name)
    paths = ["orig.png", "recolour.png", "jpeg.jpg", *others]
    x, reasons = pixel_features(tmp_path, paths, side=8, batch_size=4)
    assert x.shape == (len(paths), 3 * 8 * 8) and not any(reasons)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-5)  # each centred on its own mean
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1 - u[:3] @ u.T  # the original and its two copies against everything
    assert dist[:3, :3].max() < 0.05 < dist[:3, 3:].min()  # the copies are close to each other and far from other pictures
    y, why = pixel_features(root / "data/raw/val", [victim, read_table(root / "data/manifests/val.parquet")["path"].iloc[0]], side=4)
    assert bool(why[0]) and not why[1] and not y[0].any() and y[1].any()  # the broken image: a reason and a zero row


def test_the_stage_pools_thumbnails_with_the_models_features_unless_pixels_is_0(project, tmp_path):
    import shutil

    root, _, report, victim = project
    work = tmp_path / "p"
    shutil.copytree(root, work)
    params = parse_params(embedded_params(max_distance=0.02, remove_max_distance=0.01, pixels=0))
    import os

    old = os.getcwd()
    os.chdir(work)
    try:
        rep = stage.run(params, Workspace(work))
    finally:
        os.chdir(old)
    assert "16x16 colour thumbnails" in report["features"] and "thumbnails" not in rep["features"]  # the shipped side: 16
    assert rep["scores"]["exact"]["recall"] == 1.0 and rep["splits"]["val"]["no_features"] == 1
    bad = read_table(work / "data/duplicates/no_features.parquet")
    assert bad["sample_id"].tolist() == [victim]
