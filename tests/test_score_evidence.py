"""detection.json's scores of issue 30's evidence: duplicates against the injected copies, the quality and duplicate rules."""
import json

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.duplicates import PAIR_COLUMNS
from imagenet_clean.config import parse_params
from imagenet_clean.evaluate.score import (
    score_decisions,
    score_duplicate_rule,
    score_duplicates,
    score_quality_rule,
    without_rule,
)
from imagenet_clean.io import write_table
from imagenet_clean.stages.score import run as score_all
from imagenet_clean.workspace import Workspace


def quality_decisions():
    # sample, label, action, new_label, rules
    rows = [
        ("q1", 1, "remove", 1, ["quality"]),                            # minuscule: only the rule removes it
        ("q2", 2, "remove", 2, ["consensus", "quality"]),               # bad quality: consensus removes it anyway
        ("q3", 3, "keep", 3, []),                                       # bad quality: missed
        ("q4", 4, "remove", 4, ["consensus", "cam_exempt", "quality"]),  # minuscule: the CAMs kept it, the rule removes it
        ("q5", 5, "remove", 5, ["quality"]),                            # clean: the rule's cost
        ("q6", 6, "keep", 6, []),                                       # clean
        ("q7", 7, "keep", 7, ["quality", "human"]),                     # bad quality: a reviewer kept it
        ("q8", 0, "fix", 1, ["cl_fix"]),                                # a wrong label, fixed
        ("q9", 2, "remove", 2, ["unreadable"]),                         # not scored
    ]
    df = pd.DataFrame(rows, columns=["sample_id", "label", "action", "new_label", "rules"])
    df["flagged_models"] = [[] for _ in rows]
    df["candidates"] = [[] for _ in rows]
    return df


def quality_truth():
    return pd.DataFrame({
        "split": "val", "sample_id": [f"q{i}" for i in range(1, 10)],
        "true_label": [1, 2, 3, 4, 5, 6, 7, 1, 2], "given_label": [1, 2, 3, 4, 5, 6, 7, 0, 2],
        "problem": ["minuscule", "bad_quality", "bad_quality", "minuscule", "none", "none", "bad_quality", "flip", "none"],
    })


def test_without_rule_reverts_only_the_removals_the_rule_alone_made():
    off, added = without_rule(quality_decisions(), "quality")
    assert added.tolist() == [True, False, False, True, True, False, False, False, False]
    assert off["action"].tolist() == ["keep", "remove", "keep", "keep", "keep", "keep", "keep", "fix", "remove"]


def test_quality_rule_scores_its_recall_gain_and_its_cost_on_clean_images():
    s = score_quality_rule(quality_decisions(), quality_truth())
    assert s["removed_by_rule"] == 3 and s["removed_by_rule_per_truth"] == {"clean": 1, "minuscule": 2}
    assert s["recall"]["minuscule"] == {"images": 2, "removed_off": 0, "removed_on": 2, "recall_off": 0.0, "recall_on": 1.0, "gain": 1.0}
    bq = s["recall"]["bad_quality"]
    assert (bq["images"], bq["removed_off"], bq["removed_on"], bq["gain"]) == (3, 1, 1, 0.0)
    assert s["recall"]["minuscule+bad_quality"]["gain"] == pytest.approx(0.4)
    assert s["clean_images"] == 2 and s["clean_removed"] == {"off": 0, "on": 1, "by_rule": 1}
    on = score_decisions(quality_decisions(), quality_truth())["remove"]
    assert s["remove"]["on"] == on and s["remove"]["off"]["tp"] == 1 and on["tp"] == 3
    assert s["remove"]["recall_gain"] == pytest.approx(on["recall"] - s["remove"]["off"]["recall"], abs=1e-6)
    assert s["remove"]["recall_gain"] > 0


