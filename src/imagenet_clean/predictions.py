"""The prediction file contract: one parquet per (split, model).

Columns: ``sample_id`` (str), ``status`` (``ok`` or ``error``), ``reason`` (str,
empty when ok), ``fold`` (int32; the cross-validation fold that held the sample
out, -1 for a model trained on the whole training split or pretrained),
``top5`` (5 x int32, best first) and ``probs`` (K x float16). Rows with status
``error`` carry null ``top5``/``probs``. Schema metadata: ``model``, ``arch``,
``split``, ``num_classes``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import read_metadata, write_table


@dataclass
class Predictions:
    """Predictions of one model on one split, with ``probs`` as float32 (N, K)."""

    sample_ids: np.ndarray
    probs: np.ndarray
    top5: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    fold: np.ndarray
    meta: dict

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows with usable probabilities."""
        return self.status == "ok"


def top5_of(probs: np.ndarray) -> np.ndarray:
    """Indices of the 5 largest probabilities per row, best first (ties: smaller index first)."""
    k = min(5, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    if k < 5:
        order = np.pad(order, ((0, 0), (0, 5 - k)), constant_values=-1)
    return order.astype(np.int32)


def predictions_table(sample_ids, probs: np.ndarray, *, status=None, reason=None, fold=None) -> pa.Table:
    """Build the contract table; rows whose status is not ``ok`` get null probs/top5."""
    n, k = probs.shape
    status = np.asarray(["ok"] * n if status is None else status, dtype=object)
    reason = np.asarray([""] * n if reason is None else reason, dtype=object)
    fold = np.full(n, -1, np.int32) if fold is None else np.asarray(fold, np.int32)
    valid = pa.array(status == "ok")
    mask = pc.invert(valid)
    probs16 = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(probs, np.float16).ravel()), k, mask=mask)
    top5 = pa.FixedSizeListArray.from_arrays(pa.array(top5_of(probs).ravel()), 5, mask=mask)
    return pa.table(
        {
            "sample_id": pa.array(np.asarray(sample_ids, dtype=object), pa.string()),
            "status": pa.array(status, pa.string()),
            "reason": pa.array(reason, pa.string()),
            "fold": pa.array(fold, pa.int32()),
            "top5": top5,
            "probs": probs16,
        }
    )


def write_predictions(path: str | Path, table: pa.Table, **meta) -> None:
    """Write a predictions table atomically with its metadata (model, arch, split, num_classes)."""
    write_table(path, table, metadata=meta)


def read_predictions(path: str | Path) -> Predictions:
    """Read a prediction file; ``probs`` comes back as float32 (error rows are zeros)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prediction file (has the predict stage run?)")
    t = pq.read_table(path)
    n = t.num_rows
    meta = read_metadata(path)
    k = t.schema.field("probs").type.list_size

    def dense(col: str, width: int, dtype) -> np.ndarray:
        arr = t[col].combine_chunks()
        out = np.zeros((n, width), dtype)
        if n:
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            flat = arr.values.to_numpy(zero_copy_only=False).reshape(-1, width)
            out[valid] = flat[valid] if len(flat) == n else flat
        return out

    return Predictions(
        sample_ids=t["sample_id"].to_numpy(zero_copy_only=False).astype(object),
        probs=dense("probs", k, np.float32),
        top5=dense("top5", 5, np.int32),
        status=t["status"].to_numpy(zero_copy_only=False).astype(object),
        reason=t["reason"].to_numpy(zero_copy_only=False).astype(object),
        fold=t["fold"].to_numpy(),
        meta=meta,
    )
