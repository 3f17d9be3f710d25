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
like two, but its whole image is read with confidence), and two of whose
classes are found in windows apart (boxes overlapping by at most ``max_overlap``
IoU, :func:`apart`: a scene's objects sit in different places, the parts of one
object in overlapping windows), gets the action ``relabel_set``, its ``labels`` the classes found, strongest first (most votes
in a window, then the larger summed probability, then the smaller index), and
``new_label`` the first of them. The rule overrides keep, fix and every removal
rule except ``unreadable``; a reviewer's verdict, applied after it, still wins.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .rules import ACTION_SET, RULE_LABEL_SET, RULE_UNREADABLE

FOUND_CHUNK = 4096
"""Images per step of :func:`class_windows` (bounds its (n, M, W, T, T) temporaries)."""


def class_windows(classes: np.ndarray, probs: np.ndarray, *, min_prob: float, min_models: float,
                  merge_lut: np.ndarray | None = None) -> list[dict[int, np.ndarray]]:
    """The classes found in each image, strongest first, with the windows each is found in.

    Args:
        classes: int (N, M, W, T) top classes per image, model, window (-1: none).
        probs: float (N, M, W, T) their probabilities.
        min_prob: A model's vote needs this probability (merged classes summed).
        min_models: Votes needed in one window (a real number of models; ``count >= min_models``).
        merge_lut: ``class -> class after merges``; None keeps classes as they are.

    Returns:
        Per image, ``{class (after merges): sorted window indices where it is found}``, in order of
        strength: most votes in one window, then the larger summed probability there, then the
        smaller class index.
    """
    classes = np.asarray(classes)
    probs = np.asarray(probs, np.float64)
    if classes.shape != probs.shape or classes.ndim != 4:
        raise ValueError(f"classes {classes.shape} and probs {probs.shape} must be the same (N, M, W, T) shape")
    n, _, w, t = classes.shape
    lut = None if merge_lut is None else np.asarray(merge_lut, np.int64)
    hits = [_votes(classes[a:a + FOUND_CHUNK], probs[a:a + FOUND_CHUNK], min_prob=min_prob, merge_lut=lut, offset=a)
            for a in range(0, n, FOUND_CHUNK)] or [(np.zeros(0, np.int64),) * 3 + (np.zeros(0),)]
    img, win, cls = (np.concatenate(v).astype(np.int64) for v in list(zip(*hits))[:3])
    mass = np.concatenate([h[3] for h in hits])
    # votes and summed probability per (image, window, class); found where the votes reach min_models
    k = int(cls.max()) + 1 if len(cls) else 1
    key, inv, votes = np.unique((img * w + win) * k + cls, return_inverse=True, return_counts=True)
    mass = np.bincount(inv.ravel(), weights=mass, minlength=len(key))
    keep = votes >= min_models
    key, votes, mass = key[keep], votes[keep], mass[keep]
    f_img, f_win, f_cls = key // (w * k), key // k % w, key % k
    # each class's strength: its best window (most votes, then most mass)
    o = np.lexsort((f_win, -mass, -votes, f_cls, f_img))
    first = np.ones(len(o), bool)
    first[1:] = (f_img[o][1:] != f_img[o][:-1]) | (f_cls[o][1:] != f_cls[o][:-1])
    b = o[first]
    b = b[np.lexsort((f_cls[b], -mass[b], -votes[b], f_img[b]))]
    out: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    for i, c in zip(f_img[b].tolist(), f_cls[b].tolist()):
        out[i][c] = None
    o = np.lexsort((f_win, f_cls, f_img))
    cuts = np.flatnonzero((np.diff(f_img[o]) != 0) | (np.diff(f_cls[o]) != 0)) + 1
    for group in np.split(o, cuts) if len(o) else []:
        out[int(f_img[group[0]])][int(f_cls[group[0]])] = f_win[group]
    return out


def _votes(classes, probs, *, min_prob: float, merge_lut, offset: int):
    """``(image, window, class, probability)`` of every vote: a model's top class whose probability, summed
    over the entries of the same merged class, reaches ``min_prob`` (each merged class once per model and window)."""
    valid = classes >= 0
    c = np.where(valid, classes, 0).astype(np.int64)
    if merge_lut is not None:
        c = merge_lut[c]
    same = (c[..., :, None] == c[..., None, :]) & valid[..., None, :]
    merged = np.where(valid, (probs[..., None, :] * same).sum(-1), 0.0)
    first = np.ones_like(valid)  # count each merged class once per model and window
    for t in range(1, c.shape[-1]):
        first[..., t] = ~(same[..., t, :t].any(-1))
    i, m, w, t = np.nonzero(valid & first & (merged >= min_prob))
    return i + offset, w, c[i, m, w, t], merged[i, m, w, t]


