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
``error`` and is kept, so the manifest lists it. So does a symlink that leaves
the root or dangles (:data:`LINK_ERRORS`): it is listed, never opened.
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


SYMLINK_OUTSIDE = "symlink outside the dataset root"
BROKEN_SYMLINK = "broken symlink"
LINK_ERRORS = (SYMLINK_OUTSIDE, BROKEN_SYMLINK)
"""Reason prefixes of links that are listed but never opened (their target is not a file of the dataset)."""


def _link_error(path: str, rel: str, root_real: str) -> str:
    """Why the symlink ``path`` may not be followed, or ``""`` when it stays inside the root."""
    target = os.readlink(path)
    real = os.path.realpath(path)
    if not os.path.exists(real):
        return f"{BROKEN_SYMLINK}: {rel} -> {target}"
    if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
        return f"{SYMLINK_OUTSIDE}: {rel} -> {target}"
    return ""


def list_files(root: Path, *, skip: tuple[Path, ...] = (), errors: dict[str, str] | None = None) -> list[str]:
    """Every regular file under ``root`` (recursively), relative POSIX paths, sorted.

    Symlinks resolving inside the root are followed like the files and folders
    they point to (a cycle is followed once). A symlink leaving the root, or
    dangling, is listed without being opened or descended into, and its reason
    (``symlink outside the dataset root: <name> -> <target>`` or ``broken
    symlink: ...``) is put in ``errors``.

    Args:
        root: The split root.
        skip: Files or folders not to list (an annotation source stored inside the root).
        errors: Filled with ``relative path -> reason`` for the links that may not be followed.
    """
    skip_abs = {os.path.abspath(p) for p in skip}
    errors = {} if errors is None else errors
    root_real = os.path.realpath(root)
    out: list[str] = []
    stack = [(str(root), "")]
    seen = {root_real}
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as it:
            for e in it:
                if os.path.abspath(e.path) in skip_abs:
                    continue
                r = f"{rel}{e.name}"
                if e.is_symlink():
                    why = _link_error(e.path, r, root_real)
                    if why:
                        out.append(r)
                        errors[r] = why
                        continue
                if e.is_dir(follow_symlinks=True):
                    real = os.path.realpath(e.path)
                    if real not in seen:  # symlink cycles are followed once
                        seen.add(real)
                        stack.append((e.path, r + "/"))
                elif e.is_file(follow_symlinks=True):
                    out.append(r)
    out.sort()
    return out


def _with_link_errors(entries: list[Entry], errors: Mapping[str, str]) -> list[Entry]:
    """Give the links that may not be followed their reason (the class, when known, is kept for the record)."""
    for e in entries:
        if e.path in errors:
            e.error = errors[e.path]
    return entries


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
    errors: dict[str, str] = {}
    return _with_link_errors([_class_folder_entry(rel, folder_class) for rel in list_files(root, skip=skip, errors=errors)],
                             errors)


@register_layout("val")
def read_val(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """Flat files labelled by ``labels`` (keyed by file stem), and/or ``<wnid>/`` folders."""
    folder_class = _by_wnid(classes)
    labels = labels or {}
    entries = []
    errors: dict[str, str] = {}
    for rel in list_files(root, skip=skip, errors=errors):
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
    return _with_link_errors(entries, errors)


@register_layout("v2")
def read_v2(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """ImageNetV2 folders named by integer class index (``0``..``K-1``, by value)."""

    def folder_class(name: str):
        if not (name.isascii() and name.isdigit()) or int(name) >= len(classes):
            return None
        i = int(name)
        return classes.wnids[i], i

    errors: dict[str, str] = {}
    return _with_link_errors([_class_folder_entry(rel, folder_class) for rel in list_files(root, skip=skip, errors=errors)],
                             errors)
