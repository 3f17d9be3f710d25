"""Candidate synonym classes: pairs that every model confuses in both directions, for a person to confirm.

The paper's 21 merges (table A.1) were found by hand. Two classes that name the
same thing leave a mark in every model: confident learning counts many samples
given one of them as confidently belonging to the other, in *both* directions
(a one-way confusion is a label-noise pattern, e.g. flips of 7 into 1, not a
synonym). A pair's score is the geometric mean of the two directions, in the
model that confuses the pair least:

``score(a, b) = min over models m of sqrt(rate_m[a -> b] * rate_m[b -> a])``

where ``rate_m[a -> b]`` is the share of the samples labelled ``a`` that
cleanlab's confident joint (``cleanlab.count.compute_confident_joint``, not
calibrated) of model ``m`` puts in class ``b``. A direction no model confuses
scores 0. On the embedded default the synonym pair (digit one and its variant)
scores 0.22 and the digit pairs that injected flips confuse both ways (4 and 9,
5 and 6, ...) score 0.07 and below. Fixes that the cleanup itself
made between the two classes, both ways, are reported beside the score as
further evidence. Suggestions are never applied: a person confirms a pair into
the merge table (``dataset.merges``).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..classes import ClassList


def confident_counts(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Cleanlab's confident joint (K x K counts, rows = given label, columns = the class a sample confidently is).

    Args:
        labels: Given labels, int (N,), each in ``0..K-1``.
        pred_probs: Out-of-sample probabilities (N, K).

    Raises:
        ValueError: the shapes disagree or a label is outside ``0..K-1``.
    """
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or len(labels) != len(pred_probs):
        raise ValueError(f"labels {labels.shape} and pred_probs {pred_probs.shape} do not describe the same N samples")
    k = pred_probs.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        bad = labels[(labels < 0) | (labels >= k)][0]
        raise ValueError(f"label {int(bad)} is outside 0..{k - 1} (pred_probs has K = {k} columns)")
    if not len(labels):
        return np.zeros((k, k), np.int64)
    from cleanlab.count import compute_confident_joint

    return np.asarray(compute_confident_joint(labels, pred_probs, calibrate=False), np.int64)


def confusion_rates(counts: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """``rate[a, b]``: the share of the samples labelled ``a`` confidently counted as ``b`` (0 for an empty class)."""
    label_counts = np.asarray(label_counts, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(label_counts[:, None] > 0, counts / np.maximum(label_counts[:, None], 1), 0.0)
    np.fill_diagonal(rates, 0.0)
    return rates


def suggest_merges(rates_by_model: Mapping[str, np.ndarray], classes: ClassList, *, min_rate: float,
                   fixes: np.ndarray | None = None, merged: Iterable[tuple[str, str]] = (),
                   max_pairs: int = 20) -> list[dict]:
    """Class pairs that every model confuses both ways, scored at least ``min_rate``, best first.

    Args:
        rates_by_model: Model name -> K x K rates (:func:`confusion_rates`).
        classes: The class list (ids and names for the report).
        min_rate: A pair is suggested when its score (the smallest, over the
            models, geometric mean of the two directions' rates) is at least this.
        fixes: K x K counts of the cleanup's fixes, ``fixes[a, b]`` from ``a`` to
            ``b`` (reported, and the tie-break: more fixes both ways first).
        merged: Pairs of class ids already in the merge table (marked, not dropped).
        max_pairs: At most this many pairs.

    Returns:
        One dict per pair: ``a``, ``b`` (class ids, ``a`` the lower index),
        ``a_name``, ``b_name``, ``score``, ``already_merged``, ``fixes``
        (``a_to_b``, ``b_to_a``) and ``models`` (per model, both rates).

    Raises:
        ValueError: no models, rates of the wrong shape, or ``min_rate`` outside (0, 1].
    """
    if not rates_by_model:
        raise ValueError("no models: merge suggestions need the rates of at least one model")
    if not 0.0 < min_rate <= 1.0:
        raise ValueError(f"min_rate {min_rate!r} is outside (0, 1]")
    k = len(classes)
    for name, r in rates_by_model.items():
        if np.shape(r) != (k, k):
            raise ValueError(f"model {name!r}: rates of shape {np.shape(r)}, expected ({k}, {k}) for {k} classes")
    stack = np.stack([np.asarray(r, np.float64) for r in rates_by_model.values()])
    both = np.sqrt(stack * stack.transpose(0, 2, 1)).min(axis=0)  # both directions, the model that confuses least
    fixes = np.zeros((k, k), np.int64) if fixes is None else np.asarray(fixes, np.int64)
    merged_set = {frozenset(p) for p in merged}
    a_idx, b_idx = np.triu_indices(k, 1)
    keep = both[a_idx, b_idx] >= min_rate
    a_idx, b_idx = a_idx[keep], b_idx[keep]
    swaps = np.minimum(fixes[a_idx, b_idx], fixes[b_idx, a_idx])
    order = np.lexsort((a_idx, -swaps, -both[a_idx, b_idx]))[:max_pairs]
    out = []
    for i in order:
        a, b = int(a_idx[i]), int(b_idx[i])
        out.append({
            "a": classes.wnids[a], "b": classes.wnids[b],
            "a_name": classes.names[a], "b_name": classes.names[b],
            "score": round(float(both[a, b]), 4),
            "already_merged": frozenset((classes.wnids[a], classes.wnids[b])) in merged_set,
            "fixes": {"a_to_b": int(fixes[a, b]), "b_to_a": int(fixes[b, a])},
            "models": {m: {"a_to_b": round(float(r[a, b]), 4), "b_to_a": round(float(r[b, a]), 4)}
                       for m, r in rates_by_model.items()},
        })
    return out


def fix_counts(old_labels: np.ndarray, new_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K counts of fixes from ``old_labels`` to ``new_labels`` (pairs of equal labels count nothing)."""
    old = np.asarray(old_labels, np.int64)
    new = np.asarray(new_labels, np.int64)
    moved = (old != new) & (old >= 0) & (new >= 0)
    out = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(out, (old[moved], new[moved]), 1)
    return out
