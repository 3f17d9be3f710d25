"""Top-1/top-5 accuracy of a prediction file over an evaluation set, and where the sets live.

An *evaluation set* is a list of sample ids with the labels to score against:
the original split ``V`` (manifest rows with status ``ok``, original labels) or
the cleaned split ``V_c`` (clean manifest rows except placeholders, cleaned
labels). Accuracies are in percent, as in the paper's tables.

When a cleaned split's clean manifest carries label sets (a ``labels`` column,
issue 30; docs/label-sets.md) its set also has a ReaL-style *set accuracy*
: a prediction is right when its top-1 (after merges, as top-1 is
scored) is any class of the row's set, key ``top1_set``. Without the column there
is no ``top1_set`` figure anywhere, so the tables are what they were.

The files of cleaning round ``r`` are named by
:class:`~imagenet_clean.workspace.Workspace`: round 1 is the pipeline's own
``data/`` and ``metrics/``; round ``r >= 2`` lives under ``data/rounds/<r>/``
and ``metrics/rounds/<r>/`` and reads the original manifests unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.imagenet_r import NUM_IMAGENET_CLASSES
from ..io import read_table
from ..predictions import Predictions, read_predictions
from ..workspace import Workspace

TRAIN_SPLIT = "train"
"""Name of the training split in params.yaml ``splits``; every other split is evaluated."""

PLACEHOLDER = "placeholder"
"""``action`` of a clean-manifest row that stands for an emptied (merged-away) class."""


CLEAN_SUFFIX = "_clean"
"""Key suffix of a cleaned evaluation set: ``val`` -> ``val_clean``."""

LABELS = "labels"
"""The clean manifest's optional label-set column (list of class indices after merges; ``[label]`` on most rows)."""

SET_METRIC = "top1_set"
"""Key of the set accuracy (top-1 in the row's label set) beside ``top1``/``top5``, where label sets exist."""

SYMBOLS = {"train": "T", "val": "V", "v2": "V2"}
"""The paper's symbols for the usual split names (others are shown by name)."""


def symbol(set_name: str) -> str:
    """The paper's symbol of an evaluation or training set: ``val_clean`` -> ``V_c``."""
    base, clean = (set_name[: -len(CLEAN_SUFFIX)], True) if set_name.endswith(CLEAN_SUFFIX) else (set_name, False)
    sym = SYMBOLS.get(base, base)
    return f"{sym}_c" if clean else sym


