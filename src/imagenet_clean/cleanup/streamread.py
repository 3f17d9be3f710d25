"""Read one model's prediction file for the clean stage in row batches, straight into the rows it needs.

:func:`imagenet_clean.predictions.read_predictions` reads the whole file into
Arrow, then copies it (float16) and widens it (float32): about 5x the float16
matrix at once, 12 GB for ImageNet train (1.28M x 1000). This reader keeps one
batch of Arrow data at a time and writes each batch's rows, widened to
float32, into a preallocated matrix of only the rows asked for, so the peak
is that float32 matrix plus one batch. The values are the same as
``read_predictions(path).probs[rows]`` bit for bit (float16 -> float32 is exact).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

BATCH_ROWS = 32_768


@dataclass
class ModelRows:
    """One model's probabilities (float32), top-5 and folds for the requested rows, in request order."""

    probs: np.ndarray
    top5: np.ndarray
    fold: np.ndarray


def _dense(arr, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size-list batch column as an (n, width) array (null rows zero) and its validity."""
    n = len(arr)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    vals = arr.values.slice(arr.offset * width, n * width)
    if vals.null_count:  # the slots of null rows (error rows) read back as nulls
        vals = pc.fill_null(vals, 0)
    flat = vals.to_numpy(zero_copy_only=False)
    out = np.asarray(flat, dtype).reshape(n, width) if len(flat) == n * width else np.zeros((n, width), dtype)
    if len(flat) != n * width:  # child array holds only the valid rows
        out[valid] = np.asarray(flat, dtype).reshape(-1, width)
    elif not valid.all():
        out = np.array(out)  # zero-copy views are read-only
        out[~valid] = 0
    return out, valid


def read_model_rows(path: str | Path, rows: np.ndarray, *, batch_rows: int = BATCH_ROWS) -> ModelRows:
    """Rows ``rows`` (positions in the file) of a prediction file, read batch by batch.

    Args:
        path: A prediction file (predictions.py contract).
        rows: File row positions wanted, in the order wanted (each at most once).
        batch_rows: Rows of Arrow data held at once.

    Returns:
        :class:`ModelRows` with ``probs`` float32 (len(rows), K), ``top5`` int32 (len(rows), 5), ``fold`` int32.
    """
    pf = pq.ParquetFile(path)
    n_file = pf.metadata.num_rows
    k = pf.schema_arrow.field("probs").type.list_size
    rows = np.asarray(rows, np.int64)
    dest = np.full(n_file, -1, np.int64)
    dest[rows] = np.arange(len(rows))
    probs = np.empty((len(rows), k), np.float32)
    top5 = np.zeros((len(rows), 5), np.int32)
    fold = np.full(len(rows), -1, np.int32)
    start = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["fold", "top5", "probs"]):
        m = batch.num_rows
        d = dest[start:start + m]
        sel = d >= 0
        if sel.any():
            p, _ = _dense(batch.column("probs"), k, np.float16)
            t, _ = _dense(batch.column("top5"), 5, np.int32)
            probs[d[sel]] = p[sel]
            top5[d[sel]] = t[sel]
            fold[d[sel]] = batch.column("fold").to_numpy(zero_copy_only=False)[sel]
        start += m
    return ModelRows(probs=probs, top5=top5, fold=fold)


def prediction_index(path: Path, manifest_ids: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the manifest's samples in a prediction file, and that file's status/reason per manifest row."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prediction file (has `imagenet-clean predict-split` run for this model?)")
    t = pq.read_table(path, columns=["sample_id", "status", "reason"])
    ids = pd.Index(t["sample_id"].to_numpy(zero_copy_only=False))
    if ids.has_duplicates:
        raise ValueError(f"file {path}: duplicate sample_id {ids[ids.duplicated()][0]!r}")
    pos = ids.get_indexer(manifest_ids)
    if (pos < 0).any():
        miss = manifest_ids[pos < 0]
        raise ValueError(f"file {path}: {len(miss)} manifest samples have no prediction, e.g. {miss[0]!r} "
                         "(re-run the predict stage for this split)")
    if len(ids) != len(manifest_ids):
        extra = ids[~ids.isin(manifest_ids)]
        raise ValueError(f"file {path}: {len(extra)} predictions for samples not in the manifest, e.g. {extra[0]!r}")
    status = t["status"].to_numpy(zero_copy_only=False)[pos]
    reason = t["reason"].to_numpy(zero_copy_only=False)[pos]
    return pos, status, reason


def usable_rows(files: dict[str, Path], manifest_ids: pd.Index, ok: np.ndarray, *, reason: np.ndarray | None = None,
                check=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Walk every model's prediction index: positions per model, and the rows every model predicted.

    Args:
        files: Model name -> prediction file, in model order.
        manifest_ids: The manifest's ``sample_id`` values.
        ok: Rows usable before the predictions are read (readable in the manifest).
        reason: Filled in place where a model has no usable prediction for a row that was ``ok``
            (``"model <m>: <why>"``, the first model that lacks it).
        check: Called as ``check(model, path)`` after each model's index is read (a shape check).

    Returns:
        ``(positions, usable)``: ``positions[m]`` maps manifest rows to rows of model ``m``'s file;
        ``usable`` is ``ok`` and every model's status ``ok``.
    """
    usable = np.asarray(ok, bool).copy()
    positions = {}
    for m, path in files.items():
        pos, status, why = prediction_index(path, manifest_ids)
        if check is not None:
            check(m, path)
        positions[m] = pos
        lost = usable & (status != "ok")
        if reason is not None:
            reason[lost] = [f"model {m}: {w or 'no prediction'}" for w in why[lost]]
        usable &= ~lost
    return positions, usable
