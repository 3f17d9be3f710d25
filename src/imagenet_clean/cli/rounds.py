"""`imagenet-clean` commands of the rounds group: ``rounds`` (iterated cleaning, params.yaml ``rounds``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import CAM, JOBS, PARAMS, load


def rounds(
    params: Path = PARAMS,
    cam: Optional[bool] = CAM,
    jobs: int = JOBS,
) -> None:
    """Cleaning rounds 2..`rounds`: retrain the cleanup models on the previous round's clean training set, clean again.

    Writes data/rounds/<r>/ (manifests, models, predictions, decisions, clean, changes) and metrics/rounds/<r>/
    (cleanup metrics, tables); with `rounds: 1` only the two folders' README files.
    """
    from ..stages import rounds as stage

    p, ws = load(params)
    done = stage.run(p, ws, cam=cam, n_jobs=jobs or None)
    if not done:
        typer.echo("rounds: 1: no further cleaning round (wrote data/rounds/README.md and metrics/rounds/README.md)")
    for s in done:
        counts = "; ".join(f"{split}: {c.get('fix', 0)} fixes, {c.get('remove', 0)} removals" for split, c in s["clean"].items()
                           if not c.get("skipped"))
        typer.echo(f"round {s['round']}: {s['n_train']} training images; {counts}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("rounds")(rounds)
