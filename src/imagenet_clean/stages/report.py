"""Stage ``report``: every computed table of every round as ``metrics/report.md``, and the changes-per-class plot data."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace) -> Path:
    """Write ``ws.report`` and ``ws.plots/changes_per_class.csv``; returns the report's path.

    Splits whose root is null are left out of the plot (their decision files are empty).
    """
    from ..evaluate.report import write_report

    splits = [name for name, sc in params.splits.items() if sc.root is not None]
    return write_report(splits, rounds=params.rounds, workspace=ws)
