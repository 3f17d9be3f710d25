"""Accuracy of prediction files over original and cleaned evaluation sets; the round file layout."""

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.evaluate.accuracy import accuracy, cleaned_set, hits, original_set, ranked_topk, symbol
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


def test_symbols():
    assert [symbol(s) for s in ("val", "val_clean", "v2", "v2_clean", "train", "other_clean")] == ["V", "V_c", "V2", "V2_c", "T", "other_c"]


# ---------------------------------------------------------------- merge-aware scoring and class subsets

def _probs(rows):
    """(N, 6) probabilities with each row's classes ranked in the given order (best first)."""
    probs = np.full((len(rows), 6), 0.001, np.float32)
    for i, ranked in enumerate(rows):
        for j, c in enumerate(ranked):
            probs[i, c] = 0.5 - 0.08 * j
    return probs


def _from_probs(ids, probs):
    from imagenet_clean.predictions import top5_of

    n = len(ids)
    return Predictions(np.asarray(ids, dtype=object), probs, top5_of(probs).astype(np.int32), np.full(n, "ok", object),
                       np.full(n, "", object), np.full(n, -1), {})


# class 1 ("African elephant") is merged into class 2 ("tusker"), as paper table A.1 merges synonyms
MERGES = np.array([0, 2, 2, 3, 4, 5])


def test_a_correct_prediction_of_a_merged_class_counts_as_correct_on_the_merged_labels():
    probs = _probs([[1, 3, 4, 5, 0], [0, 3, 4, 5, 1], [3, 4, 5, 0, 1]])
    p = _from_probs(["a", "b", "c"], probs)
    labels = [2, 2, 2]  # all three images are tusker after the merge (the first was labelled African elephant)
    plain = accuracy(p, ["a", "b", "c"], labels)
    merged = accuracy(p, ["a", "b", "c"], labels, merges=MERGES)
    # a predicts the merged-away class first, b and c fifth: wrong against "tusker" unless mapped through the merge
    assert (plain.top1, plain.top5) == (0.0, 0.0)
    assert (merged.top1, merged.top5) == (pytest.approx(100 / 3, abs=1e-3), 100.0)
    # the original labels (no merge) are scored as before
    assert accuracy(p, ["a"], [1]).top1 == 100.0


def test_top5_counts_a_merged_class_once_and_takes_the_next_class():
    # ranked 1, 2, 0, 3, 4, 5: after the merge 1 and 2 are one class, so the 5th distinct class is 5
    probs = _probs([[1, 2, 0, 3, 4, 5]])
    assert ranked_topk(probs, merges=MERGES).tolist() == [[2, 0, 3, 4, 5]]
    assert ranked_topk(probs).tolist() == [[1, 2, 0, 3, 4]]
    p = _from_probs(["a"], probs)
    assert accuracy(p, ["a"], [5]).top5 == 0.0 and accuracy(p, ["a"], [5], merges=MERGES).top5 == 100.0
    # fewer distinct classes than k: padded with -1, never a repeated class
    assert ranked_topk(np.array([[0.1, 0.5, 0.4]]), merges=np.array([0, 2, 2])).tolist() == [[2, 0, -1, -1, -1]]


def test_cleaned_sets_read_the_merge_table_the_clean_stage_wrote(tmp_path):
    from imagenet_clean.evaluate.accuracy import merge_lookup
    from imagenet_clean.io import write_table

    (tmp_path / "classes.tsv").write_text("".join(f"n0000000{i}\tc{i}\n" for i in range(3)))
    (tmp_path / "merges.csv").write_text("merged_wnid,target_wnid\nn00000001,n00000002\n")
    clean = pd.DataFrame({"sample_id": ["a"], "label": [2], "action": ["merge"]})
    for spec, want in (("merges.csv", [0, 2, 2]), ("none", None)):
        write_table(tmp_path / "clean.parquet", clean, metadata={"merges": spec, "classes": "classes.tsv"})
        got = merge_lookup(tmp_path / "clean.parquet", workdir=tmp_path)
        assert (got if got is None else got.tolist()) == want


def test_imagenet_r_is_scored_among_its_200_classes_only():
    from imagenet_clean.data.imagenet_r import load_subset

    sub = load_subset("imagenet_r")
    outside = int(np.setdiff1d(np.arange(1000), sub.indices)[0])
    label = int(sub.indices[0])
    probs = np.full((1, 1000), 1e-4, np.float32)
    probs[0, outside] = 0.6  # a retrained 1000-class model's best class is not an ImageNet-R class
    probs[0, label] = 0.3
    p = _from_probs(["r"], probs)
    assert accuracy(p, ["r"], [label]).top1 == 0.0
    assert accuracy(p, ["r"], [label], subset="imagenet_r").top1 == 100.0
    assert set(ranked_topk(probs, subset="imagenet_r")[0]) <= set(sub.indices.tolist())
    assert original_set(pd.DataFrame({"sample_id": ["r"], "label": [label], "status": ["ok"]}), name="imagenet_r",
                        split="imagenet_r").subset == "imagenet_r"