@dataclass(frozen=True)
class EvalSet:
    """Samples and the labels they are scored against.

    Args:
        name: Key in the metrics files (``val``, ``val_clean``, ...).
        split: The split the samples come from.
        sample_ids: Sample ids, unique.
        labels: Integer labels aligned with ``sample_ids``.
        merges: For a cleaned set whose labels went through category merges: the
            (K,) lookup ``class -> class after merges`` that predictions go
            through before they are scored (:func:`ranked_topk`); None: no merges.
        subset: The class subset the split covers (``imagenet_r``): predictions
            are restricted to it before scoring; None: all classes.
        label_sets: (N, S) int64 label sets aligned with ``sample_ids``, padded
            with -1 (:func:`padded_sets`); None: the set has no label sets and
            no set accuracy.
    """

    name: str
    split: str
    sample_ids: np.ndarray
    labels: np.ndarray
    merges: np.ndarray | None = None
    subset: str | None = None
    label_sets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 accuracy in percent over ``n`` samples; ``n_error`` rows had no prediction (counted wrong).

    ``top1_set`` is the set accuracy (top-1 in the row's label set), None when the
    evaluation set has no label sets.
    """

    n: int
    top1: float
    top5: float
    n_error: int = 0
    top1_set: float | None = None

    def as_dict(self) -> dict:
        """JSON-ready fields; the ``nan`` accuracies of an empty set become ``None`` (JSON null).

        ``top1_set`` (:data:`SET_METRIC`) follows ``top5`` only when the evaluation set has label sets.
        """
        nan_to_none = lambda x: None if x != x else x  # noqa: E731
        out = {"n": self.n, "top1": nan_to_none(self.top1), "top5": nan_to_none(self.top5)}
        if self.top1_set is not None:
            out[SET_METRIC] = nan_to_none(self.top1_set)
        return out | {"n_error": self.n_error}


def _check_columns(df: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; has {list(df.columns)}")


def original_set(manifest: pd.DataFrame, *, name: str, split: str, source: str = "manifest") -> EvalSet:
    """The original split: manifest rows with status ``ok`` and their original labels.

    Raises:
        ValueError: a column is missing or sample ids repeat.
    """
    _check_columns(manifest, ("sample_id", "label", "status"), source)
    rows = manifest[manifest["status"] == "ok"]
    return _make_set(rows, name=name, split=split, source=source)


def cleaned_set(clean: pd.DataFrame, *, name: str, split: str, source: str = "clean manifest",
                merges: np.ndarray | None = None) -> EvalSet:
    """The cleaned split: clean-manifest rows except placeholders, with their cleaned labels.

    With a ``labels`` column (label sets, after merges) the set carries them for
    the set accuracy; an empty cell counts as the row's own label.

    Args:
        clean: The clean manifest.
        name: Key in the metrics files.
        split: The split the samples come from.
        source: Name of the file, for error messages.
        merges: The (K,) merge lookup the cleaned labels went through (see :func:`merge_lookup`).

    Raises:
        ValueError: a column is missing, sample ids repeat, or a label set does not
            start with its row's label.
    """
    _check_columns(clean, ("sample_id", "label", "action"), source)
    rows = clean[clean["action"] != PLACEHOLDER]
    sets = None
    if LABELS in rows.columns:
        sets = padded_sets(rows[LABELS], rows["label"].to_numpy(np.int64), sample_ids=rows["sample_id"].to_numpy(dtype=object),
                           source=source)
    return _make_set(rows, name=name, split=split, source=source, merges=merges, label_sets=sets)


def padded_sets(sets, labels: np.ndarray, *, sample_ids=None, source: str = "clean manifest") -> np.ndarray:
    """Label sets as an (N, S) int64 array padded with -1; an empty (or null) set is the row's ``labels`` entry.

    Args:
        sets: N sequences of class indices (a clean manifest's ``labels`` column).
        labels: (N,) the rows' labels; each non-empty set must start with its label.
        sample_ids: For error messages.
        source: Name of the file, for error messages.

    Raises:
        ValueError: a set does not start with its row's label (quoting the sample).
    """
    labels = np.asarray(labels, np.int64)
    lists = [list(s) if s is not None and len(s) else [int(lab)] for s, lab in zip(sets, labels)]
    width = max((len(x) for x in lists), default=1)
    out = np.full((len(lists), width), -1, np.int64)
    for i, x in enumerate(lists):
        out[i, : len(x)] = x
    bad = np.flatnonzero(out[:, 0] != labels) if len(out) else np.array([], int)
    if len(bad):
        i = int(bad[0])
        who = repr(sample_ids[i]) if sample_ids is not None else f"row {i}"
        raise ValueError(f"{source}: the label set {lists[i]} of sample {who} does not start with its label {int(labels[i])}")
    return out


def _make_set(rows: pd.DataFrame, *, name: str, split: str, source: str, merges: np.ndarray | None = None,
              label_sets: np.ndarray | None = None) -> EvalSet:
    ids = rows["sample_id"].to_numpy(dtype=object)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise ValueError(f"{source}: sample_id {dup[0]!r} appears more than once")
    return EvalSet(name=name, split=split, sample_ids=ids, labels=rows["label"].to_numpy(dtype=np.int64),
                   merges=merges, subset=subset_of(split), label_sets=label_sets)


def subset_of(split: str) -> str | None:
    """The class subset a split covers (``imagenet_r`` -> its 200 classes), or None."""
    from ..data.imagenet_r import IMAGENET_R

    return IMAGENET_R if split == IMAGENET_R else None


def merge_lookup(clean_path: str | Path, *, workdir: str | Path = ".") -> np.ndarray | None:
    """The (K,) lookup ``class -> class after merges`` that a clean manifest's labels went through.

    Read from the manifest's metadata, as the clean stage wrote it (``merges``:
    the merge table spec, ``classes``: the class list); None when no class was
    merged (``merges: none``, or an older file without the keys).

    Raises:
        ValueError: the merge table does not fit the class list.
    """
    from ..classes import BUILTIN_CLASS_LISTS, load_classes
    from ..cleanup.merges import BUILTIN_MERGES, NO_MERGES, load_merges, merge_index
    from ..io import read_metadata

    meta = read_metadata(clean_path)
    spec, classes = meta.get("merges"), meta.get("classes")
    if not spec or spec == NO_MERGES or not classes:
        return None

    def local(p: str) -> str:
        return p if p in BUILTIN_MERGES or p in BUILTIN_CLASS_LISTS or Path(p).is_absolute() or Path(p).exists() else str(Path(workdir) / p)

    cl = load_classes(local(classes))
    merges = load_merges(local(spec), cl)
    lut = merge_index(merges, cl)
    return lut if (lut != np.arange(len(lut))).any() else None


CLEANED_SPLITS = ("val", "v2")
"""Evaluated splits the pipeline cleans (dvc.yaml ``clean`` stage): their clean manifest is required.
Other evaluated splits (e.g. ``imagenet_r``) are scored on their original labels only
unless a clean manifest exists for them."""


def has_clean(split: str, paths: Workspace) -> bool:
    """Whether ``split`` is evaluated on a cleaned version too.

    Raises:
        FileNotFoundError: a split of :data:`CLEANED_SPLITS` has no clean manifest.
    """
    if paths.clean(split).is_file():
        return True
    if split in CLEANED_SPLITS:
        raise FileNotFoundError(f"{paths.clean(split)}: no clean manifest (has `imagenet-clean clean --split {split}` run?)")
    return False


def split_sets(split: str, paths: Workspace) -> dict[str, EvalSet]:
    """``{split: original, split_clean: cleaned}`` read from this round's files (see :func:`has_clean`)."""
    m_path, c_path = paths.manifest(split), paths.clean(split)
    out = {split: original_set(read_table(m_path), name=split, split=split, source=str(m_path))}
    if has_clean(split, paths):
        out[split + CLEAN_SUFFIX] = cleaned_set(read_table(c_path), name=split + CLEAN_SUFFIX, split=split, source=str(c_path),
                                                merges=merge_lookup(c_path, workdir=paths.root))
    return out


def ranked_topk(probs: np.ndarray, *, k: int = 5, merges: np.ndarray | None = None, subset: str | None = None) -> np.ndarray:
    """The k best classes per row, best first, as the scoring sees them.

    With ``subset``, only the subset's classes compete (ImageNet-R: 200 of the
    1000). With ``merges``, every ranked class is mapped through the merge
    lookup and a class is counted once: a model that ranks "African elephant"
    then "tusker" has top-2 ``[tusker, <third class>]`` once the first is merged
    into the second.

    Args:
        probs: (N, K) probabilities (or any scores; larger is better).
        k: How many classes per row.
        merges: (K,) lookup ``class -> class after merges``, or None.
        subset: A class subset of :mod:`imagenet_clean.data.imagenet_r`, or None.

    Returns:
        (N, k) int64 class indices; -1 pads rows with fewer than k distinct classes.
    """
    probs = np.asarray(probs)
    n, n_classes = probs.shape
    scores = probs.astype(np.float64, copy=True)
    if subset is not None:
        from ..data.imagenet_r import load_subset

        scores[:, ~load_subset(subset).mask(n_classes)] = -np.inf
    extra = 0 if merges is None else int((np.asarray(merges) != np.arange(n_classes)).sum())
    m = min(n_classes, k + extra)
    if n == 0 or m == 0:
        return np.full((n, k), -1, np.int64)
    part = np.argpartition(-scores, m - 1, axis=1)[:, :m] if m < n_classes else np.tile(np.arange(n_classes), (n, 1))
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(part, order, axis=1).astype(np.int64)
    valid = np.isfinite(np.take_along_axis(scores, ranked, axis=1))
    if merges is not None:
        ranked = np.asarray(merges, np.int64)[ranked]
    dup = np.zeros_like(valid)
    for j in range(1, m):
        dup[:, j] = (ranked[:, :j] == ranked[:, j : j + 1]).any(axis=1)
    keep = valid & ~dup
    first = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out = np.where(np.take_along_axis(keep, first, axis=1), np.take_along_axis(ranked, first, axis=1), -1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((n, k - out.shape[1]), -1, np.int64)], axis=1)
    return out


