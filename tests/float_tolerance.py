"""What "decisions identical up to float tolerance" means, as a check (issue 8).

Two runs of the cleanup whose probabilities differ by at most ``tol`` per entry
(a GPU and the CPU, float16 and float32, bf16 autocast and float32) may decide a
sample differently only where one of the comparisons the rules make is within
reach of ``tol``. For each model, a sample's evidence (cleanlab flag,
candidate, top-5 miss) can flip only when:

* a sample of its given label's confident-joint row changed cell through a near
  tie (a probability within ``2 tol`` of a class threshold, or two classes above
  threshold within ``2 tol``): one flip changes the number cleanlab prunes from
  that row, so every sample of the row may move;
* in a row whose membership did not change, it crossed cleanlab's cut in a
  column ``j`` (cleanlab flags the ``n_j`` largest margins ``p_j - p_k`` of each
  row) with its margin within ``4 tol`` of the margin at the cut;
* its two largest probabilities tie within ``2 tol`` (the argmax), or its two
  most likely other classes do (the candidate);
* its label's probability is within ``2 tol`` of the 5th or 6th largest (top-5).

A decision may also change with unchanged evidence when two candidates tie in
count and the rules break the tie by probability. :func:`unexplained` returns the
samples whose decision changed for none of these reasons: it must be empty.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def confident_joint_cells(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's confident-joint column (-1: not counted) and the per-class thresholds, as cleanlab counts them.

    cleanlab's ``compute_confident_joint``: with its thresholds ``t_j`` (mean ``p_j`` over the samples labelled
    ``j``), a sample is counted in row ``label`` and column: the one class with ``p_j >= t_j - 1e-6``, or its argmax
    when several are. Checked against cleanlab's own (uncalibrated) matrix, so a change of cleanlab's rule is noticed.
    """
    from cleanlab.count import compute_confident_joint, get_confident_thresholds

    k = probs.shape[1]
    t = np.asarray(get_confident_thresholds(labels, probs))
    above = probs >= t - 1e-6
    n_above = above.sum(axis=1)
    cells = np.where(n_above > 1, probs.argmax(axis=1), np.where(n_above == 1, above.argmax(axis=1), -1))
    ours = np.zeros((k, k), np.int64)
    np.add.at(ours, (labels[cells >= 0], cells[cells >= 0]), 1)
    np.fill_diagonal(ours, ours.diagonal().clip(min=1))
    theirs = compute_confident_joint(labels, probs, calibrate=False)
    assert np.array_equal(ours, theirs), "cleanlab's confident joint is no longer counted as this checker assumes"
    return cells, t


def _top_two_gap(p: np.ndarray) -> float:
    top = np.partition(p, -2)[-2:]
    return float(top[1] - top[0])


