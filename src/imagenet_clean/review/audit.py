"""The review app's audit sample: kept images drawn by a seed, so that reviewers judge what the machine kept."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def audit_rank(sample_ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded order of samples (for the audit sample of kept images).

    Each sample's rank is a hash of the seed and its id, so the sample does not depend on the order of
    the rows, and a kept image stays in it when other images change.
    """
    keys = [hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).hexdigest() for s in sample_ids]
    return np.argsort(np.asarray(keys, dtype=object), kind="stable")


def audit_batches(pf: pq.ParquetFile, ids: Sequence[str], rows: np.ndarray, n_rows: int, *, audit: int, seed: int,
                  columns: list[str], batch_size: int) -> tuple[list[pa.RecordBatch], list[np.ndarray]]:
    """The ``audit`` rows among ``rows`` (the kept images, ids ``ids``) first by :func:`audit_rank`, read in a
    second pass over the decisions file: their batches of ``columns`` and their row positions."""
    pick = np.zeros(n_rows, bool)
    pick[rows[audit_rank(ids, seed)[:audit]]] = True
    parts, where, start = [], [], 0
    for b in pf.iter_batches(batch_size=batch_size, columns=columns):
        hit = np.flatnonzero(pick[start:start + b.num_rows])
        if len(hit):
            parts.append(b.take(pa.array(hit, pa.int64())))
            where.append(hit + start)
        start += b.num_rows
    return parts, where
