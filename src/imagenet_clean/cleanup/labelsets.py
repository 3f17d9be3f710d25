"""Label sets (ReaL-style): images that show several classes get the set instead of a removal or one label.

The evidence is the ``windows`` stage's file (:mod:`imagenet_clean.models.windows`):
every model's top classes in each window of a grid over the image. A model
*votes* for class ``c`` in a window when its probability of ``c`` (summed over
the classes merged with it) is at least ``min_prob``; ``c`` is *found* in the
image when ``min_models`` models vote for it in one window. Once two classes
are found, classes found at the looser ``extend_prob`` join the set
(:func:`extend_sets`). An image with two
or more classes found (merged classes counting once), whose whole image the
models are unsure of (their mean top-class probability in the prediction files
is below ``max_confidence``: a single object read window by window can look
like two, but its whole image is read with confidence), gets the action
``relabel_set``, its ``labels`` the classes found, strongest first (most votes
in a window, then the larger summed probability, then the smaller index), and
``new_label`` the first of them. The rule overrides keep, fix and every removal
rule except ``unreadable``; a reviewer's verdict, applied after it, still wins.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .rules import ACTION_SET, RULE_LABEL_SET, RULE_UNREADABLE


def found_classes(classes: np.ndarray, probs: np.ndarray, *, min_prob: float, min_models: float,
                  merge_lut: np.ndarray | None = None) -> list[list[int]]:
    """The classes found in each image, strongest first.

    Args:
        classes: int (N, M, W, T) top classes per image, model, window (-1: none).
        probs: float (N, M, W, T) their probabilities.
        min_prob: A model's vote needs this probability (merged classes summed).
        min_models: Votes needed in one window (a real number of models; ``count >= min_models``).
        merge_lut: ``class -> class after merges``; None keeps classes as they are.

    Returns:
        Per image, the found classes (after merges), strongest first.
    """
    classes = np.asarray(classes)
    probs = np.asarray(probs, np.float64)
    if classes.shape != probs.shape or classes.ndim != 4:
        raise ValueError(f"classes {classes.shape} and probs {probs.shape} must be the same (N, M, W, T) shape")
    n = classes.shape[0]
    valid = classes >= 0
    c = np.where(valid, classes, 0).astype(np.int64)
    if merge_lut is not None:
        c = np.asarray(merge_lut, np.int64)[c]
    # a model's merged probability of each of its top classes: sum over the entries of the same merged class
    same = (c[..., :, None] == c[..., None, :]) & valid[..., None, :]
    merged = np.where(valid, (probs[..., None, :] * same).sum(-1), 0.0)
    first = np.ones_like(valid)  # count each merged class once per model and window
    for t in range(1, c.shape[-1]):
        first[..., t] = ~(same[..., t, :t].any(-1))
    vote = valid & first & (merged >= min_prob)
    out: list[list[int]] = []
    for i in range(n):
        m_idx, w_idx, t_idx = np.nonzero(vote[i])
        if len(m_idx) == 0:
            out.append([])
            continue
        cls = c[i, m_idx, w_idx, t_idx]
        best: dict[int, tuple[int, float]] = {}
        for w in np.unique(w_idx):
            sel = w_idx == w
            for k in np.unique(cls[sel]):
                hit = sel & (cls == k)
                votes, mass = int(hit.sum()), float(merged[i, m_idx[hit], w_idx[hit], t_idx[hit]].sum())
                if votes >= min_models and (votes, mass) > best.get(int(k), (0, 0.0)):
                    best[int(k)] = (votes, mass)
        out.append([k for k, _ in sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))])
    return out


def extend_sets(strong: list[list[int]], weak: list[list[int]]) -> list[list[int]]:
    """Sets made at the strict level (two or more classes in ``strong``) gain the classes found at the looser one.

    A hysteresis: a set needs two classes found at ``min_prob``; once an image has
    one, every class found at ``extend_prob`` (same number of models) joins it after
    them, in the looser level's order. Images with fewer than two strong classes keep
    what ``strong`` found (no set).
    """
    return [s + [c for c in w if c not in s] if len(s) >= 2 else s for s, w in zip(strong, weak)]


def apply_label_sets(decisions: pd.DataFrame, evidence: pd.DataFrame, sets: list[list[int]], *,
                     eligible: np.ndarray | None = None, source: str = "<windows>") -> pd.DataFrame:
    """Give the rows whose evidence finds two or more classes the action ``relabel_set``.

    Args:
        decisions: The full decisions table (before the reviewers' verdicts).
        evidence: The windows file's ``sample_id`` column (one row per ``sets`` entry).
        sets: :func:`found_classes` per evidence row.
        eligible: Per decisions row, whether it may get a set (the whole-image gate:
            :func:`ambiguous`); None: every row.
        source: The windows file's name, for the messages.

    Returns:
        A copy with a ``labels`` column (the set on ``relabel_set`` rows, ``[]``
        elsewhere); those rows get ``new_label`` = the first class of the set and
        the rule ``label_set`` appended.

    Raises:
        ValueError: the evidence lacks a sample of the decisions (it is stale).
    """
    if len(evidence) != len(sets):
        raise ValueError(f"{source}: {len(evidence)} rows but {len(sets)} sets")
    pos = pd.Index(evidence["sample_id"]).get_indexer(decisions["sample_id"])
    if (pos < 0).any():
        gone = decisions["sample_id"].to_numpy()[pos < 0]
        raise ValueError(f"{source} lacks sample {gone[0]!r} ({len(gone)} in all): it is stale; "
                         "rerun `imagenet-clean windows` for this split")
    out = decisions.copy()
    action = out["action"].to_numpy(dtype=object).copy()
    new_label = out["new_label"].to_numpy(np.int64).copy()
    rules = [list(r) for r in out["rules"]]
    labels: list[list[int]] = [[] for _ in range(len(out))]
    for i, p in enumerate(pos.tolist()):
        found = sets[p]
        if len(found) < 2 or RULE_UNREADABLE in rules[i] or (eligible is not None and not eligible[i]):
            continue
        action[i], new_label[i], labels[i] = ACTION_SET, found[0], list(found)
        rules[i].append(RULE_LABEL_SET)
    out["action"] = action
    out["new_label"] = new_label
    out["rules"] = pd.Series(rules, dtype=object, index=out.index)
    out["labels"] = pd.Series(labels, dtype=object, index=out.index)
    return out


def ambiguous(top_probs: np.ndarray, *, max_confidence: float) -> np.ndarray:
    """Rows whose whole image no model ensemble reads as one class: mean over models of the top probability < ``max_confidence``.

    Args:
        top_probs: (M, N) each model's top-class probability (merged classes summed).
        max_confidence: The gate; 1 lets every row through.
    """
    if max_confidence >= 1:
        return np.ones(np.asarray(top_probs).shape[-1], bool)
    return np.asarray(top_probs, np.float64).mean(axis=0) < max_confidence


def read_windows(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The windows file of a split: ``(rows: sample_id, status, reason; classes (N, M, W, T); probs)``."""
    from ..io import read_metadata, read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no window evidence; run `imagenet-clean windows --split {path.stem}` "
                                "(label_sets.enabled is true)")
    meta = read_metadata(path)
    if meta.get("skipped") == "true" or "shape" not in meta:
        raise ValueError(f"{path}: written with label_sets.enabled false; rerun `imagenet-clean windows --split {path.stem}`")
    t = read_table(path)
    shape = tuple(int(v) for v in meta["shape"].split(","))
    n = len(t)
    classes = np.stack(t["classes"].to_numpy()).reshape(n, *shape) if n else np.zeros((0, *shape), np.int16)
    probs = np.stack(t["probs"].to_numpy()).reshape(n, *shape) if n else np.zeros((0, *shape), np.float32)
    return t[["sample_id", "status", "reason"]], classes.astype(np.int16), probs.astype(np.float32)
