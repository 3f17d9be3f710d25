"""What several stages share: the project's class list, merge table and split roots, and the skipped-split rule."""
from __future__ import annotations

from pathlib import Path

from ..classes import ClassList, load_classes, resolve_class_spec
from ..config import Params
from ..workspace import Workspace


def skip_reason(params: Params, split: str) -> str | None:
    """Why a split's stages write empty outputs: not configured, or a null root; None when it is to be run."""
    sc = params.splits.get(split)
    if sc is None:
        return "not configured in params.yaml splits"
    if not sc.root:
        return f"splits.{split}.root is null"
    return None


def project_classes(meta: dict, params: Params, ws: Workspace) -> ClassList:
    """The class list a manifest names (``meta["classes"]``), else ``dataset.classes``; relative paths are the project's."""
    return load_classes(resolve_class_spec(meta.get("classes") or params.dataset.classes, ws.root))


def merge_spec(params: Params, ws: Workspace) -> str:
    """``dataset.merges`` with a relative CSV path made the project's; built-in names pass through."""
    from ..cleanup.merges import resolve_merge_spec

    return resolve_merge_spec(params.dataset.merges, ws.root)


def split_root(meta: dict, params: Params, split: str, ws: Workspace) -> Path:
    """The image root of a split: its manifest's ``root``, else ``splits.<split>.root``; relative paths are the project's."""
    root = Path(meta.get("root") or params.splits[split].root or ".")
    return root if root.is_absolute() else ws.root / root
