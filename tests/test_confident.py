"""Confident learning per model: cleanlab's flags, candidates, top-5 misses, input checks."""
import numpy as np
import pytest
from cleanlab.filter import find_label_issues

from imagenet_clean.cleanup import confident
from imagenet_clean.cleanup.confident import (
    candidate_labels,
    find_candidates,
    label_in_topk,
    merge_candidates,
    model_evidence,
    rank_issues,
    validate_pred_probs,
)
from imagenet_clean.cleanup.rules import decide
from imagenet_clean.config import Thresholds
from imagenet_clean.predictions import top5_of


def noisy(seed=0, n=300, k=6, flip=0.15):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += 3.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    labels = true.copy()
    flip_idx = rng.random(n) < flip
    labels[flip_idx] = (labels[flip_idx] + rng.integers(1, k, flip_idx.sum())) % k
    return labels, p.astype(np.float32), true


@pytest.mark.parametrize("fn", [1.0, 0.5])
def test_flags_equal_cleanlab_and_candidates_are_best_other_class(fn):
    labels, p, _ = noisy()
    flagged, cands = find_candidates(labels, p, frac_noise=fn)
    ref = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=fn, n_jobs=1)
    assert np.array_equal(flagged, ref)
    q = p.copy()
    q[np.arange(len(labels)), labels] = -1
    assert np.array_equal(cands[flagged], q.argmax(axis=1)[flagged])
    assert (cands[~flagged] == -1).all()
    assert (cands[flagged] != labels[flagged]).all()


def small_cells(seed=0):
    """A split like the embedded V2: 10 classes of 30 images, 18 label errors spread thinly over the
    (label, true class) cells of the confident joint, so that most cells hold one or two of them."""
    rng = np.random.default_rng(seed)
    k, n = 10, 300
    true = np.repeat(np.arange(k), n // k)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += 4.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    labels = true.copy()
    wrong = rng.choice(n, 18, replace=False)
    labels[wrong] = (true[wrong] + rng.integers(1, k, len(wrong))) % k
    return labels, p.astype(np.float32), true


def test_fn_scope_cell_is_cleanlab_and_drops_most_flags_of_small_cells():
    labels, p, true = small_cells()
    every = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1)
    cell, _ = find_candidates(labels, p, frac_noise=0.9)
    assert np.array_equal(cell, find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=0.9, n_jobs=1))
    # floor(0.9 * count) per cell: a cell of one keeps nothing, so far fewer than 90 % of the flags survive
    assert every.sum() >= 15 and cell.sum() < 0.7 * every.sum()
    assert (cell & (labels != true)).sum() < (every & (labels != true)).sum()


def test_fn_scope_split_keeps_that_fraction_of_the_flags_least_confident_first():
    labels, p, true = small_cells()
    every = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1)
    flagged, cands = find_candidates(labels, p, frac_noise=0.9, fn_scope="split")
    assert flagged.sum() == int(np.floor(0.9 * every.sum() + 0.5))
    assert not (flagged & ~every).any()  # a subset of cleanlab's flags at frac_noise 1
    self_conf = p[np.arange(len(labels)), labels]
    assert self_conf[flagged].max() <= self_conf[every & ~flagged].min()  # the dropped ones are the most confident
    assert (cands[flagged] >= 0).all() and (cands[~flagged] == -1).all()
    # fn 1 is cleanlab's frac_noise 1 in either scope
    assert np.array_equal(find_candidates(labels, p, fn_scope="split")[0], every)


def test_fn_scope_split_with_no_flags_and_a_bad_scope():
    labels = np.repeat(np.arange(3), 10)
    p = np.full((30, 3), 0.05, np.float32)
    p[np.arange(30), labels] = 0.9
    assert not find_candidates(labels, p, frac_noise=0.9, fn_scope="split")[0].any()
    with pytest.raises(ValueError, match="fn_scope must be one of 'cell', 'split', got 'total'"):
        model_evidence(labels, p, frac_noise=0.9, fn_scope="total")


def test_flags_find_the_injected_errors():
    labels, p, true = noisy(seed=1, n=600)
    flagged, cands = find_candidates(labels, p)
    wrong = labels != true
    assert flagged[wrong].mean() > 0.7
    assert (cands[flagged & wrong] == true[flagged & wrong]).mean() > 0.7


