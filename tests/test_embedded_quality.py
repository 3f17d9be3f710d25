"""The embedded default proves the method (issue 12): models that learn, a cleanup that is right, cleaning that helps.

One ``dvc repro`` of the repository's unchanged ``params.yaml`` in a fresh
project, then the figures a user reads in ``metrics/`` are checked against the
goals of issue 12 as written (thresholds, not one machine's figures), and table
2's verdict against issue 28's statistic: the 95 % t-interval of the paired
gains T_c - T on V_c over ``tables.seeds`` (10) seeds lies above 0. Slow:
``pytest -m slow tests/test_embedded_quality.py``.

The figures move across CPU families (training differs in the last bits);
README "Tolerances across CPU families" and docs/reliability.md give the
measured moves on an AVX2 machine and on an AVX-512 machine with and without
the AVX2 switch. Two of issue 12's goals sit within their largest measured
move: the val ensemble-beats-best-model fix F1 (lead +0.032 on the AVX2
family, -0.037 on AVX-512's default numerics: one val fix is about 0.02 F1)
and the V2_c seed spread (1.43 against 2.03: V2 images are 0.3-0.4 points
each). Those two are asserted up to that move (:data:`TOLERANCE`), as
issue 28 asks, and the README says where a run missed them; every other goal
is asserted as issue 12 wrote it. Of issue 30's goals one sits within its move
the same way: the pooled label-set recall (0.757 under the AVX2 switch, 0.721
under the default numerics and 0.686 under the SSE41 switch on an Intel machine
with the regions-apart rule of 2026-12-07, goal 0.7: a move of 0.071), asserted
up to 0.071; the README and the closing note count it as a miss where it is
under 0.7.
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

# The largest moves measured across CPU families (README "Tolerances across CPU families", 2026-12-06/07) of the
# goals that sit within them: the ensemble's fix-F1 lead over the best single model, a seed std, and the pooled
# label-set recall (issue 30; 0.757, 0.721 and 0.686 under three numerics of one machine, 2026-12-07).
TOLERANCE = {"f1_lead": 0.069, "seed_std": 0.97, "label_set_recall": 0.071}


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
    """Issue 12: the ensemble's F1 beats every single model's cleanlab output, up to the cross-family move of the lead."""
    s = _metric(embedded, "detection.json")["splits"][split]
    best_fix = max(b["fix"]["f1"] for b in s["baseline"].values())
    best_found = max(b["remove"]["f1"] for b in s["baseline"].values())
    assert s["fix"]["f1"] > best_fix - TOLERANCE["f1_lead"], (s["fix"], best_fix, s["beats_baseline_f1"])
    assert s["detected"]["f1"] > best_found - TOLERANCE["f1_lead"], (s["detected"], best_found, s["beats_baseline_f1"])


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


def _seeds(embedded) -> int:
    import yaml

    return int(yaml.safe_load((embedded / "params.yaml").read_text())["tables"]["seeds"])


def test_training_on_the_cleaned_split_helps_beyond_seed_noise(embedded):
    """Issue 12's "T_c beats T on V_c", as issue 28's paired verdict: the 95 % t-interval of T_c - T over seeds is above 0."""
    from scipy import stats

    archs = _table2_rows(embedded)
    runs = _metric(embedded, "runs/table2.json")
    assert archs and _seeds(embedded) >= 5
    for arch, cells in archs.items():
        h = cells["headline"]
        assert h["set"] == "val_clean" and h["seeds"] == _seeds(embedded), h
        g = h["top1"]
        assert g["pairs"] == _seeds(embedded) and g["verdict"] == "helps" and g["ci95"][0] > 0, (arch, g)
        # the verdict is the interval the per-seed runs give, recomputed here
        d = [runs[arch]["T_c"][k]["val_clean"]["top1"] - runs[arch]["T"][k]["val_clean"]["top1"] for k in sorted(runs[arch]["T"])]
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        assert len(d) == g["pairs"] and g["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-3), (arch, d, g)


@pytest.mark.parametrize("column", ["val", "val_clean", "v2", "v2_clean"])
def test_the_seed_spread_is_within_1_5_points_on_every_column(embedded, column):
    spreads = {(arch, s): cells[s][column]["top1"] for arch, cells in _table2_rows(embedded).items() for s in ("T", "T_c")}
    assert spreads, column
    for key, top1 in spreads.items():
        assert top1["n"] == _seeds(embedded) and top1["std"] <= 1.5 + TOLERANCE["seed_std"], (key, column, top1)


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


def test_merge_suggestions_put_the_synonym_pair_first(embedded):
    """Issue 30: the class pair every model confuses both ways most is the generator's synonym pair, and it alone
    passes the default min_rate (the pairs that injected flips confuse both ways score about a third of it)."""
    s = _metric(embedded, "merge_suggestions.json")
    assert [(p["a_name"], p["b_name"]) for p in s["pairs"]][:1] == [("digit one", "digit one, variant")], s["pairs"][:3]
    assert len(s["pairs"]) == 1 and s["pairs"][0]["already_merged"], s["pairs"]


# ------------------------------------------------------------------ issue 30: evidence the paper did not have


@pytest.mark.parametrize("split", ["train", "val"])
def test_the_quality_rule_lifts_removal_recall_to_0_8(embedded, split):
    """The embedded default has the quality rule on: removal recall >= 0.8 on train and val (0.63-0.66 without)."""
    s = _metric(embedded, "detection.json")["splits"][split]
    assert s["remove"]["recall"] >= 0.8, s["remove"]


def test_label_sets_on_multi_digit_scenes_are_precise_and_complete(embedded):
    """Pooled over the cleaned splits (77 scenes): label precision >= 0.8, recall >= 0.7 up to its cross-family move."""
    head = _metric(embedded, "headline.json")
    assert head["label_sets.precision"] >= 0.8, head
    assert head["label_sets.recall"] >= 0.7 - TOLERANCE["label_set_recall"], head


def test_injected_duplicates_are_found_within_and_across_splits(embedded):
    d = _metric(embedded, "detection.json")["duplicates"]
    for scope in ("all", "within", "across"):
        assert d[scope]["precision"] >= 0.9 and d[scope]["recall"] >= 0.9, (scope, d[scope])
