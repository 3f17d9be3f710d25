"""Stage ``ablations``: train on T with only fixes, only removals, only merges, and all (``tables.ablations``)."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> Path:
    """Write ``ws.metric("ablations.json")`` and its per-seed runs; returns the table's path."""
    from ..evaluate.ablations import write_ablations

    return write_ablations(params, paths=ws)
