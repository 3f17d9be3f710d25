"""Table 1: per cleanup model, label issues found and accuracy before/after cleaning.

For every cleanup model (params.yaml ``models``): the number of samples its
confident learning flagged on each evaluated split (the paper's N'_m column,
counted from the decisions' ``flagged_models``) and its top-1/top-5 accuracy on
each original split (``val``, ``v2``) and on its cleaned version (``val_clean``,
``v2_clean``). No training: it only reads predictions, manifests and decisions.

``metrics/table1.json``::

    {"<model>": {"issues": {"val": 41, "v2": 12},
                 "val": {"n": 500, "top1": 81.2, "top5": 97.0, "n_error": 0},
                 "val_clean": {...}, "v2": {...}, "v2_clean": {...}},
     "skipped_splits": {"imagenet_r": "splits.imagenet_r.root is null"}}

``skipped_splits`` is present when a configured split was left out (see
:mod:`.splits`); with no usable split the file is ``{"skipped": true, "why": ...}``.
An empty evaluation set has ``null`` accuracies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..io import read_table, write_json
from ..workspace import Workspace
from .accuracy import CLEAN_SUFFIX, evaluate_file, split_sets
from .splits import SKIPPED_SPLITS, write_skipped


def issue_counts(decisions: pd.DataFrame, models: Sequence[str], *, source: str = "decisions") -> dict[str, int]:
    """Number of samples each model's confident learning flagged, from the decisions' ``flagged_models``.

    Raises:
        ValueError: the decisions have no ``flagged_models`` column.
    """
    if "flagged_models" not in decisions.columns:
        raise ValueError(f"{source}: no 'flagged_models' column; has {list(decisions.columns)}")
    counts = dict.fromkeys(models, 0)
    for flagged in decisions["flagged_models"]:
        if flagged is None:
            continue
        for m in set(flagged):
            if m in counts:
                counts[m] += 1
    return counts


def table1(models: Sequence[str], splits: Sequence[str], *, paths: Workspace) -> dict:
    """Compute table 1 from this round's prediction, manifest, clean-manifest and decision files.

    Args:
        models: Cleanup model names (params.yaml ``models``).
        splits: Evaluated splits (every configured split except the training split).
        paths: The round's file layout.

    Returns:
        ``{model: {"issues": {split: n}, split: acc, split_clean: acc}}`` with
        accuracies as ``{"n", "top1", "top5", "n_error"}`` (percent).

    Raises:
        ValueError: no models or no splits are given.
        FileNotFoundError: a prediction, manifest, clean manifest or decision file is missing.
    """
    if not models:
        raise ValueError("table 1 needs at least one cleanup model (params.yaml models is empty)")
    if not splits:
        raise ValueError("table 1 needs at least one evaluated split besides the training split")
    out: dict[str, dict] = {m: {"issues": {}} for m in models}
    for split in splits:
        sets = list(split_sets(split, paths).values())
        dec_path = paths.decisions(split)
        counts = issue_counts(read_table(dec_path), models, source=str(dec_path)) if len(sets) > 1 else {}
        for m in models:
            if m in counts:
                out[m]["issues"][split] = counts[m]
            for name, acc in evaluate_file(paths.predictions(split, m), sets).items():
                out[m][name] = acc.as_dict()
    return out


def predict_extra(params, splits: Sequence[str], *, paths: Workspace) -> Path:
    """Predict every usable evaluated split with each ``tables.extra_models`` entry (pretrained weights).

    The models are the same kind of entry as ``models`` and are predicted by the
    same code (:func:`imagenet_clean.models.predict_run.run_predict_split`: sharded,
    resumable, ImageNet-R restricted to its classes). Writes a ``models.json``
    listing them, so the folder exists (a DVC output) when there are none.

    Returns:
        The predictions folder.
    """
    import dataclasses

    from ..io import write_json

    out = paths.extra_predictions
    extra = dict(params.tables.extra_models)
    if extra:
        from ..models.predict_run import run_predict_split

        as_models = dataclasses.replace(params, models=extra)
        for split in splits:
            run_predict_split(split, as_models, manifests_dir=paths.manifests, models_dir=paths.at_round(1).models,
                              out_dir=out, cache_dir=paths.extra_predict_cache)
    write_json(out / "models.json", {name: {"arch": m.arch, "weights": m.weights} for name, m in extra.items()})
    return out


def extra_rows(models: Sequence[str], splits: Sequence[str], *, paths: Workspace) -> dict[str, dict]:
    """Table-1 rows of models that took no part in the cleanup: accuracies only, ``"cleanup": false``."""
    out: dict[str, dict] = {}
    folder = paths.extra_predictions
    for m in models:
        row: dict = {"cleanup": False, "issues": {}}
        for split in splits:
            sets = list(split_sets(split, paths).values())
            for name, acc in evaluate_file(folder / split / f"{m}.parquet", sets).items():
                row[name] = acc.as_dict()
        out[m] = row
    return out


def write_table1(models: Sequence[str], splits: Sequence[str], *, paths: Workspace, skipped: Mapping[str, str] | None = None,
                 extra_models: Sequence[str] = ()) -> Path:
    """Compute table 1 and write it to this round's ``table1.json``; returns the path.

    Args:
        models: Cleanup model names.
        splits: Usable evaluated splits (see :func:`.splits.usable_splits`).
        paths: The round's file layout.
        skipped: Evaluated splits left out, with the reason; stored under ``skipped_splits``.
            With no usable split the file is ``{"skipped": true, "why": ...}``.
        extra_models: ``tables.extra_models`` names, predicted by :func:`predict_extra`: rows
            with ``"cleanup": false`` and no issue counts, after the cleanup models.
    """
    path = paths.metric("table1.json")
    if not splits:
        return write_skipped(paths, ["table1.json"], "no evaluated split besides the training split can be used", skipped_splits=skipped)
    result = table1(models, splits, paths=paths)
    clash = sorted(set(extra_models) & set(result))
    if clash:
        raise ValueError(f"tables.extra_models {clash} are also cleanup models")
    result.update(extra_rows(extra_models, splits, paths=paths))
    if skipped:
        result[SKIPPED_SPLITS] = dict(skipped)
    write_json(path, result)
    return path


def gains(row: dict, split: str) -> dict[str, float | None]:
    """Cleaned minus original accuracy of one table-1 row on ``split`` (percentage points; ``None`` for an empty set)."""
    a, b = row[split], row[split + CLEAN_SUFFIX]
    return {k: None if a[k] is None or b[k] is None else round(b[k] - a[k], 4) for k in ("top1", "top5")}
