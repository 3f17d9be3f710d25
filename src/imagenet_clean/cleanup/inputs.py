"""Refusals of bad clean-stage inputs that name what is wrong: duplicate sample ids, prediction files of the wrong shape."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SHOW = 5
"""Duplicates named in a message."""


def check_unique_ids(ids: pd.Index, *, source: str, show: int = SHOW) -> None:
    """Refuse a manifest whose ``sample_id`` repeats, naming the first duplicates and their rows.

    Args:
        ids: The manifest's sample ids, in row order.
        source: The manifest file, for the message.
        show: How many duplicated ids to name.

    Raises:
        ValueError: ``file <source>: N duplicate sample_id(s) among R rows, first: 'a' (rows 3, 9), ...``.
    """
    if not ids.has_duplicates:
        return
    repeats = ids.duplicated()
    first = list(dict.fromkeys(ids[repeats][:10 * show].tolist()))[:show]
    values = ids.to_numpy()
    named = ", ".join(f"{d!r} (rows {', '.join(map(str, np.flatnonzero(values == d)[:3].tolist()))})" for d in first)
    raise ValueError(f"file {source}: {int(repeats.sum())} duplicate sample_id(s) among {len(ids)} rows, first: {named}; "
                     "each sample must appear once (re-run ingest, or fix the manifest)")


def check_prediction_shape(path, *, model: str, num_classes: int, sample_ids: np.ndarray | None = None) -> None:
    """Refuse a prediction file whose probability vectors do not have ``num_classes`` entries, from its schema alone.

    Raises:
        ValueError: naming the file, the model, its row count and an example row.
    """
    pf = pq.ParquetFile(path)
    k = getattr(pf.schema_arrow.field("probs").type, "list_size", None)
    if k is None or k == num_classes:  # not fixed-size: read_predictions' own checks decide
        return
    n = pf.metadata.num_rows
    ids = pf.read_row_group(0, columns=["sample_id"])["sample_id"] if pf.metadata.num_row_groups else None
    example = f"; e.g. row 0 (sample {ids[0].as_py()!r}) has {k} probabilities" if ids is not None and len(ids) else ""
    raise ValueError(f"file {path}, model {model!r}: {k} classes, but the class list has {num_classes} "
                     f"(all {n} rows{example})")