def _explained_rows(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(explained, same)`` per row (given label): its confident-joint membership changed through near ties only;
    its membership did not change at all."""
    (ca, t), (cb, _) = confident_joint_cells(labels, probs_a), confident_joint_cells(labels, probs_b)
    flips = np.flatnonzero(ca != cb)
    near = np.zeros(len(flips), bool)
    for n, s in enumerate(flips):
        cols = [c for c in (ca[s], cb[s]) if c >= 0]
        above = probs_a[s] >= t - 2 * tol  # classes that may be above their threshold in either run
        crossing = bool((np.abs(probs_a[s] - t) <= 2 * tol).any())  # a threshold moves by <= tol too
        swap = len(cols) == 2 and abs(probs_a[s, cols[0]] - probs_a[s, cols[1]]) <= 2 * tol
        near[n] = crossing or swap or (above.sum() > 1 and _top_two_gap(probs_a[s]) <= 2 * tol)
    k = probs_a.shape[1]
    rows = np.zeros(k, bool)
    rows[labels[flips]] = True
    rows[labels[flips[~near]]] = False  # a real membership change explains nothing in its row
    same = np.ones(k, bool)
    same[labels[flips]] = False
    return rows, same


def _prune_counts(labels: np.ndarray, probs: np.ndarray, frac_noise: float) -> np.ndarray:
    """cleanlab's ``prune_count_matrix``: entry ``[j, k]`` is how many samples labelled ``k`` it flags by margin
    ``p_j - p_k`` (``find_label_issues(filter_by="prune_by_noise_rate")`` with its default ``min_examples_per_class``)."""
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import _keep_at_least_n_per_class

    return _keep_at_least_n_per_class(prune_count_matrix=compute_confident_joint(labels, probs).T, n=1,
                                      frac_noise=frac_noise)


def _cut_flips(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, flag_a: np.ndarray, flag_b: np.ndarray,
               same_rows: np.ndarray, tol: float, frac_noise: float) -> np.ndarray:
    """Flag flips at cleanlab's cut: in a row whose counts did not change, every column where the sample crossed
    the cut (top ``n_j`` margins ``p_j - p_k``) has its margin within ``4 tol`` of the margin at the cut."""
    pcm = _prune_counts(labels, probs_a, frac_noise)
    near = np.zeros(len(labels), bool)
    flips = flag_a != flag_b
    for k in np.unique(labels[flips]):
        if not same_rows[k]:
            continue
        rows = np.flatnonzero(labels == k)
        union = np.zeros(len(rows), bool)
        ok = np.ones(len(rows), bool)
        crossed_any = np.zeros(len(rows), bool)
        for j in np.flatnonzero(pcm[:, k]):
            if j == k:
                continue
            n = int(pcm[j, k])
            ma, mb = probs_a[rows, j] - probs_a[rows, k], probs_b[rows, j] - probs_b[rows, k]
            top_a = np.zeros(len(rows), bool)
            top_a[np.argsort(-ma)[:n]] = True
            top_b = np.zeros(len(rows), bool)
            top_b[np.argsort(-mb)[:n]] = True
            union |= top_a
            ms = -np.sort(-ma)
            crossed = top_a != top_b
            cut = np.where(top_a, ms[n] if n < len(ms) else -np.inf, ms[n - 1])
            ok &= ~crossed | (np.abs(ma - cut) <= 4 * tol)
            crossed_any |= crossed
        assert not (flag_a[rows] & ~union).any(), "cleanlab no longer flags by these cuts"
        near[rows] = flips[rows] & crossed_any & ok
    return near


def evidence_changes(labels, probs_a: np.ndarray, probs_b: np.ndarray, *, tol: float,
                     frac_noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(changed, explained)``: samples whose evidence from this model differs, and which of those a near tie explains."""
    from imagenet_clean.cleanup.confident import model_evidence

    labels = np.asarray(labels, np.int64)
    n, k = probs_a.shape
    ea, eb = model_evidence(labels, probs_a, frac_noise=frac_noise), model_evidence(labels, probs_b, frac_noise=frac_noise)
    changed = (ea.flagged != eb.flagged) | (ea.candidates != eb.candidates) | (ea.top5_miss != eb.top5_miss)
    rows, same = _explained_rows(labels, probs_a, probs_b, tol)
    near = rows[labels] | _cut_flips(labels, probs_a, probs_b, ea.flagged, eb.flagged, same, tol, frac_noise)
    top = -np.sort(-probs_a, axis=1)
    near |= (top[:, 0] - top[:, 1]) <= 2 * tol  # the argmax (cleanlab keeps a sample whose argmax is its label)
    others = probs_a.copy()
    others[np.arange(n), labels] = -1
    top_o = -np.sort(-others, axis=1)
    near |= (top_o[:, 0] - top_o[:, 1]) <= 2 * tol  # the candidate: the most likely other class
    if k > 5:
        p_label = probs_a[np.arange(n), labels]
        near |= (np.abs(p_label - top[:, 4]) <= 2 * tol) | (np.abs(p_label - top[:, 5]) <= 2 * tol)
    return changed, changed & near


def _candidate_count_tie(cands: list) -> bool:
    counts = pd.Series([c for c in cands if c >= 0]).value_counts()
    return len(counts) > 1 and counts.iloc[0] == counts.iloc[1]


def unexplained(labels, probs_a: list[np.ndarray], probs_b: list[np.ndarray], decisions_a: pd.DataFrame,
                decisions_b: pd.DataFrame, *, tol: float) -> list[int]:
    """Rows whose action or new label differ between the runs although no comparison was within ``tol``.

    Args:
        labels: (N,) given labels.
        probs_a: Per model, (N, K) probabilities of run A; ``probs_b`` the same for run B.
        decisions_a: ``clean_arrays`` decisions of run A (``action``, ``new_label``, ``candidates``);
            ``decisions_b`` of run B.
        tol: The largest ``|p_a - p_b|`` between the runs.
    """
    labels = np.asarray(labels, np.int64)
    differ = ((decisions_a["action"].to_numpy() != decisions_b["action"].to_numpy())
              | (decisions_a["new_label"].to_numpy() != decisions_b["new_label"].to_numpy()))
    changed = np.zeros(len(labels), bool)  # some model's evidence differs
    unexplained_change = np.zeros(len(labels), bool)  # ... with no near tie in that model
    for pa, pb in zip(probs_a, probs_b):
        c, e = evidence_changes(labels, pa, pb, tol=tol)
        changed |= c
        unexplained_change |= c & ~e
    ties = np.array([_candidate_count_tie(list(c)) for c in decisions_a["candidates"]], bool)
    ok = ~unexplained_change & (changed | ties)
    return np.flatnonzero(differ & ~ok).tolist()
