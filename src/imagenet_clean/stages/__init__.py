"""One module per dvc.yaml stage; each ``run(params, ws, ...)`` is what that stage's command calls.

A stage function reads and writes the files its :class:`~imagenet_clean.workspace.Workspace`
names and calls the library packages (``data``, ``models``, ``cleanup``,
``evaluate``, ``review``) for the work. The ``rounds`` stage runs the same
functions in ``Workspace(round=r)``.
"""
from __future__ import annotations

STAGES = {
    "generate": "generate",
    "scan": "scan",
    "ingest": "ingest",
    "quality": "quality",
    "features": "features",
    "fit": "fit",
    "predict": "predict",
    "windows": "windows",
    "clean": "clean",
    "review": "review",
    "score": "score",
    "suggest_merges": "suggest_merges",
    "duplicates": "duplicates",
    "tables": "tables",
    "retrain": "retrain",
    "table3": "table3",
    "ablations": "ablations",
    "rounds": "rounds",
    "report": "report",
    "headline": "headline",
}
"""dvc.yaml stage name -> module of this package that implements it."""
