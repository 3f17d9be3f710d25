"""Accuracy of prediction files over original and cleaned evaluation sets; the round file layout."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.evaluate.accuracy import RoundPaths, accuracy, cleaned_set, hits, original_set, symbol
from imagenet_clean.predictions import Predictions


def _preds(ids, top1, k=6, status=None):
    """Predictions whose best class is ``top1`` and whose 2nd..5th are the next classes."""
    n = len(ids)
    probs = np.full((n, k), 0.01, np.float32)
    top5 = np.stack([(np.asarray(top1) + j) % k for j in range(5)], axis=1).astype(np.int32)
    for j in range(5):
        probs[np.arange(n), top5[:, j]] = 0.5 - 0.1 * j
    status = np.asarray(status if status is not None else ["ok"] * n, dtype=object)
    return Predictions(np.asarray(ids, dtype=object), probs, top5, status, np.full(n, "", object), np.full(n, -1), {})


def test_accuracy_counts_top1_and_top5_hits_in_percent():
    p = _preds(["a", "b", "c", "d"], [0, 1, 2, 3])
    # a: top-1 hit; b: label is 2nd guess (top-5 hit); c: label 5 = 2+3 (top-5 hit); d: 3+5=8%6=2 -> miss
    acc = accuracy(p, ["a", "b", "c", "d"], [0, 2, 5, 2])
    assert (acc.n, acc.top1, acc.top5, acc.n_error) == (4, 25.0, 75.0, 0)


def test_accuracy_uses_given_order_and_subset():
    p = _preds(["a", "b", "c"], [0, 1, 2])
    acc = accuracy(p, ["c", "a"], [2, 3])
    assert acc.n == 2 and acc.top1 == 50.0


def test_error_rows_count_as_misses_and_are_reported():
    p = _preds(["a", "b"], [0, 1], status=["ok", "error"])
    acc = accuracy(p, ["a", "b"], [0, 1])
    assert acc.top1 == 50.0 and acc.top5 == 50.0 and acc.n_error == 1


def test_missing_sample_is_an_error_naming_it():
    p = _preds(["a"], [0])
    with pytest.raises(ValueError, match="no prediction.*'zz'"):
        accuracy(p, ["a", "zz"], [0, 0], source="x.parquet")


def test_label_outside_classes_is_an_error():
    p = _preds(["a"], [0], k=6)
    with pytest.raises(ValueError, match="label 6 of sample 'a' is outside the model's 6 classes"):
        accuracy(p, ["a"], [6])


def test_duplicate_prediction_rows_are_an_error():
    p = _preds(["a", "a"], [0, 0])
    with pytest.raises(ValueError, match="'a' appears more than once"):
        accuracy(p, ["a"], [0])


def test_empty_set_gives_nan():
    acc = accuracy(_preds(["a"], [0]), [], [])
    assert acc.n == 0 and np.isnan(acc.top1)


def test_hits_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        hits(np.zeros((3, 5)), np.zeros(2))


def test_original_set_skips_unreadable_and_cleaned_set_skips_placeholders():
    m = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [0, 1, 2], "status": ["ok", "error", "ok"]})
    s = original_set(m, name="val", split="val")
    assert list(s.sample_ids) == ["a", "c"] and list(s.labels) == [0, 2]
    c = pd.DataFrame({"sample_id": ["a", "__placeholder__/n1.JPEG"], "label": [3, 1], "action": ["fix", "placeholder"]})
    s = cleaned_set(c, name="val_clean", split="val")
    assert list(s.sample_ids) == ["a"] and list(s.labels) == [3]


def test_sets_reject_missing_columns_and_duplicates():
    with pytest.raises(ValueError, match="missing column.*status"):
        original_set(pd.DataFrame({"sample_id": ["a"], "label": [0]}), name="v", split="v", source="m.parquet")
    with pytest.raises(ValueError, match="'a' appears more than once"):
        cleaned_set(pd.DataFrame({"sample_id": ["a", "a"], "label": [0, 0], "action": ["keep", "keep"]}), name="v", split="v")


def test_round_paths():
    r1, r3 = RoundPaths(1), RoundPaths(3)
    assert r1.clean("val") == Path("data/clean/val.parquet")
    assert r1.metric("table1.json") == Path("metrics/table1.json")
    assert r3.clean("val") == Path("data/rounds/3/clean/val.parquet")
    assert r3.predictions("val", "m") == Path("data/rounds/3/predictions/val/m.parquet")
    assert r3.metric("table2.json") == Path("metrics/rounds/3/table2.json")
    assert r3.manifest("val") == Path("data/manifests/val.parquet")
    assert r1.input("train") == Path("data/manifests/train.parquet")
    assert r3.input("train") == Path("data/rounds/2/clean/train.parquet")
    assert RoundPaths(2).input("train") == Path("data/clean/train.parquet")
    assert r1.retrain_cache == r3.retrain_cache
    with pytest.raises(ValueError, match="round must be an integer >= 1, got 0"):
        RoundPaths(0)


def test_symbols():
    assert [symbol(s) for s in ("val", "val_clean", "v2", "v2_clean", "train", "other_clean")] == ["V", "V_c", "V2", "V2_c", "T", "other_c"]