def found_classes(classes: np.ndarray, probs: np.ndarray, *, min_prob: float, min_models: float,
                  merge_lut: np.ndarray | None = None) -> list[list[int]]:
    """The classes found in each image, strongest first (:func:`class_windows` without the windows)."""
    return [list(f) for f in class_windows(classes, probs, min_prob=min_prob, min_models=min_models, merge_lut=merge_lut)]


def apart(found: list[dict[int, np.ndarray]], sizes: np.ndarray, *, window: float, stride: float,
          max_overlap: float) -> np.ndarray:
    """Per image: two of its classes are found in windows that overlap by at most ``max_overlap`` (IoU).

    A scene's objects sit in different places; a single object read window by window
    (the top of an 8 read as a 0) is read as its parts in windows that overlap the
    whole's. The windows' boxes are the windows stage's (:func:`~..models.windows.window_boxes`)
    on each image's own ``(width, height)``.

    Args:
        found: :func:`class_windows` per image.
        sizes: ``(N, 2)`` image widths and heights.
        window: The grid's window side (fraction of the shorter side).
        stride: The grid's step.
        max_overlap: Largest IoU of two windows that count as apart; 1 or more: every image with two
            classes is apart (no check).

    Returns:
        bool (N,); False for an image with fewer than two classes.
    """
    from ..models.windows import window_boxes

    out = np.array([len(f) >= 2 for f in found], bool)
    if max_overlap >= 1:
        return out
    far_of: dict[tuple[int, int], np.ndarray] = {}
    for i in np.flatnonzero(out).tolist():
        size = (int(sizes[i][0]), int(sizes[i][1]))
        if size not in far_of:
            far_of[size] = window_iou(np.asarray(window_boxes(*size, window=window, stride=stride), np.float64)) <= max_overlap
        far = far_of[size]
        wins = list(found[i].values())
        member = np.zeros((len(wins), far.shape[0]), bool)
        for j, w in enumerate(wins):
            member[j, w] = True
        reach = (member.astype(np.int64) @ far.astype(np.int64) @ member.T.astype(np.int64)) > 0
        np.fill_diagonal(reach, False)
        out[i] = bool(reach.any())
    return out


def window_iou(boxes: np.ndarray) -> np.ndarray:
    """``(W, W)`` intersection over union of ``(W, 4)`` boxes ``left, top, right, bottom``."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    return inter / (area[:, None] + area[None, :] - inter)


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


def read_windows(path: str | Path, *, sample_ids: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The windows file of a split: ``(rows: sample_id, status, reason, width, height; classes (N, M, W, T); probs)``.

    ``sample_ids``: read only those rows (a parquet filter: the review page reads one image's row).
    """
    from ..io import read_metadata, read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no window evidence; run `imagenet-clean windows --split {path.stem}` "
                                "(label_sets.enabled is true)")
    meta = read_metadata(path)
    if meta.get("skipped") == "true" or "shape" not in meta:
        raise ValueError(f"{path}: written with label_sets.enabled false; rerun `imagenet-clean windows --split {path.stem}`")
    if sample_ids is None:
        t = read_table(path)
    else:
        import pyarrow.parquet as pq

        t = pq.read_table(path, filters=[("sample_id", "in", list(sample_ids))]).to_pandas()
    if "width" not in t:
        raise ValueError(f"{path}: written before the windows' image sizes were kept; "
                         f"rerun `imagenet-clean windows --split {path.stem}`")
    shape = tuple(int(v) for v in meta["shape"].split(","))
    n = len(t)
    classes = np.stack(t["classes"].to_numpy()).reshape(n, *shape) if n else np.zeros((0, *shape), np.int16)
    probs = np.stack(t["probs"].to_numpy()).reshape(n, *shape) if n else np.zeros((0, *shape), np.float32)
    return t[["sample_id", "status", "reason", "width", "height"]], classes.astype(np.int16), probs.astype(np.float32)
