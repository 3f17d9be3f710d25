"""Stage ``tables``: table 1 (issues found and accuracy of every model on the original and cleaned splits)."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> Path:
    """Predict ``tables.extra_models`` on the usable splits, then write ``ws.metric("table1.json")``; returns it."""
    from ..evaluate.splits import usable_splits
    from ..evaluate.table1 import predict_extra, write_table1

    splits, skipped = usable_splits(params, ws, predictions=True)
    predict_extra(params, splits, paths=ws)
    return write_table1(list(params.models), splits, paths=ws, skipped=skipped, extra_models=list(params.tables.extra_models))
