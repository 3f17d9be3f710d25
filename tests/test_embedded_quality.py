"""The embedded default proves the method (issue 12): models that learn, a cleanup that is right, cleaning that helps.

One ``dvc repro`` of the repository's unchanged ``params.yaml`` in a fresh
project (8 min 31 s on 2 CPU cores on 2026-12-01 at 10:00; 10 min 28 s in the
shared machine's slow hours that morning, with table 2's narrower model), then the figures a user reads in
``metrics/`` are checked against the goals of issue 12. Slow: ``pytest -m slow
tests/test_embedded_quality.py``.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline_project import run, write_embedded_project

pytestmark = pytest.mark.slow

PROBLEMS = ("minuscule", "bad_quality", "multi_object")
SYNONYM_OF = {10: 1}  # the embedded synonym class and the digit it merges into


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    project = write_embedded_project(tmp_path_factory.mktemp("embedded"))
    run(["dvc", "repro"], project)
    return project


def _metric(project, name):
    return json.loads((project / "metrics" / name).read_text())


def _merged(labels):
    return np.array([SYNONYM_OF.get(int(v), int(v)) for v in labels])


def _true_accuracy(project, split: str, model: str) -> float:
    """Top-1 against the *true* label on the split's images whose truth is clean (no problem image)."""
    truth = pd.read_parquet(project / "data/raw/truth.parquet")
    truth = truth[(truth["split"] == split) & ~truth["problem"].isin(PROBLEMS)].set_index("sample_id")
    pred = pd.read_parquet(project / "data/predictions" / split / f"{model}.parquet", columns=["sample_id", "status", "top5"])
    pred = pred[(pred["status"] == "ok") & pred["sample_id"].isin(truth.index)]
    top1 = _merged([t[0] for t in pred["top5"]])
    return float((top1 == _merged(truth.loc[pred["sample_id"], "true_label"])).mean())


def test_every_model_learns_the_digits(embedded):
    models = [p.stem for p in (embedded / "data/predictions/train").glob("*.parquet")]
    assert len(models) >= 4
    for m in models:
        assert _true_accuracy(embedded, "train", m) >= 0.90, f"{m}: out-of-fold top-1 on clean training images"
        assert _true_accuracy(embedded, "val", m) >= 0.90, f"{m}: full model's top-1 on clean val images"


@pytest.mark.parametrize("split", ["train", "val"])
def test_fixes_and_removals_are_precise_on_train_and_val(embedded, split):
    s = _metric(embedded, "detection.json")["splits"][split]
    assert s["remove"]["precision"] >= 0.8, s["remove"]
    assert s["fix"]["precision"] >= 0.9, s["fix"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_most_problems_are_found(embedded, split):
    assert _metric(embedded, "detection.json")["splits"][split]["detected"]["recall"] >= 0.7


def test_v2_fixes_are_precise(embedded):
    assert _metric(embedded, "detection.json")["splits"]["v2"]["fix"]["precision"] >= 0.8


def test_v2_removals_are_precise(embedded):
    assert _metric(embedded, "detection.json")["splits"]["v2"]["remove"]["precision"] >= 0.6


@pytest.mark.parametrize("split", ["train", "val", "v2"])
def test_the_ensemble_beats_every_single_model(embedded, split):
    s = _metric(embedded, "detection.json")["splits"][split]
    assert s["beats_baseline_f1"] == {"fix": True, "detected": True}, s["beats_baseline_f1"]


def test_change_rates_stay_within_twice_the_injected_rates(embedded):
    truth = pd.read_parquet(embedded / "data/raw/truth.parquet")
    det = _metric(embedded, "detection.json")["splits"]
    for split, s in det.items():
        t = truth[(truth["split"] == split) & (truth["problem"] != "synonym")]
        assert s["rates"]["fix"] <= 2 * (t["problem"] == "flip").mean(), (split, s["rates"])
        assert s["rates"]["remove"] <= 2 * t["problem"].isin(("flip",) + PROBLEMS).mean(), (split, s["rates"])


def _table2_rows(embedded) -> dict:
    """Table 2's rows that were trained (T and T_c), by architecture."""
    t2 = _metric(embedded, "table2.json")
    return {arch: cells for arch, cells in t2.items() if isinstance(cells, dict) and "T_c" in cells}


def test_training_on_the_cleaned_split_helps_beyond_the_seed_spread(embedded):
    archs = _table2_rows(embedded)
    assert archs
    for arch, cells in archs.items():
        top1 = {s: cells[s]["val_clean"]["top1"] for s in ("T", "T_c")}
        spread = max(top1["T"]["std"], top1["T_c"]["std"])
        assert spread <= 1.5, (arch, top1)
        assert top1["T_c"]["mean"] - top1["T"]["mean"] > spread, (arch, top1)


def _spreads(embedded, column: str) -> dict:
    return {(arch, s): cells[s][column]["top1"] for arch, cells in _table2_rows(embedded).items() for s in ("T", "T_c")}


@pytest.mark.parametrize("column", ["val", "val_clean", "v2", "v2_clean"])
def test_the_seed_spread_is_within_1_5_points_on_every_column(embedded, column):
    spreads = _spreads(embedded, column)
    assert spreads, column
    for key, top1 in spreads.items():
        assert top1["n"] == 3 and top1["std"] <= 1.5, (key, column, top1)


def test_tuned_thresholds_agree_with_a_truth_reviewer_on_held_out_reviews(embedded):
    """imagenet-clean tune (issue 29) on the real embedded outputs: a reviewer who knows the truth judges every
    change of val and 100 kept images; tuned on one half of the verdicts, the proposed thresholds agree with it
    on the other half at least as well as the paper's (benchmarks/tune_standin.py prints the figures)."""
    from imagenet_clean.config import load_params
    from imagenet_clean.review.standin import standin_experiment
    from imagenet_clean.workspace import Workspace

    params = load_params(embedded / "params.yaml")
    r = standin_experiment(params, Workspace(embedded), "val", audit=100, seed=0, cams=True)
    held = r["held_out"]
    assert r["reviewed"]["held_out"] >= 60
    assert held["proposed"]["agreement"] >= held["current"]["agreement"], r["text"]
