"""Reading the review app's evidence: the changes' decision rows, their manifest rows, a model's top-5 of the
changes, the quality measures' view and the paging index cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..cleanup.rules import RULE_CAM_EXEMPT
from .audit import audit_batches


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


BATCH = 65_536


def read_detail_rows(dec_path: Path, rows: np.ndarray, example_rows: np.ndarray, *, required, optional) -> tuple[pa.Table, dict]:
    """The decisions rows ``rows`` (``required`` columns plus those of ``optional`` the file has), read in batches,
    and ``{row: sample_id}`` of ``example_rows``."""
    pf = pq.ParquetFile(dec_path)
    is_change = np.zeros(pf.metadata.num_rows, bool)
    is_change[rows] = True
    is_example = np.zeros(pf.metadata.num_rows, bool)
    is_example[example_rows] = True
    parts, ex_ids, offset = [], {}, 0
    columns = [*required, *(c for c in optional if c in pf.schema_arrow.names)]
    for b in pf.iter_batches(batch_size=BATCH, columns=columns):
        sl = slice(offset, offset + b.num_rows)
        hit = np.flatnonzero(is_change[sl])
        if len(hit):
            parts.append(b.take(pa.array(hit, pa.int64())))
        ex = np.flatnonzero(is_example[sl])
        if len(ex):
            ex_ids.update(zip((ex + offset).tolist(), b.column("sample_id").take(pa.array(ex, pa.int64())).to_pylist()))
        offset += b.num_rows
    schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
    return pa.Table.from_batches(parts, schema=schema).combine_chunks(), ex_ids


def read_manifest_rows(man_path: Path, sample_ids: list[str], columns) -> pa.Table:
    """The manifest rows of ``sample_ids`` (the only images the app serves), ``columns`` only, read in batches."""
    mf = pq.ParquetFile(man_path)
    ids = mf.read(columns=["sample_id"]).column(0)
    want = np.asarray(pc.is_in(ids, value_set=pa.array(sample_ids, pa.string())).fill_null(False))
    del ids
    files, offset = [], 0
    for b in mf.iter_batches(batch_size=BATCH, columns=list(columns)):
        hit = np.flatnonzero(want[offset:offset + b.num_rows])
        offset += b.num_rows
        if len(hit):
            files.append(b.take(pa.array(hit, pa.int64())))
    return pa.Table.from_batches(files, schema=pa.schema([mf.schema_arrow.field(c) for c in columns])).combine_chunks()


def quality_view(q: dict, measures, bounds: dict) -> dict:
    """A quality row for the page: each measure with its value, bounds (params) and whether it is beyond them."""
    rows = []
    for m in measures:
        v = q.get(m)
        lo, hi = bounds.get(m, (None, None))
        beyond = v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi))
        rows.append({"name": m, "value": None if v is None else round(float(v), 4), "min": lo, "max": hi, "beyond": bool(beyond)})
    return {"status": q.get("status") or "", "reason": q.get("reason") or "", "measures": rows}


def scan_changes(dec_path: Path, page_columns, *, audit: int = 0, seed: int = 0) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Pass 1 over the decisions, in batches: the changes' paging columns and global ``row``.

    With ``audit``, also that many kept images (not CAM-exempted) drawn by :func:`~imagenet_clean.review.audit.audit_rank`,
    marked in an ``audit`` column.

    Returns:
        ``(page table in file order, every row's label, every row's kept flag)``.
    """
    pf = pq.ParquetFile(dec_path)
    labels, kept, parts, rows, offset = [], [], [], [], 0
    plain_ids, plain_rows = [], []  # kept, not exempted: the audit's population
    for b in pf.iter_batches(batch_size=BATCH, columns=list(page_columns)):
        keep = np.asarray(pc.equal(b.column("action"), "keep").fill_null(False))
        exempt = np.zeros(b.num_rows, bool)
        r = b.column("rules")
        exempt[np.asarray(pc.list_parent_indices(r))[np.asarray(pc.equal(pc.list_flatten(r), RULE_CAM_EXEMPT).fill_null(False))]] = True
        hit = np.flatnonzero(~keep | exempt)
        if len(hit):
            parts.append(b.take(pa.array(hit, pa.int64())))
            rows.append(hit + offset)
        if audit:
            plain = np.flatnonzero(keep & ~exempt)
            plain_ids.extend(b.column("sample_id").take(pa.array(plain, pa.int64())).to_pylist())
            plain_rows.append(plain + offset)
        labels.append(np.asarray(b.column("label")))
        kept.append(keep)
        offset += b.num_rows
    is_audit = [np.zeros(len(x), bool) for x in rows]
    if audit and plain_ids:
        more, where = audit_batches(pf, plain_ids, np.concatenate(plain_rows), offset, audit=audit, seed=seed,
                                    columns=list(page_columns), batch_size=BATCH)
        parts += more
        rows += where
        is_audit += [np.ones(len(w), bool) for w in where]
    schema = pa.schema([pf.schema_arrow.field(c) for c in page_columns])
    page = pa.Table.from_batches(parts, schema=schema).combine_chunks()
    label_all = np.concatenate(labels) if labels else np.array([], np.int64)
    keep_all = np.concatenate(kept) if kept else np.array([], bool)
    row = np.concatenate(rows) if rows else np.array([], np.int64)
    page = page.append_column("row", pa.array(row, pa.int64()))
    page = page.append_column("audit", pa.array(np.concatenate(is_audit) if is_audit else np.array([], bool), pa.bool_()))
    return page.take(pa.array(np.argsort(row, kind="stable"), pa.int64())), label_all, keep_all  # file order
