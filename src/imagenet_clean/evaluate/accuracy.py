"""Top-1/top-5 accuracy of a prediction file over an evaluation set, and where the sets live.

An *evaluation set* is a list of sample ids with the labels to score against:
the original split ``V`` (manifest rows with status ``ok``, original labels) or
the cleaned split ``V_c`` (clean manifest rows except placeholders, cleaned
labels). Accuracies are in percent, as in the paper's tables.

:class:`RoundPaths` names every file the tables read and write, for cleaning
round ``r``: round 1 is the pipeline's own ``data/`` and ``metrics/``; round
``r >= 2`` lives under ``data/rounds/<r>/`` and ``metrics/rounds/<r>/`` and
reads the original manifests unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import read_table
from ..predictions import Predictions, read_predictions

TRAIN_SPLIT = "train"
"""Name of the training split in params.yaml ``splits``; every other split is evaluated."""

PLACEHOLDER = "placeholder"
"""``action`` of a clean-manifest row that stands for an emptied (merged-away) class."""

CLEAN_SUFFIX = "_clean"
"""Key suffix of a cleaned evaluation set: ``val`` -> ``val_clean``."""

SYMBOLS = {"train": "T", "val": "V", "v2": "V2"}
"""The paper's symbols for the usual split names (others are shown by name)."""


def symbol(set_name: str) -> str:
    """The paper's symbol of an evaluation or training set: ``val_clean`` -> ``V_c``."""
    base, clean = (set_name[: -len(CLEAN_SUFFIX)], True) if set_name.endswith(CLEAN_SUFFIX) else (set_name, False)
    sym = SYMBOLS.get(base, base)
    return f"{sym}_c" if clean else sym


@dataclass(frozen=True)
class RoundPaths:
    """File layout of one cleaning round.

    Args:
        round: Cleaning round, 1 for the pipeline's main outputs.
        data: Data folder of the project.
        metrics: Metrics folder of the project.
    """

    round: int = 1
    data: Path = Path("data")
    metrics: Path = Path("metrics")

    def __post_init__(self):
        if not isinstance(self.round, int) or self.round < 1:
            raise ValueError(f"round must be an integer >= 1, got {self.round!r}")
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "metrics", Path(self.metrics))

    @property
    def round_data(self) -> Path:
        """Folder of this round's cleanup outputs (models, predictions, decisions, clean)."""
        return self.data if self.round == 1 else self.data / "rounds" / str(self.round)

    @property
    def round_metrics(self) -> Path:
        """Folder of this round's metrics."""
        return self.metrics if self.round == 1 else self.metrics / "rounds" / str(self.round)

    def manifest(self, split: str) -> Path:
        """The original (round-independent) manifest of ``split``."""
        return self.data / "manifests" / f"{split}.parquet"

    def input(self, split: str) -> Path:
        """What this round cleaned: the original manifest in round 1, the previous round's clean manifest after."""
        if self.round == 1:
            return self.manifest(split)
        return RoundPaths(self.round - 1, self.data, self.metrics).clean(split)

    def clean(self, split: str) -> Path:
        """This round's clean manifest of ``split``."""
        return self.round_data / "clean" / f"{split}.parquet"

    def decisions(self, split: str) -> Path:
        """This round's decisions of ``split``."""
        return self.round_data / "decisions" / f"{split}.parquet"

    def predictions(self, split: str, model: str) -> Path:
        """This round's predictions of cleanup model ``model`` on ``split``."""
        return self.round_data / "predictions" / split / f"{model}.parquet"

    def metric(self, name: str) -> Path:
        """A metrics file of this round, e.g. ``table1.json``."""
        return self.round_metrics / name

    @property
    def retrain_cache(self) -> Path:
        """Cache of finished retraining runs, shared by all rounds (keys are content hashes)."""
        return self.data / "cache" / "retrain"


