"""Scoring decisions against the embedded truth and against ImageNet ReaL."""
import json

import pandas as pd
import pytest

from imagenet_clean.config import parse_params
from imagenet_clean.evaluate.score import load_real_labels, prf, real_index, score_decisions, score_real
from imagenet_clean.io import write_table
from imagenet_clean.stages.score import run as score_all
from imagenet_clean.workspace import Workspace


def decisions():
    # sample, label, action, new_label, rules, flagged_models, candidates
    rows = [
        ("s0", 0, "fix", 1, ["cl_fix"], ["a", "b"], [1, 1]),      # right fix (true 1)
        ("s1", 0, "fix", 2, ["cl_fix"], ["a", "b"], [2, 2]),      # wrong fix (true 3)
        ("s2", 1, "remove", 1, ["consensus"], [], []),           # problem image: right removal
        ("s3", 1, "remove", 1, ["cl_remove"], ["a"], [0]),       # clean image: wrong removal
        ("s4", 2, "keep", 2, [], ["b"], [0]),                    # missed wrong label (true 0)
        ("s5", 2, "keep", 2, [], [], []),                        # clean
        ("s6", 2, "remove", 2, ["unreadable"], [], []),          # not scored
        ("s7", 10, "keep", 10, [], [], []),                      # synonym class: the merge handles it
    ]
    return pd.DataFrame(rows, columns=["sample_id", "label", "action", "new_label", "rules", "flagged_models", "candidates"])


def truth():
    return pd.DataFrame({
        "split": "val",
        "sample_id": ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"],
        "true_label": [1, 3, 1, 1, 0, 2, 2, 1],
        "given_label": [0, 0, 1, 1, 2, 2, 2, 10],
        "problem": ["flip", "flip", "minuscule", "none", "flip", "none", "bad_quality", "synonym"],
    })


def test_prf():
    assert prf(1, 2, 4) == {"precision": 0.5, "recall": 0.25, "f1": pytest.approx(1 / 3, abs=1e-6),
                            "tp": 1, "predicted": 2, "actual": 4}
    assert prf(0, 0, 0)["f1"] == 0.0


def test_score_decisions_against_the_truth():
    s = score_decisions(decisions(), truth())
    assert s["samples"] == 6 and s["unreadable"] == 1 and s["synonyms"] == {"keep": 1, "fix": 0, "remove": 0}
    assert s["wrong_labels"] == 3 and s["problem_images"] == 1
    assert s["fix"]["tp"] == 1 and s["fix"]["predicted"] == 2 and s["fix"]["actual"] == 3
    # removal positives: problem s2 + wrong labels not fixed right (s1, s4) = 3; removed s2 (right), s3 (wrong)
    assert (s["remove"]["tp"], s["remove"]["predicted"], s["remove"]["actual"]) == (1, 2, 3)
    assert (s["detected"]["tp"], s["detected"]["predicted"], s["detected"]["actual"]) == (3, 4, 4)
    a, b = s["baseline"]["a"], s["baseline"]["b"]
    assert (a["fix"]["tp"], a["fix"]["predicted"]) == (1, 3)
    assert (b["fix"]["tp"], b["fix"]["predicted"]) == (2, 3)  # b's candidate 0 for s4 is the true label
    assert (b["remove"]["tp"], b["remove"]["predicted"]) == (3, 3)