def test_one_model_h1_1_fixes_or_removes_exactly_the_cleanlab_flags():
    labels, p, _ = noisy(seed=2)
    ev = model_evidence(labels, p)
    d = decide(labels, ev.flagged[None], ev.candidates[None], ev.cand_probs[None], ev.top5_miss[None],
               n_models=1, thresholds=Thresholds(h1=1, h2=3, h3=2))
    ref = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1)
    assert np.array_equal((d["action"] == "fix").to_numpy(), ref)
    assert np.array_equal(d["n_flagged"].to_numpy() == 1, ref)


def test_top5_miss_matches_the_prediction_contract():
    labels, p, _ = noisy(seed=3, k=12)
    p[0, :] = 1.0 / 12  # all tied: top-5 is classes 0..4
    labels[0] = 7
    ref = ~(top5_of(p) == labels[:, None]).any(axis=1)
    assert np.array_equal(~label_in_topk(labels, p), ref)
    ev = model_evidence(labels, p)
    ev_file = model_evidence(labels, p, top5=top5_of(p))
    assert np.array_equal(ev.top5_miss, ev_file.top5_miss)
    assert ev.top5_miss[0]


def test_merged_classes_rank_as_one_class_in_the_top_k():
    # class 3 is merged into 1: a model split between the synonyms (0.3 + 0.3) ranks their class first
    p = np.array([[0.4, 0.3, 0.0, 0.3],    # label 1: plain top-1 is class 0; merged 1+3 = 0.6 wins
                  [0.4, 0.3, 0.0, 0.3],    # label 3: the merged class's own label hits too
                  [0.5, 0.2, 0.1, 0.2],    # label 1: 0.4 < 0.5, still a miss
                  [0.1, 0.1, 0.7, 0.1]],   # label 2: unaffected
                 np.float32)
    labels = np.array([1, 3, 1, 2])
    lut = np.array([0, 1, 2, 1])
    assert label_in_topk(labels, p, k=1).tolist() == [False, False, False, True]
    assert label_in_topk(labels, p, k=1, merge_lut=lut).tolist() == [True, True, False, True]
    assert label_in_topk(labels, p, k=2, merge_lut=lut).tolist() == [True, True, True, True]
    # model_evidence ignores the stored top-5 when merging, and an identity table changes nothing
    ev = model_evidence(labels, p, top5=top5_of(p), topk=1, merge_lut=lut)
    assert ev.top5_miss.tolist() == [False, False, True, False]
    assert np.array_equal(label_in_topk(labels, p, k=2, merge_lut=np.arange(4)), label_in_topk(labels, p, k=2))


def test_a_flag_for_the_labels_merge_partner_proposes_nothing():
    lut = np.array([0, 1, 2, 1])  # class 3 merges into 1
    labels = np.array([1, 3, 0, 0, 2])
    flagged = np.array([True, True, True, True, False])
    cands = np.array([3, 1, 3, 2, 1])
    keep, merged = merge_candidates(labels, flagged, cands, lut)
    # 1 -> 3 and 3 -> 1 change nothing after the merge; 0 -> 3 proposes the merged class 1; 2 -> ... was not flagged
    assert keep.tolist() == [False, False, True, True, False]
    assert merged[keep].tolist() == [1, 2]
    # through model_evidence: the same flags as cleanlab's, less the merge-partner ones
    labels, p, _ = noisy(seed=3, n=400)
    lut = np.array([0, 1, 2, 1, 4, 5])
    plain = model_evidence(labels, p)
    read = model_evidence(labels, p, candidate_lut=lut)
    partner = plain.flagged & (lut[np.maximum(plain.candidates, 0)] == lut[labels])
    assert partner.any()
    assert np.array_equal(read.flagged, plain.flagged & ~partner)
    assert np.array_equal(read.candidates[read.flagged], lut[plain.candidates[read.flagged]])
    assert (read.candidates[~read.flagged] == -1).all() and (read.cand_probs[~read.flagged] == 0).all()
    assert np.array_equal(read.top5_miss, plain.top5_miss)  # the consensus input is merge_lut's, not this one's


