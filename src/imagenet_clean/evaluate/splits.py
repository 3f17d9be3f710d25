"""Which splits the tables can use, why the others are skipped, and the skipped-output format.

A split is *skipped* by the tables (and listed with its reason under
``skipped_splits`` in the metrics file) when params.yaml gives it no root, when
its manifest was written for a skipped split or has no readable image, when its
clean manifest was written for a skipped split, or (table 1 only) when its
prediction folder is missing or holds no prediction file. A table that cannot be
computed at all (its switch is off, no architecture, the training split is
skipped, no evaluated split is left) is written as :func:`skipped_output`, so
every output a DVC stage declares exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..constants import SKIPPED_WHY
from ..io import read_metadata, read_table, write_json
from ..workspace import Workspace
from .accuracy import CLEAN_SUFFIX, PLACEHOLDER, SYMBOLS, TRAIN_SPLIT

SKIPPED_SPLITS = "skipped_splits"
"""Top-level key of a metrics table listing the splits it left out: ``{split: reason}``."""

META_KEYS = (SKIPPED_SPLITS,)
"""Top-level keys of a metrics table that are not model/architecture rows."""


def skipped_output(reason: str, *, skipped_splits: Mapping[str, str] | None = None) -> dict:
    """The content of a metrics or runs file whose table was not computed: ``{"skipped": true, "why": ...}``."""
    out: dict = {"skipped": True, SKIPPED_WHY: reason}
    if skipped_splits:
        out[SKIPPED_SPLITS] = dict(skipped_splits)
    return out


def skip_reason_of(obj) -> str | None:
    """Why a loaded metrics table was skipped (``None`` when it was computed).

    Understands ``{"skipped": true, "why": r}`` and the older ``{"skipped": true, "reason": r}`` and ``{"skipped": r}``.
    """
    if not isinstance(obj, Mapping) or "skipped" not in obj or obj["skipped"] is False:
        return None
    if isinstance(obj["skipped"], str):
        return obj["skipped"]
    return str(obj.get(SKIPPED_WHY) or obj.get("reason") or "no reason recorded")


def table_rows(table: Mapping) -> dict:
    """The model/architecture rows of a metrics table, without :data:`META_KEYS`."""
    return {k: v for k, v in table.items() if k not in META_KEYS}


def write_skipped(paths: Workspace, names: Sequence[str], reason: str, *, skipped_splits: Mapping[str, str] | None = None) -> Path:
    """Write :func:`skipped_output` to each of this round's metrics files ``names``; returns the first path."""
    obj = skipped_output(reason, skipped_splits=skipped_splits)
    for name in names:
        write_json(paths.metric(name), obj)
    return paths.metric(names[0])


def _is_skipped_file(path: Path) -> bool:
    return path.is_file() and read_metadata(path).get("skipped") == "true"


def _n_readable(manifest: Path) -> int:
    return int((read_table(manifest, columns=["status"])["status"] == "ok").sum())


def _n_images(clean: Path) -> int:
    return int((read_table(clean, columns=["action"])["action"] != PLACEHOLDER).sum())


def split_skip_reason(split: str, paths: Workspace, *, root: str | None, predictions: bool = False) -> str | None:
    """Why ``split`` cannot be evaluated from this round's files, or ``None`` when it can.

    Args:
        split: Split name.
        paths: The round's file layout.
        root: ``splits.<split>.root`` of params.yaml.
        predictions: Also require a non-empty prediction folder (table 1).

    A missing manifest of a split with a root is not a skip: the caller's read
    raises ``FileNotFoundError`` naming the stage to run.
    """
    if root is None:
        return f"splits.{split}.root is null"
    manifest = paths.manifest(split)
    if manifest.is_file():
        if _is_skipped_file(manifest):
            return f"{manifest} was written for a skipped split"
        if _n_readable(manifest) == 0:
            return f"{manifest} has no readable image"
    if _is_skipped_file(paths.clean(split)):
        return f"{paths.clean(split)} was written for a skipped split"
    if predictions:
        folder = paths.round_data / "predictions" / split
        if not folder.is_dir() or not any(folder.glob("*.parquet")):
            return f"no prediction file in {folder}"
    return None


def usable_splits(params, paths: Workspace, *, predictions: bool = False) -> tuple[list[str], dict[str, str]]:
    """Evaluated splits (every configured split but the training split) that the tables can use.

    Returns:
        ``(splits, skipped)``: usable splits in params.yaml order, and ``{split: reason}`` for the others.
    """
    splits, skipped = [], {}
    for name, sc in params.splits.items():
        if name == TRAIN_SPLIT:
            continue
        why = split_skip_reason(name, paths, root=sc.root, predictions=predictions)
        if why:
            skipped[name] = why
        else:
            splits.append(name)
    return splits, skipped


def train_skip_reason(params, paths: Workspace, *, decisions: bool = False) -> str | None:
    """Why the training split cannot be trained on (T and T_c), or ``None``.

    Args:
        params: Loaded params.
        paths: The round's file layout.
        decisions: Also require the training decisions (ablations).
    """
    sc = params.splits.get(TRAIN_SPLIT)
    if sc is None:
        return f"params.yaml splits has no {TRAIN_SPLIT!r} split"
    why = split_skip_reason(TRAIN_SPLIT, paths, root=sc.root)
    if why:
        return why
    clean = paths.clean(TRAIN_SPLIT)
    if clean.is_file() and _n_images(clean) == 0:
        return f"{clean} has no training image (T_c is empty)"
    if decisions and _is_skipped_file(paths.decisions(TRAIN_SPLIT)):
        return f"{paths.decisions(TRAIN_SPLIT)} was written for a skipped split"
    return None


def _order(split: str) -> tuple:
    known = list(SYMBOLS)
    return (known.index(split) if split in known else len(known), split)


def primary_set(set_names: Sequence[str]) -> str | None:
    """The cleaned set the headline compares on: ``val_clean``, else the first cleaned set (V2_c, then by name)."""
    cleaned = sorted((s for s in set_names if s.endswith(CLEAN_SUFFIX)), key=lambda s: _order(s.removesuffix(CLEAN_SUFFIX)))
    return cleaned[0] if cleaned else None