def test_a_fix_to_a_merge_partner_is_counted_as_a_merge_and_scored_as_neither_right_nor_wrong():
    import numpy as np

    d = pd.concat([decisions(), pd.DataFrame([
        ("s8", 1, "fix", 10, ["cl_fix"], ["a", "b"], [10, 10]),   # digit one -> its synonym class: a no-op after the merge
        ("s9", 3, "fix", 10, ["cl_fix"], ["a", "b"], [10, 10]),   # a flip fixed to the synonym class: right after the merge
    ], columns=decisions().columns)], ignore_index=True)
    t = pd.concat([truth(), pd.DataFrame({"split": "val", "sample_id": ["s8", "s9"], "true_label": [1, 1],
                                          "given_label": [1, 3], "problem": ["none", "flip"]})], ignore_index=True)
    lut = np.arange(11)
    lut[10] = 1  # the embedded merge: class 10 into class 1
    plain, merged = score_decisions(d, t), score_decisions(d, t, merge_lut=lut)
    assert plain["fix"]["predicted"] == 4 and plain["fix"]["tp"] == 1  # without the merge both count as wrong fixes
    assert merged["merge_fixes"] == 1
    assert (merged["fix"]["tp"], merged["fix"]["predicted"], merged["fix"]["actual"]) == (2, 3, 4)
    assert merged["rates"]["fix"] == pytest.approx(3 / 8)
    assert merged["baseline"]["a"]["fix"]["predicted"] == 4  # a's synonym candidate for s8 proposes nothing


def test_a_fix_of_a_problem_image_is_a_wrong_fix_and_a_missed_removal():
    d = decisions()
    d.loc[d["sample_id"] == "s2", ["action", "new_label", "rules"]] = ["fix", 3, None]
    d.at[int(d.index[d["sample_id"] == "s2"][0]), "rules"] = ["cl_fix"]
    s = score_decisions(d, truth())
    assert (s["fix"]["tp"], s["fix"]["predicted"]) == (1, 3)
    assert s["remove"]["actual"] == 3 and s["remove"]["tp"] == 0


def test_truth_from_other_data_is_rejected():
    t = truth()
    t.loc[0, "given_label"] = 5
    with pytest.raises(ValueError, match="given_label 5 of 's0' differs"):
        score_decisions(decisions(), t)


def test_real_index_and_bundled_labels():
    assert real_index(["n01440764/ILSVRC2012_val_00000001.JPEG", "x.jpg"]).tolist() == [0, -1]
    real = load_real_labels()
    assert len(real) == 50000 and all(isinstance(r, list) for r in real[:10])


def test_score_real():
    ids = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3, 4)]
    real = [[5], [], [1, 2], [7]]
    dec = pd.DataFrame({"sample_id": ids, "label": [3, 4, 1, 7], "new_label": [5, 4, 2, 7],
                        "action": ["fix", "remove", "fix", "keep"]})
    top1 = {"m": pd.Series([5, 0, 2, 1], index=ids)}
    s = score_real(dec, real=real, top1=top1, clean_ids=[ids[0], ids[2]])
    assert s["fix_confirmed"] == 0.5  # id1: 5 in ReaL, 3 not; id3: old label 1 is in ReaL
    assert s["removal_confirmed"] == 1.0  # empty ReaL set
    assert s["accuracy"]["m"]["V"] == pytest.approx(2 / 3) and s["accuracy"]["m"]["V_n"] == 3
    assert s["accuracy"]["m"]["V_c"] == 1.0


def test_score_all_writes_detection_json(tmp_path):
    write_table(tmp_path / "data/decisions/val.parquet", decisions())
    write_table(tmp_path / "truth.parquet", truth())
    (tmp_path / "classes.tsv").write_text("".join(f"n{c:08d}\tclass {c}\n" for c in range(11)))
    dataset = {"truth": "truth.parquet", "classes": "classes.tsv", "merges": "none"}
    params = parse_params({"dataset": dataset, "splits": {"val": {"root": "r"}, "imagenet_r": {}}})
    res = score_all(params, Workspace(tmp_path))
    assert res["not_cleaned"] == ["imagenet_r"]
    on_disk = json.loads((tmp_path / "metrics/detection.json").read_text())
    assert on_disk == json.loads(json.dumps(res)) and on_disk["splits"]["val"]["fix"]["tp"] == 1
    params = parse_params({"dataset": {**dataset, "truth": "missing.parquet"}, "splits": {"val": {"root": "r"}}})
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        score_all(params, Workspace(tmp_path))
