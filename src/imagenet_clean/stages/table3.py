"""Stage ``table3``: T_c models at non-square input sizes (``tables.resolutions``) against the square model."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> Path:
    """Write ``ws.metric("table3.json")`` and its per-seed runs; returns the table's path."""
    from ..evaluate.table3 import write_table3

    return write_table3(params, paths=ws)
