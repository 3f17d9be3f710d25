"""Same params and seed, two fresh runs: the same outputs (issue 8).

Timing fields of the metrics (:data:`hostile_corpus.TIMING_FIELDS`: ``seconds``,
``files_per_s``) are the only values allowed to differ. Manifests also record
each image file's ``mtime_ns``, which differs between two fresh ``generate``
runs: see the xfail below and docs/reliability.md.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from hostile_corpus import TIMING_FIELDS, manifest_without_mtime, metrics_without_timing, tree_bytes, write_tiny_project
from imagenet_clean.config import Thresholds, load_params
from imagenet_clean.data.generate import generate
from imagenet_clean.stages.ingest import run as run_ingest
from imagenet_clean.workspace import Workspace

SPLITS = ("train", "val", "v2", "imagenet_r")


def _fresh_run(folder, monkeypatch):
    project = write_tiny_project(folder)
    monkeypatch.chdir(project)
    p = load_params("params.yaml")
    generate(p.generate, seed=p.seed)
    for split in SPLITS:
        run_ingest(p, Workspace(), split)
    return project


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    return _fresh_run(tmp_path / "a", monkeypatch), _fresh_run(tmp_path / "b", monkeypatch)


def test_two_fresh_runs_give_identical_data_manifests_and_metrics(two_runs):
    a, b = two_runs
    assert tree_bytes(a / "data/raw") == tree_bytes(b / "data/raw")  # every image, box file, csv and truth table
    for split in SPLITS:
        ma, meta_a = manifest_without_mtime(a / f"data/manifests/{split}.parquet")
        mb, meta_b = manifest_without_mtime(b / f"data/manifests/{split}.parquet")
        assert ma.equals(mb) and meta_a == meta_b, split
        ja = json.loads((a / f"metrics/ingest/{split}.json").read_text())
        jb = json.loads((b / f"metrics/ingest/{split}.json").read_text())
        differ = {k for k in ja.keys() | jb.keys() if ja.get(k) != jb.get(k)}
        assert differ <= set(TIMING_FIELDS), (split, differ)
        assert metrics_without_timing(a / f"metrics/ingest/{split}.json") == metrics_without_timing(b / f"metrics/ingest/{split}.json")


def test_two_fresh_runs_give_byte_identical_manifest_files(two_runs):
    a, b = two_runs
    for split in ("train", "val", "v2"):
        assert (a / f"data/manifests/{split}.parquet").read_bytes() == (b / f"data/manifests/{split}.parquet").read_bytes()


def test_reingest_of_the_same_files_is_byte_identical(tmp_path, monkeypatch):
    project = _fresh_run(tmp_path / "a", monkeypatch)
    first = {s: (project / f"data/manifests/{s}.parquet").read_bytes() for s in SPLITS}
    p = load_params("params.yaml")
    for split in SPLITS:
        run_ingest(p, Workspace(), split)
        assert (project / f"data/manifests/{split}.parquet").read_bytes() == first[split], split


def _arrays(n=200, k=6, m=3, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    labels = np.where(rng.random(n) < 0.15, rng.integers(0, k, n), true)
    probs = []
    for _ in range(m):
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), true] += 3.0
        p = np.exp(logits)
        probs.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    return labels, probs


def test_clean_arrays_decisions_are_byte_identical_across_runs(tmp_path):
    from imagenet_clean.cleanup.ensemble import clean_arrays, write_arrays_decisions

    labels, probs = _arrays()
    thr = Thresholds(h1=0.5, h2=3, h3=0.667)
    out = []
    for i in range(2):
        dec, counts = clean_arrays(labels, [p.copy() for p in probs], thresholds=thr, model_names=["a", "b", "c"])
        write_arrays_decisions(tmp_path / f"d{i}.parquet", dec, thresholds=thr, models=["a", "b", "c"])
        out.append((tmp_path / f"d{i}.parquet").read_bytes())
    assert out[0] == out[1]
    assert counts["fix"] + counts["remove"] > 0  # the check is not vacuous
