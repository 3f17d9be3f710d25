"""Stage ``headline``: the detail metrics files -> ``metrics/headline.json`` and the sweep plot's data."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import Params
from ..io import write_text
from ..workspace import Workspace


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run(params: Params | None, ws: Workspace) -> Path:
    """Write ``ws.headline`` (:func:`imagenet_clean.evaluate.headline.headline_metrics`) and ``ws.headline_plot``.

    Reads only metrics files: ``metrics/cleanup/<split>.json``, ``detection.json``,
    ``review.json``, ``table1.json`` and ``table2.json`` (a missing one leaves its
    figures out). ``params`` is not read. Returns the headline file's path.
    """
    from ..evaluate.headline import PLOT_COLUMNS, SPLITS, headline_metrics, plot_rows

    head = headline_metrics(
        {s: _read(ws.cleanup_metrics(s)) for s in SPLITS},
        detection=_read(ws.detection), review=_read(ws.review_metrics),
        table1=_read(ws.metric("table1.json")), table2=_read(ws.metric("table2.json")),
    )
    # key order is the column order of `dvc exp show`: not sorted (io.write_json sorts)
    write_text(ws.headline, json.dumps(head, indent=2) + "\n")
    rows = pd.DataFrame(plot_rows(head), columns=list(PLOT_COLUMNS))
    write_text(ws.headline_plot, rows.to_csv(index=False, lineterminator="\n"))
    return ws.headline