def test_merged_top_k_is_the_same_in_chunks(monkeypatch):
    labels, p, _ = noisy(seed=6, n=250)
    lut = np.array([0, 1, 2, 1, 4, 0])
    full = label_in_topk(labels, p, k=1, merge_lut=lut)
    monkeypatch.setattr(confident, "CHUNK_ROWS", 7)
    assert np.array_equal(label_in_topk(labels, p, k=1, merge_lut=lut), full)
    assert not np.array_equal(full, label_in_topk(labels, p, k=1))  # merging changed some verdicts


def test_candidate_tie_takes_smaller_index():
    p = np.array([[0.4, 0.3, 0.3], [0.2, 0.4, 0.4]], np.float32)
    c, cp = candidate_labels(np.array([0, 0]), p)
    assert c.tolist() == [1, 1] and np.allclose(cp, [0.3, 0.4])


def test_chunking_gives_the_same_result(monkeypatch):
    labels, p, _ = noisy(seed=4, n=250)
    full = model_evidence(labels, p)
    monkeypatch.setattr(confident, "CHUNK_ROWS", 7)
    small = model_evidence(labels, p)
    for a in ("flagged", "candidates", "cand_probs", "top5_miss", "label_probs"):
        assert np.array_equal(getattr(full, a), getattr(small, a))


def test_float16_probabilities_pass_validation():
    labels, p, _ = noisy(seed=5, k=1000, n=60)
    validate_pred_probs(p.astype(np.float16))  # sums are within the tolerance


@pytest.mark.filterwarnings("ignore:May not flag")
def test_classes_without_samples_are_passed_through_and_reported():
    labels, p, _ = noisy(seed=6, n=300, k=6)
    labels = np.where(labels == 5, 0, labels)  # class 5 never given
    ev = model_evidence(labels, p)
    assert ev.absent_classes == [5]
    ref = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1)
    assert np.array_equal(ev.flagged, ref)
    assert (ev.candidates[ev.flagged] == 5).any()  # absent class can still be proposed


def test_rank_issues_orders_flagged_samples():
    labels, p, _ = noisy(seed=7)
    flagged, _ = find_candidates(labels, p)
    order = rank_issues(labels, p, flagged)
    assert sorted(order.tolist()) == np.flatnonzero(flagged).tolist()


@pytest.mark.parametrize("mutate,match", [
    (lambda lab, p: p.__setitem__((3, 1), np.nan), "row 3 .*NaN"),
    (lambda lab, p: p.__setitem__((4, 1), -0.2), "row 4 .*negative"),
    (lambda lab, p: p.__setitem__((5, slice(None)), p[5] * 2), "row 5 .*sums to"),
])
def test_bad_probabilities_name_file_model_and_row(mutate, match):
    labels, p, _ = noisy(seed=8, n=20)
    mutate(labels, p)
    with pytest.raises(ValueError, match=f"file preds/m.npy, model 'resnet': {match}"):
        model_evidence(labels, p, source="preds/m.npy", model="resnet")


def test_bad_labels_and_shapes():
    labels, p, _ = noisy(seed=9, n=20)
    bad = labels.copy()
    bad[2] = 6
    with pytest.raises(ValueError, match="label 6 at row 2 is out of range"):
        model_evidence(bad, p, model="m")
    bad[2] = -1
    with pytest.raises(ValueError, match="label -1 at row 2"):
        model_evidence(bad, p)
    with pytest.raises(ValueError, match="19 rows but there are 20 labels"):
        model_evidence(labels, p[:19])
    with pytest.raises(ValueError, match="must be integers"):
        model_evidence(labels + 0.5, p)
    with pytest.raises(ValueError, match="2-D"):
        model_evidence(labels, p[:, 0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        model_evidence(np.zeros(20, int), np.ones((20, 1), np.float32))
    with pytest.raises(ValueError, match="frac_noise"):
        model_evidence(labels, p, frac_noise=0.0)


def test_cleanlab_keeps_no_copy_of_the_matrix_after_the_call():
    """cleanlab leaves the matrix split by class in a module global; the next model's read must not sit beside it."""
    import cleanlab.filter as cl_filter

    labels, p, _ = noisy(seed=11)
    before = find_label_issues(labels, p, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1)
    assert getattr(cl_filter, "pred_probs_by_class", None) is not None  # what bare cleanlab leaves behind
    ev = model_evidence(labels, p)
    assert getattr(cl_filter, "pred_probs_by_class", None) is None
    assert np.array_equal(ev.flagged, before)
