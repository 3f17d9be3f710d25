"""The features file contract: pooled backbone features, one parquet per (model, split).

Columns: ``sample_id`` (str), ``status`` (``ok`` or ``error``), ``reason`` (str,
empty when ok) and ``features`` (a fixed-size list of float16, ``dim x views``
wide: the penultimate, globally pooled activations of each view, view after
view). Rows with status ``error`` carry null features. Schema metadata:
``model``, ``arch``, ``split``, ``dim``, ``views`` (comma-separated view names)
and ``manifest_digest`` (:func:`manifest_digest` of the manifest rows the file
was computed from, in order).

A file is only ever used against the manifest it was computed from:
:func:`read_features` refuses, naming the file, one whose rows, order or model
differ.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import read_metadata, write_table


class FeaturesMismatch(ValueError):
    """A features file does not belong to the manifest (or model) it is read against."""


@dataclass
class Features:
    """Features of one model on one split, as float32 ``(N, dim x views)``."""

    sample_ids: np.ndarray
    values: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    meta: dict

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows with usable features."""
        return self.status == "ok"

    @property
    def views(self) -> list[str]:
        """The view names, in the order their blocks appear in :attr:`values`."""
        return [v for v in self.meta.get("views", "").split(",") if v]

    def view(self, name: str) -> np.ndarray:
        """The ``(N, dim)`` block of one view."""
        views = self.views
        if name not in views:
            raise KeyError(f"view {name!r} not in this features file (it has {views})")
        d = int(self.meta["dim"])
        i = views.index(name)
        return self.values[:, i * d:(i + 1) * d]


def manifest_digest(sample_ids, paths) -> str:
    """BLAKE2b-128 of a manifest's ``sample_id`` and ``path`` columns, row by row, in order."""
    h = hashlib.blake2b(digest_size=16)
    for s, p in zip(sample_ids, paths):
        h.update(f"{s}\t{p}\n".encode())
    return h.hexdigest()


def features_table(sample_ids, values: np.ndarray, *, status=None, reason=None) -> pa.Table:
    """Build the contract table; rows whose status is not ``ok`` get null features."""
    n, d = values.shape
    status = np.asarray(["ok"] * n if status is None else status, dtype=object)
    reason = np.asarray([""] * n if reason is None else reason, dtype=object)
    mask = pc.invert(pa.array(status == "ok"))
    flat = pa.array(np.ascontiguousarray(values, np.float16).ravel())
    return pa.table(
        {
            "sample_id": pa.array(np.asarray(sample_ids, dtype=object), pa.string()),
            "status": pa.array(status, pa.string()),
            "reason": pa.array(reason, pa.string()),
            "features": pa.FixedSizeListArray.from_arrays(flat, d, mask=mask),
        }
    )


def write_features(path: str | Path, table: pa.Table, *, model: str, arch: str, split: str, dim: int, views, digest: str,
                   **meta) -> None:
    """Write a features table atomically with its contract metadata."""
    views = list(views)
    width = table.schema.field("features").type.list_size
    if width != dim * len(views):
        raise ValueError(f"{path}: features are {width} wide, not dim {dim} x {len(views)} views")
    write_table(path, table, metadata={"model": model, "arch": arch, "split": split, "dim": dim, "views": ",".join(views),
                                       "manifest_digest": digest, **meta})


def read_features(path: str | Path, manifest=None, *, model: str | None = None) -> Features:
    """Read a features file, checked against the manifest and model it must belong to.

    Args:
        path: The features parquet.
        manifest: A DataFrame with the ``sample_id`` and ``path`` columns the file
            must match row for row, in order (None: no check).
        model: The model name the file must have been computed for (None: no check).

    Raises:
        FileNotFoundError: no such file.
        FeaturesMismatch: the file's rows, their order or its model differ from
            ``manifest`` / ``model`` (the message names the file and what differs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no features file (has the features stage run?)")
    meta = read_metadata(path)
    if model is not None and meta.get("model") != model:
        raise FeaturesMismatch(f"{path}: features of model {meta.get('model')!r}, not {model!r}; rerun the features stage")
    t = pq.read_table(path)
    ids = t["sample_id"].to_numpy(zero_copy_only=False).astype(object)
    if manifest is not None:
        want = manifest["sample_id"].astype(str).to_numpy()
        if len(ids) != len(want):
            raise FeaturesMismatch(f"{path}: {len(ids)} rows but the manifest has {len(want)}; rerun the features stage")
        if not np.array_equal(ids.astype(str), want):
            bad = int(np.flatnonzero(ids.astype(str) != want)[0])
            raise FeaturesMismatch(f"{path}: row {bad} is sample {ids[bad]!r} but the manifest has {want[bad]!r} there "
                                   "(rows or order differ); rerun the features stage")
        digest = manifest_digest(want, manifest["path"].astype(str))
        if meta.get("manifest_digest") != digest:
            raise FeaturesMismatch(f"{path}: computed from other manifest rows (paths differ: digest {meta.get('manifest_digest')} "
                                   f"vs {digest}); rerun the features stage")
    n = t.num_rows
    width = t.schema.field("features").type.list_size
    arr = t["features"].combine_chunks()
    values = np.zeros((n, width), np.float32)
    if n:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        flat = arr.values.to_numpy(zero_copy_only=False).reshape(-1, width)
        values[valid] = flat[valid] if len(flat) == n else flat
    return Features(sample_ids=ids, values=values, status=t["status"].to_numpy(zero_copy_only=False).astype(object),
                    reason=t["reason"].to_numpy(zero_copy_only=False).astype(object), meta=meta)
