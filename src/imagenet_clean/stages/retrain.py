"""Stage ``retrain``: table 2 (``tables.archs`` trained on T and T_c over ``tables.seeds``, scored on every split)."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> Path:
    """Write ``ws.metric("table2.json")`` and its per-seed runs (cached, resumable); returns the table's path."""
    from ..evaluate.table2 import write_table2

    return write_table2(params, paths=ws)
