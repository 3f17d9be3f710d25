"""metrics/headline.json: the figures `dvc exp show` compares, from the detail metrics files (issue 29)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from imagenet_clean.evaluate.headline import headline_metrics, plot_rows, table2_gain
from imagenet_clean.stages import headline as stage
from imagenet_clean.workspace import Workspace


def cleanup(split, *, fix, remove, merged, samples, h3=5):
    return {"split": split, "fix": fix, "remove": remove, "merged": merged, "samples": samples,
            "thresholds_resolved": {"fn": 1.0, "h1": 5.0, "h2": 4.0, "h3": float(h3)}}


CLEANUP = {"train": cleanup("train", fix=105, remove=135, merged=85, samples=1600),
           "val": cleanup("val", fix=34, remove=41, merged=28, samples=471, h3=0.6666 * 5),
           "v2": cleanup("v2", fix=14, remove=47, merged=16, samples=285)}
DETECTION = {"splits": {s: {"detected": {"precision": p, "recall": r, "f1": 0.8}} for s, p, r in
                        (("train", 0.894, 0.772), ("val", 0.906667, 0.8), ("v2", 0.7, 0.843))}}
TABLE1 = {"vgg": {"val": {"top1": 79.2}, "val_clean": {"top1": 96.5}, "v2_clean": {"top1": 85.0}},
          "resnet": {"val": {"top1": 77.8}, "val_clean": {"top1": 95.4}},
          "extra": {"cleanup": False, "val_clean": {"top1": 10.0}},  # tables.extra_models: not a cleanup model
          "skipped_splits": {"imagenet_r": "root is null"}}
TABLE2_SPREAD = {"digits_vgg_wide": {"headline": {"set": "val_clean", "seeds": 3, "top1": {
    "T": 95.6332, "T_c": 96.5793, "gain": 0.9461, "spread": 0.5043, "beyond_spread": True}}}}


def test_headline_has_each_splits_figures_split_first_in_column_order():
    h = headline_metrics(CLEANUP, detection=DETECTION, table1=TABLE1, table2=TABLE2_SPREAD)
    assert list(h)[:12] == [f"{s}.{t}" for t in ("h1", "h2", "h3") for s in ("train", "val", "v2")] + \
        ["train.removals", "val.removals", "v2.removals"]
    assert h["val.h3"] == 4 and isinstance(h["val.h3"], int)  # 3.333 models: a sample needs 4
    assert h["train.h3"] == 5 and h["train.h2"] == 4
    assert (h["train.fixes"], h["train.removals"], h["train.merges"]) == (105, 135, 85)
    assert h["train.changed"] == round((105 + 135) / 1600, 4)
    assert (h["val.precision"], h["val.recall"]) == (0.9067, 0.8)
    assert h["table1.val_c"] == round((96.5 + 95.4) / 2, 2)  # the cleanup models only
    assert (h["table2.T"], h["table2.T_c"], h["table2.gain"]) == (95.63, 96.58, 0.95)
    assert "val.review_precision" not in h  # no reviews: no figure rather than a null
    assert 20 <= len(h) <= 32 and all(isinstance(v, (int, float)) for v in h.values())


def test_figures_without_a_source_are_left_out():
    skipped = {"skipped": True, "why": "not computed"}
    h = headline_metrics({**CLEANUP, "v2": {"split": "v2", "skipped": True, "why": "root is null"}},
                         detection=skipped, table1=skipped, table2=skipped)
    assert not [k for k in h if k.startswith("v2.")]
    assert not [k for k in h if k.endswith((".precision", ".recall")) or k.startswith("table")]
    assert h["val.removals"] == 41
    assert headline_metrics({}) == {}


def test_review_precision_is_the_share_of_reviewed_changes_the_reviewers_accepted():
    review = {"splits": {"val": {"reviewed": 8, "by_verdict": {"accept": 6, "reject": 1, "relabel": 1}},
                         "train": {"reviewed": 0, "by_verdict": {"accept": 0, "reject": 0, "relabel": 0}}}}
    h = headline_metrics(CLEANUP, review=review)
    assert h["val.review_precision"] == 0.75 and "train.review_precision" not in h
    # the sweep plot's precision falls back to the reviewers' where there is no truth
    rows = {r["split"]: r for r in plot_rows(h)}
    assert rows["val"]["precision"] == 0.75 and rows["val"]["recall"] is None and rows["train"]["precision"] is None


@pytest.mark.parametrize("row, key, gain", [
    (TABLE2_SPREAD["digits_vgg_wide"], "headline.top1.gain", 0.95),
    # a paired-gain layout (issue 28): the gain an object with its mean and interval, at any of three places
    ({"headline": {"top1": {"T": 95.6, "T_c": 96.5, "gain": {"mean": 0.71, "ci95": [0.2, 1.2]}}}}, "headline.top1.gain.mean", 0.71),
    ({"headline": {"top1": {"T": 95.6, "T_c": 96.5}, "gain": {"mean": 0.5, "ci95": [-0.1, 1.1]}, "verdict": "not resolved"}},
     "headline.gain.mean", 0.5),
    ({"gain": {"mean": -0.25, "ci95": [-1.0, 0.5]}, "verdict": "no"}, "gain.mean", -0.25),
])
def test_table2_gain_reads_the_spread_layout_and_a_paired_gain_layout(row, key, gain):
    figures, used = table2_gain({"digits_vgg_wide": row, "skipped_splits": {}})
    assert figures["gain"] == gain and used == key


def test_table2_gain_averages_the_architectures():
    t2 = {"a": TABLE2_SPREAD["digits_vgg_wide"], "b": {"headline": {"top1": {"T": 90.0, "T_c": 91.0, "gain": 1.0}}}}
    figures, _ = table2_gain(t2)
    assert figures == {"T": round((95.6332 + 90) / 2, 2), "T_c": round((96.5793 + 91) / 2, 2), "gain": round((0.9461 + 1) / 2, 2)}
    assert table2_gain({"skipped": True}) == ({}, None)


def test_stage_writes_the_headline_in_column_order_and_the_sweep_plot_data(tmp_path):
    ws = Workspace(tmp_path)
    for s, m in CLEANUP.items():
        ws.cleanup_metrics(s).parent.mkdir(parents=True, exist_ok=True)
        ws.cleanup_metrics(s).write_text(json.dumps(m))
    ws.detection.write_text(json.dumps(DETECTION))
    ws.metric("table2.json").write_text(json.dumps(TABLE2_SPREAD))  # no table1, no review: left out
    out = stage.run(None, ws)
    text = out.read_text()
    head = json.loads(text)
    assert list(head) == list(headline_metrics(CLEANUP, detection=DETECTION, table2=TABLE2_SPREAD))
    assert "table1.val_c" not in head and text.endswith("}\n")
    plot = pd.read_csv(ws.headline_plot)
    assert list(plot["split"]) == ["train", "val", "v2"]
    assert list(plot["h3"]) == [5, 4, 5] and list(plot["removals"]) == [135, 41, 47]
    assert list(plot.columns) == ["split", "h1", "h2", "h3", "fixes", "removals", "merges", "precision", "recall"]
    stage.run(None, ws)
    assert out.read_text() == text  # byte-stable


def test_label_sets_and_duplicates_join_the_headline_pooled_where_scored():
    from imagenet_clean.evaluate.headline import evidence_headline, headline_metrics

    det = {"splits": {
        "train": {"label_sets": {"labels": {"right_in_sets": 8, "in_sets": 10, "found_in_scenes": 6, "true_in_scenes": 9}}},
        "val": {"label_sets": {"labels": {"right_in_sets": 2, "in_sets": 2, "found_in_scenes": 3, "true_in_scenes": 3}}},
        "v2": {}},
        "duplicates": {"all": {"precision": 0.99167, "recall": 0.9756}}}
    assert evidence_headline(det) == {"label_sets.precision": round(10 / 12, 4), "label_sets.recall": 0.75,
                                      "duplicates.precision": 0.9917, "duplicates.recall": 0.9756}
    assert evidence_headline({"splits": {"train": {}}}) == {}
    out = headline_metrics({"train": {"fix": 1, "remove": 2, "samples": 10}}, detection=det)
    assert list(out)[-4:] == ["label_sets.precision", "label_sets.recall", "duplicates.precision", "duplicates.recall"]