@dataclass(frozen=True)
class EvalSet:
    """Samples and the labels they are scored against.

    Args:
        name: Key in the metrics files (``val``, ``val_clean``, ...).
        split: The split the samples come from.
        sample_ids: Sample ids, unique.
        labels: Integer labels aligned with ``sample_ids``.
    """

    name: str
    split: str
    sample_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 accuracy in percent over ``n`` samples; ``n_error`` rows had no prediction (counted wrong)."""

    n: int
    top1: float
    top5: float
    n_error: int = 0

    def as_dict(self) -> dict:
        """JSON-ready fields; the ``nan`` accuracies of an empty set become ``None`` (JSON null)."""
        nan_to_none = lambda x: None if x != x else x  # noqa: E731
        return {"n": self.n, "top1": nan_to_none(self.top1), "top5": nan_to_none(self.top5), "n_error": self.n_error}


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


def cleaned_set(clean: pd.DataFrame, *, name: str, split: str, source: str = "clean manifest") -> EvalSet:
    """The cleaned split: clean-manifest rows except placeholders, with their cleaned labels.

    Raises:
        ValueError: a column is missing or sample ids repeat.
    """
    _check_columns(clean, ("sample_id", "label", "action"), source)
    rows = clean[clean["action"] != PLACEHOLDER]
    return _make_set(rows, name=name, split=split, source=source)


def _make_set(rows: pd.DataFrame, *, name: str, split: str, source: str) -> EvalSet:
    ids = rows["sample_id"].to_numpy(dtype=object)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise ValueError(f"{source}: sample_id {dup[0]!r} appears more than once")
    return EvalSet(name=name, split=split, sample_ids=ids, labels=rows["label"].to_numpy(dtype=np.int64))


CLEANED_SPLITS = ("val", "v2")
"""Evaluated splits the pipeline cleans (dvc.yaml ``clean`` stage): their clean manifest is required.
Other evaluated splits (e.g. ``imagenet_r``) are scored on their original labels only
unless a clean manifest exists for them."""


def has_clean(split: str, paths: RoundPaths) -> bool:
    """Whether ``split`` is evaluated on a cleaned version too.

    Raises:
        FileNotFoundError: a split of :data:`CLEANED_SPLITS` has no clean manifest.
    """
    if paths.clean(split).is_file():
        return True
    if split in CLEANED_SPLITS:
        raise FileNotFoundError(f"{paths.clean(split)}: no clean manifest (has `imagenet-clean clean --split {split}` run?)")
    return False


def split_sets(split: str, paths: RoundPaths) -> dict[str, EvalSet]:
    """``{split: original, split_clean: cleaned}`` read from this round's files (see :func:`has_clean`)."""
    m_path, c_path = paths.manifest(split), paths.clean(split)
    out = {split: original_set(read_table(m_path), name=split, split=split, source=str(m_path))}
    if has_clean(split, paths):
        out[split + CLEAN_SUFFIX] = cleaned_set(read_table(c_path), name=split + CLEAN_SUFFIX, split=split, source=str(c_path))
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


def accuracy(predictions: Predictions, sample_ids, labels, *, source: str = "predictions") -> Accuracy:
    """Top-1/top-5 accuracy (percent) of ``predictions`` over the given samples and labels.

    Rows whose prediction status is not ``ok`` count as misses and are reported in
    ``n_error``; an empty set gives ``nan`` accuracies.

    Args:
        predictions: One model's predictions on the split.
        sample_ids: The samples to score.
        labels: Their labels (original or cleaned).
        source: Name of the prediction file, for error messages.

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
    n = len(sample_ids)
    if n == 0:
        return Accuracy(n=0, top1=float("nan"), top5=float("nan"))
    ok = predictions.ok[pos]
    h1, h5 = hits(predictions.top5[pos], labels)
    h1 &= ok
    h5 &= ok
    return Accuracy(n=n, top1=_pct(h1), top5=_pct(h5), n_error=int((~ok).sum()))


def _pct(mask: np.ndarray) -> float:
    return round(100.0 * float(mask.mean()), 4)


def evaluate_file(path: str | Path, sets: Sequence[EvalSet]) -> dict[str, Accuracy]:
    """Accuracy of one prediction file on each evaluation set, keyed by set name."""
    preds = read_predictions(path)
    return {s.name: accuracy(preds, s.sample_ids, s.labels, source=str(path)) for s in sets}