def hits(top5: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample top-1 and top-5 hits.

    Args:
        top5: (N, 5) class indices, best first (-1 pads fewer than 5 classes).
        labels: (N,) integer labels.
    """
    labels = np.asarray(labels, np.int64)
    top5 = np.asarray(top5)
    if top5.ndim != 2 or len(top5) != len(labels):
        raise ValueError(f"top5 has shape {top5.shape}, expected ({len(labels)}, 5)")
    return top5[:, 0] == labels, (top5 == labels[:, None]).any(axis=1)


def set_hits(top1: np.ndarray, label_sets: np.ndarray) -> np.ndarray:
    """Per-sample set hits: the top-1 class is one of the row's label set (ReaL-style).

    Args:
        top1: (N,) predicted classes (-1: no prediction, never a hit).
        label_sets: (N, S) label sets padded with -1 (:func:`padded_sets`).
    """
    top1 = np.asarray(top1, np.int64)
    label_sets = np.asarray(label_sets, np.int64)
    if label_sets.ndim != 2 or len(label_sets) != len(top1):
        raise ValueError(f"label sets have shape {label_sets.shape}, expected ({len(top1)}, S)")
    return (top1 >= 0) & (label_sets == top1[:, None]).any(axis=1)


def accuracy(predictions: Predictions, sample_ids, labels, *, source: str = "predictions",
             merges: np.ndarray | None = None, subset: str | None = None, label_sets: np.ndarray | None = None) -> Accuracy:
    """Top-1/top-5 accuracy (percent) of ``predictions`` over the given samples and labels.

    Rows whose prediction status is not ``ok`` count as misses and are reported in
    ``n_error``; an empty set gives ``nan`` accuracies. With ``merges`` or
    ``subset`` the top-5 is re-ranked from the probabilities by :func:`ranked_topk`
    (merged labels are scored against merged predictions, a class counted once;
    a subset split only among its classes); without, the file's own top-5 is used.

    Args:
        predictions: One model's predictions on the split.
        sample_ids: The samples to score.
        labels: Their labels (original or cleaned).
        source: Name of the prediction file, for error messages.
        merges: (K,) merge lookup the labels went through (the cleaned sets), or None.
        subset: Class subset of the split (``imagenet_r``), or None.
        label_sets: (N, S) label sets after merges, padded with -1 (:func:`padded_sets`):
            also the set accuracy (top-1, as scored above, in the row's set); None: no set accuracy.

    Raises:
        ValueError: a sample has no row in ``predictions``, sample ids repeat in
            ``predictions``, or a label is outside the model's classes.
    """
    sample_ids = np.asarray(sample_ids, dtype=object)
    labels = np.asarray(labels, np.int64)
    if len(sample_ids) != len(labels):
        raise ValueError(f"{len(sample_ids)} sample ids but {len(labels)} labels")
    k = predictions.probs.shape[1]
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: label {labels[i]} of sample {sample_ids[i]!r} is outside the model's {k} classes")
    index = pd.Index(predictions.sample_ids)
    if index.has_duplicates:
        raise ValueError(f"{source}: sample_id {index[index.duplicated()][0]!r} appears more than once")
    pos = index.get_indexer(sample_ids)
    if (pos < 0).any():
        missing = sample_ids[pos < 0]
        raise ValueError(f"{source}: {len(missing)} sample(s) have no prediction, e.g. {list(missing[:3])}")
    if label_sets is not None:
        label_sets = np.asarray(label_sets, np.int64)
        if label_sets.shape[:1] != labels.shape:
            raise ValueError(f"{len(labels)} labels but {len(label_sets)} label sets")
        bad_set = ((label_sets < -1) | (label_sets >= k)).any(axis=1)
        if bad_set.any():
            i = int(np.flatnonzero(bad_set)[0])
            raise ValueError(f"{source}: label set {label_sets[i][label_sets[i] >= 0].tolist()} of sample {sample_ids[i]!r} "
                             f"is outside the model's {k} classes")
    n = len(sample_ids)
    if n == 0:
        return Accuracy(n=0, top1=float("nan"), top5=float("nan"), top1_set=None if label_sets is None else float("nan"))
    ok = predictions.ok[pos]
    if subset is not None and k != NUM_IMAGENET_CLASSES:
        subset = None  # a subset of ImageNet-1k; another class list has no such subset (predict-split refuses it)
    if merges is None and subset is None:
        top5 = predictions.top5[pos]
    else:
        top5 = ranked_topk(predictions.probs[pos], k=predictions.top5.shape[1], merges=merges, subset=subset)
    h1, h5 = hits(top5, labels)
    h1 &= ok
    h5 &= ok
    hs = None if label_sets is None else _pct(set_hits(top5[:, 0], label_sets) & ok)
    return Accuracy(n=n, top1=_pct(h1), top5=_pct(h5), n_error=int((~ok).sum()), top1_set=hs)


def _pct(mask: np.ndarray) -> float:
    return round(100.0 * float(mask.mean()), 4)


def evaluate_file(path: str | Path, sets: Sequence[EvalSet]) -> dict[str, Accuracy]:
    """Accuracy of one prediction file on each evaluation set, keyed by set name."""
    preds = read_predictions(path)
    return {s.name: accuracy(preds, s.sample_ids, s.labels, source=str(path), merges=s.merges, subset=s.subset,
                             label_sets=s.label_sets) for s in sets}
