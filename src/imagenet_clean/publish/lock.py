"""What a release's ``dvc.lock`` says about its published files.

A release is a git revision; its ``dvc.lock`` names every output's md5 and
size. Whoever fetches a published file compares it with these: a file whose
md5 is not the lock's is never used.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..workspace import Workspace

CLEAN_STAGE = "clean"
"""The foreach stage group whose outputs users need (``clean@<split>``)."""


@dataclass(frozen=True)
class LockedFile:
    """One output file of a ``dvc.lock``.

    Attributes:
        path: Path relative to the repository root (POSIX).
        md5: The md5 DVC recorded (``.dir`` suffixed for a folder).
        size: Size in bytes DVC recorded (None when absent).
        stage: Name of the stage that writes it (``clean@val``).
    """

    path: str
    md5: str
    size: int | None
    stage: str


def parse_lock(text: str) -> dict[str, LockedFile]:
    """Every output of a ``dvc.lock`` text, by path.

    Raises:
        ValueError: the text is not a DVC 3 lock file.
    """
    try:
        lock = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"dvc.lock is not valid YAML: {e}") from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise ValueError("dvc.lock has no 'stages' (not a DVC 3 lock file)")
    files = {}
    for stage, entry in stages.items():
        for out in (entry or {}).get("outs") or []:
            if isinstance(out, dict) and out.get("path") and out.get("md5"):
                files[out["path"]] = LockedFile(out["path"], str(out["md5"]), out.get("size"), stage)
    return files


def read_lock(root: str | Path) -> dict[str, LockedFile]:
    """:func:`parse_lock` of ``<root>/dvc.lock``."""
    path = Path(root) / "dvc.lock"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dvc.lock (run `dvc repro` first)")
    return parse_lock(path.read_text())


def cached_outs(repo) -> tuple[dict[str, LockedFile], list[tuple[str, str]]]:
    """A DVC repo's ``dvc.lock`` entries (empty without one) and its cached outputs as ``(path from the root, stage name)``."""
    root = Path(repo.root_dir)
    outs = [(Path(o.fs_path).relative_to(root).as_posix(), o.stage.name) for o in repo.index.outs if o.use_cache]
    return (parse_lock((root / "dvc.lock").read_text()) if (root / "dvc.lock").is_file() else {}), outs


def lock_params(text: str, stage: str) -> dict:
    """The ``params.yaml`` values a stage of a ``dvc.lock`` text ran with (empty when none)."""
    lock = yaml.safe_load(text) or {}
    entry = (lock.get("stages") or {}).get(stage) or {}
    return dict((entry.get("params") or {}).get("params.yaml") or {})


def clean_manifest_path(split: str) -> str:
    """The clean manifest of a split, relative to the repository root."""
    return Workspace().clean(split).as_posix()


def decisions_path(split: str) -> str:
    """The decisions table of a split, relative to the repository root."""
    return Workspace().decisions(split).as_posix()


def _splits_in(paths, folder: Path) -> list[str]:
    prefix = folder.as_posix() + "/"
    return sorted(Path(p).stem for p in paths if p.startswith(prefix) and p.endswith(".parquet"))


def clean_splits(files) -> list[str]:
    """The splits whose clean manifest the lock's paths (``files``: paths, or a dict keyed by path) name, sorted."""
    return _splits_in(files, Workspace().clean("-").parent)


def decision_splits(files) -> list[str]:
    """The splits whose decisions table the lock's paths name, sorted."""
    return _splits_in(files, Workspace().decisions("-").parent)


def md5_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """The md5 DVC records for a file (of its bytes)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
