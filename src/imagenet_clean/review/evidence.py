"""Reading the review app's evidence: a model's top-5 of the changes, and the paging index cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def read_change_top5(path: Path, ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(top5, probs, fold, margin)`` of the changes ``ids`` (given labels ``labels``) in one model's prediction file.

    ``margin`` is the top-1 probability minus the given label's (NaN, like top-5
    -1 and fold -1, where the model has no prediction). The prediction file is
    read once, in batches; only the changes' rows are kept (48 bytes per change).
    """
    n = len(ids)
    top = np.full((n, 5), -1, np.int32)
    probs = np.zeros((n, 5), np.float32)
    fold = np.full(n, -1, np.int32)
    margin = np.full(n, np.nan, np.float32)
    if not path.is_file() or not n:
        return top, probs, fold, margin
    pf = pq.ParquetFile(path)
    where = pc.index_in(pf.read(columns=["sample_id"]).column(0),
                        value_set=pa.array(ids.tolist(), pa.string())).fill_null(-1)
    where = np.asarray(where.to_numpy(zero_copy_only=False) if isinstance(where, pa.Array)
                       else where.combine_chunks().to_numpy(zero_copy_only=False), np.int64)
    offset = 0
    for b in pf.iter_batches(batch_size=8192, columns=["status", "fold", "top5", "probs"]):
        w = where[offset:offset + b.num_rows]
        offset += b.num_rows
        hit = np.flatnonzero(w >= 0)
        if not len(hit):
            continue
        sub = b.take(pa.array(hit, pa.int64()))
        ok = np.asarray(pc.equal(sub.column(0), "ok").fill_null(False))
        k = sub.column(3).type.list_size
        t = fixed_values(sub.column(2), 5).astype(np.int64)
        p = fixed_values(sub.column(3), k).astype(np.float32)
        dest = w[hit][ok]
        t, p = t[ok], p[ok]
        top[dest] = t
        probs[dest] = np.take_along_axis(p, np.clip(t, 0, k - 1), axis=1)
        fold[dest] = np.asarray(sub.column(1).fill_null(-1))[ok]
        lab = np.clip(labels[dest], 0, k - 1)
        margin[dest] = p.max(axis=1) - p[np.arange(len(dest)), lab]
    return top, probs, fold, margin


def read_cache(path: Path) -> pa.Table | None:
    try:
        return pq.read_table(path).combine_chunks() if path.is_file() else None
    except (OSError, pa.ArrowException):
        return None


def write_cache(path: Path, table: pa.Table) -> None:
    """Write the paging index (best effort: a read-only project just rescans next time); drop older ones."""
    from ..io import OutputError, write_table

    try:
        for old in path.parent.glob("pages-*.parquet"):
            old.unlink()
        write_table(path, table)
    except (OSError, OutputError):
        pass


def fixed_values(arr: pa.FixedSizeListArray, k: int) -> np.ndarray:
    """(len, k) values of a fixed-size list array, null rows included (flatten would drop them)."""
    vals = pc.fill_null(arr.values.slice(arr.offset * k, len(arr) * k), 0)
    return np.asarray(vals.to_numpy(zero_copy_only=False)).reshape(-1, k)


QUALITY_META_COLUMNS = ("sample_id", "status", "reason")
"""Columns of a quality file that are not measures (stage ``quality``, :data:`imagenet_clean.data.quality.QUALITY_SCHEMA`)."""


def read_quality_rows(path: Path, ids: np.ndarray) -> tuple[list[str], dict[str, dict]]:
    """``(measures, {sample_id: row})`` of the samples ``ids`` in a split's quality file (stage ``quality``).

    A missing or unreadable file gives no measures and no rows: the app then shows no quality section.
    Each row holds every measure (None for NaN: an unreadable image, or no box), ``status`` and ``reason``.
    """
    if not path.is_file() or not len(ids):
        return [], {}
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        measures = [c for c in names if c not in QUALITY_META_COLUMNS]
        value_set = pa.array([str(i) for i in ids.tolist()], pa.string())
        out: dict[str, dict] = {}
        for b in pf.iter_batches(batch_size=65_536):
            hit = pc.is_in(b.column("sample_id"), value_set=value_set).fill_null(False)
            for r in b.filter(hit).to_pylist():
                out[r["sample_id"]] = {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items() if k != "sample_id"}
    except (OSError, KeyError, pa.ArrowException):
        return [], {}
    return measures, out