def dup_truth():
    return pd.DataFrame({"split": ["train"] * 5 + ["val"], "sample_id": ["o", "c1", "c2", "x", "y", "v"],
                         "duplicate_of_split": [None, "train", "train", None, None, "train"],
                         "duplicate_of": [None, "o", "o", None, None, "o"],
                         "duplicate_kind": [None, "exact", "near", None, None, "near"]})


def test_duplicate_scores_split_near_pairs_by_scope():
    found = pd.DataFrame([("train", "c1", "train", "o", "exact", 0.0), ("train", "c2", "train", "o", "near", 0.01),
                          ("train", "o", "val", "v", "near", 0.02), ("train", "x", "train", "y", "near", 0.03)],
                         columns=list(PAIR_COLUMNS))
    s = score_duplicates(found, dup_truth())
    assert s["exact"] == {"found": 1, "true": 1, "hit": 1, "precision": 1.0, "recall": 1.0}
    assert s["near_within"] == {"found": 2, "true": 2, "hit": 1, "precision": 0.5, "recall": 0.5}  # c1-c2 missed, x-y false
    assert s["near_across"] == {"found": 1, "true": 3, "hit": 1, "precision": 1.0, "recall": round(1 / 3, 4)}


def test_duplicate_rule_removals_are_right_when_they_name_a_true_copy():
    t = dup_truth()
    dec = pd.DataFrame({"sample_id": ["o", "c1", "c2", "x", "y"], "action": ["keep", "remove", "keep", "remove", "keep"],
                        "reason": ["", "duplicate of o", "", "duplicate of y", ""],
                        "rules": pd.Series([[], ["duplicate"], [], ["duplicate"], []], dtype=object)})
    s = score_duplicate_rule(dec, t[t["split"] == "train"])
    assert s == {"removed": 2, "right": 1, "redundant_copies": 2, "precision": 0.5, "recall": 0.5}


def test_score_stage_adds_the_evidence_scores_only_where_they_apply(tmp_path):
    (tmp_path / "classes.tsv").write_text("".join(f"n{c:08d}\tclass {c}\n" for c in range(11)))
    dataset = {"truth": "truth.parquet", "classes": "classes.tsv", "merges": "none"}
    params = parse_params({"dataset": dataset, "splits": {"val": {"root": "r"}}})
    dec = quality_decisions()
    truth = quality_truth()
    write_table(tmp_path / "data/decisions/val.parquet", dec)  # the rule off: no quality metadata
    write_table(tmp_path / "truth.parquet", truth)
    assert set(score_all(params, Workspace(tmp_path))) == {"splits"}

    write_table(tmp_path / "data/decisions/val.parquet", dec, metadata={"quality": json.dumps({"contrast": {"min": 0.06}})})
    truth = truth.assign(duplicate_of_split=[None] * 4 + ["val"] + [None] * 4, duplicate_of=[None] * 4 + ["q6"] + [None] * 4,
                         duplicate_kind=[None] * 4 + ["near"] + [None] * 4)
    write_table(tmp_path / "truth.parquet", truth)
    write_table(tmp_path / "data/duplicates/val-val.parquet",
                pd.DataFrame([("val", "q5", "val", "q6", "near", 0.01), ("val", "q1", "val", "q2", "near", 0.03)],
                             columns=list(PAIR_COLUMNS)))
    res = score_all(params, Workspace(tmp_path))
    assert res["duplicates"]["all"] == {"found": 2, "true": 1, "hit": 1, "precision": 0.5, "recall": 1.0}
    assert res["quality"]["val"]["removed_by_rule"] == 3 and "duplicate_rule" not in res
    on_disk = json.loads((tmp_path / "metrics/detection.json").read_text())
    assert on_disk["duplicates"] == res["duplicates"] and on_disk["splits"]["val"] == res["splits"]["val"]
    assert np.isclose(on_disk["quality"]["val"]["remove"]["recall_gain"], res["quality"]["val"]["remove"]["recall_gain"])
