"""Dataset layouts: how files under a split root map to classes.

A registry (:data:`LAYOUTS`) of readers ``fn(root, *, classes, labels) -> list[Entry]``:

* ``train``: ImageNet train, ``<wnid>/<wnid>_<n>.JPEG``;
* ``folders``: any ImageFolder tree of ``<wnid>/...`` folders;
* ``val``: ImageNet validation, flat ``ILSVRC2012_val_XXXXXXXX.JPEG`` files
  labelled by an annotation source (``labels``), and/or ``<wnid>/`` folders;
* ``v2``: ImageNetV2, folders ``0``..``999`` naming class indices by integer
  value (folder ``10`` is class 10, whatever the string order).

Every regular file found is returned: a file that cannot be given a class
(unknown class folder, no label, outside any class folder) carries an
``error`` and is kept, so the manifest lists it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..classes import ClassList
from .annotations import LabelRef


@dataclass
class Entry:
    """One file under a split root.

    Attributes:
        path: Path relative to the root, POSIX separators (also the ``sample_id``).
        wnid: Class id, empty when unknown.
        label: Index into the class list, -1 when unknown.
        error: Why no class could be given, empty when the class is known.
    """

    path: str
    wnid: str = ""
    label: int = -1
    error: str = ""


LAYOUTS: dict[str, Callable[..., list[Entry]]] = {}


def register_layout(name: str):
    """Decorator adding a layout reader ``fn(root, *, classes, labels=None, skip=()) -> list[Entry]``."""

    def deco(fn):
        LAYOUTS[name] = fn
        return fn

    return deco


def list_files(root: Path, *, skip: tuple[Path, ...] = ()) -> list[str]:
    """Every regular file under ``root`` (recursively), relative POSIX paths, sorted.

    Args:
        root: The split root.
        skip: Files or folders not to list (an annotation source stored inside the root).
    """
    skip_abs = {os.path.abspath(p) for p in skip}
    out: list[str] = []
    stack = [(str(root), "")]
    seen = {os.path.realpath(root)}
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as it:
            for e in it:
                if os.path.abspath(e.path) in skip_abs:
                    continue
                r = f"{rel}{e.name}"
                if e.is_dir(follow_symlinks=True):
                    real = os.path.realpath(e.path)
                    if real not in seen:  # symlink cycles are followed once
                        seen.add(real)
                        stack.append((e.path, r + "/"))
                elif e.is_file(follow_symlinks=True):
                    out.append(r)
    out.sort()
    return out


def _class_folder_entry(rel: str, folder_class: Callable[[str], tuple[str, int] | None]) -> Entry:
    head, sep, _ = rel.partition("/")
    if not sep:
        return Entry(rel, error="not in a class folder: file at the top of the root")
    cls = folder_class(head)
    if cls is None:
        return Entry(rel, error=f"unknown class folder {head}")
    return Entry(rel, wnid=cls[0], label=cls[1])


def _by_wnid(classes: ClassList):
    def folder_class(name: str):
        return (name, classes.index(name)) if name in classes else None

    return folder_class


@register_layout("train")
@register_layout("folders")
def read_folders(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """``<wnid>/...`` class folders (ImageNet train, any ImageFolder tree)."""
    folder_class = _by_wnid(classes)
    return [_class_folder_entry(rel, folder_class) for rel in list_files(root, skip=skip)]


@register_layout("val")
def read_val(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """Flat files labelled by ``labels`` (keyed by file stem), and/or ``<wnid>/`` folders."""
    folder_class = _by_wnid(classes)
    labels = labels or {}
    entries = []
    for rel in list_files(root, skip=skip):
        if "/" in rel:
            entries.append(_class_folder_entry(rel, folder_class))
            continue
        ref = labels.get(Path(rel).stem)
        if ref is None:
            why = "no annotation source given" if not labels else "not in the annotation source"
            entries.append(Entry(rel, error=f"no label: {why}"))
        elif ref.wnid not in classes:
            entries.append(Entry(rel, wnid=ref.wnid, error=f"unknown class {ref.wnid!r} ({ref.where})"))
        else:
            entries.append(Entry(rel, wnid=ref.wnid, label=classes.index(ref.wnid)))
    return entries


@register_layout("v2")
def read_v2(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """ImageNetV2 folders named by integer class index (``0``..``K-1``, by value)."""

    def folder_class(name: str):
        if not (name.isascii() and name.isdigit()) or int(name) >= len(classes):
            return None
        i = int(name)
        return classes.wnids[i], i

    return [_class_folder_entry(rel, folder_class) for rel in list_files(root, skip=skip)]
