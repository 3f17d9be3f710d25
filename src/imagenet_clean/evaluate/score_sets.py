"""Score label sets (action ``relabel_set``) against the embedded truth's ``true_labels``.

Every image's *label set after cleanup* is its ``labels`` when it got a set,
``[new_label]`` when it was kept or fixed, and empty when it was removed; labels
are compared after the category merges. On the scenes that show several classes
(``true_labels`` of two or more):

* ``labels.recall``: the share of their true classes that their sets contain;
* ``labels.precision``: over every image given a set, the share of the set's
  classes that the image shows;
* ``scenes``: which images got a set, against the multi-class scenes (precision, recall, F1).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..cleanup.rules import ACTION_SET, RULE_UNREADABLE
from .score import prf


def score_label_sets(decisions: pd.DataFrame, truth: pd.DataFrame, *, merge_lut: np.ndarray | None = None) -> dict | None:
    """Label-set precision and recall of one split; None without a ``labels`` column or ``true_labels`` truth."""
    if "labels" not in decisions or "true_labels" not in truth:
        return None
    readable = np.array([RULE_UNREADABLE not in list(r) for r in decisions["rules"]], bool)
    d = decisions[readable].merge(truth[["sample_id", "true_labels"]], on="sample_id", how="inner")

    def merged(values) -> set[int]:
        v = np.asarray(list(values), np.int64)
        return set((v if merge_lut is None else merge_lut[v]).tolist())

    act = d["action"].to_numpy()
    got = [merged(s) if a == ACTION_SET else set() if a == "remove" else merged([n])
           for s, a, n in zip(d["labels"], act, d["new_label"])]
    true = [merged(t) for t in d["true_labels"]]
    is_set = act == ACTION_SET
    scene = np.array([len(t) >= 2 for t in true], bool)
    hit = np.array([len(g & t) for g, t in zip(got, true)])
    size = np.array([len(g) for g in got])
    shown = np.array([len(t) for t in true])
    p = float(hit[is_set].sum() / size[is_set].sum()) if is_set.any() else 0.0
    r = float(hit[scene].sum() / shown[scene].sum()) if scene.any() else 0.0
    return {
        "sets": int(is_set.sum()),
        "scenes": prf(int((is_set & scene).sum()), int(is_set.sum()), int(scene.sum())),
        "labels": {"precision": round(p, 6), "recall": round(r, 6), "f1": round(2 * p * r / (p + r), 6) if p + r else 0.0,
                   "in_sets": int(size[is_set].sum()), "right_in_sets": int(hit[is_set].sum()),
                   "true_in_scenes": int(shown[scene].sum()), "found_in_scenes": int(hit[scene].sum())},
    }
