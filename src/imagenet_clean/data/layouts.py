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


# ------------------------------------------------------------------ your own folders (data/sources.py "folders")

NON_UTF8_NAME = "non-UTF-8 file name"
MISSING_FILE = "missing file"
PATH_OUTSIDE = "path outside the dataset root"
NOT_OPENED = (*LINK_ERRORS, NON_UTF8_NAME, MISSING_FILE, PATH_OUTSIDE)
"""Reason prefixes of entries that are listed but never opened (no such file of the dataset to read)."""

NESTED_LAYOUTS = frozenset({"imagefolder", "csv"})
"""Layouts whose cleaned tree (``apply``) keeps each file's path below its class folder: ``<class>/<sub/path>``."""

LABEL_FILE_LAYOUTS = frozenset({"csv"})
"""Layouts whose reader takes the split's ``labels`` file itself (``labels_file=``) instead of parsed annotations."""


def image_suffixes() -> frozenset[str]:
    """Every file suffix Pillow reads (``PIL.Image.registered_extensions()``), lower case, with the dot."""
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


def printable_name(rel: str) -> str:
    """``rel`` as valid UTF-8 text: undecodable bytes (a non-UTF-8 file name) become ``\\xNN`` escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def is_utf8_name(rel: str) -> bool:
    """False for a name the file system gave with bytes that are not UTF-8 (Python's surrogate escapes)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_image_file(rel: str, suffixes: frozenset[str]) -> bool:
    """An image by its suffix (any case), not hidden (``.DS_Store``, AppleDouble ``._x.jpg``) at any depth."""
    parts = rel.split("/")
    return not any(p.startswith(".") for p in parts) and os.path.splitext(parts[-1])[1].lower() in suffixes


def list_images(root: Path, *, skip: tuple[Path, ...] = (), errors: dict[str, str] | None = None) -> tuple[list[str], int]:
    """``(image files, number of other files ignored)`` under ``root``: :func:`list_files` kept to Pillow's suffixes.

    Links that may not be followed are kept when their name is an image's (their reason goes into ``errors``).
    """
    suffixes = image_suffixes()
    files = list_files(root, skip=skip, errors=errors)
    kept = [rel for rel in files if is_image_file(rel, suffixes)]
    return kept, len(files) - len(kept)


def class_folders(root: Path) -> tuple[list[str], list[str]]:
    """``(classes, empty)``: first-level folders of ``root`` holding at least one image (at any depth), sorted as
    ``torchvision.datasets.ImageFolder`` sorts them, and the folders holding none. Hidden and non-UTF-8 folders are
    neither."""
    images, _ = list_images(root)
    have = sorted({rel.partition("/")[0] for rel in images if "/" in rel and is_utf8_name(rel)})
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".") and is_utf8_name(e.name))
    return have, [f for f in folders if f not in set(have)]


def _tree_entry(rel: str, classes: ClassList) -> Entry:
    if not is_utf8_name(rel):
        name = printable_name(rel)
        return Entry(name, error=f"{NON_UTF8_NAME}: {name} (rename it in UTF-8)")
    head, sep, _ = rel.partition("/")
    if not sep:
        return Entry(rel, error="not in a class folder: file at the top of the root")
    if head not in classes:
        return Entry(rel, error=f"unknown class folder {head}: not a class of the training split")
    return Entry(rel, wnid=head, label=classes.index(head))


@register_layout("imagefolder")
def read_imagefolder(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=()) -> list[Entry]:
    """Your own tree: the class is the first-level folder (any name), nested sub-folders below it, image suffixes only.

    Files whose suffix Pillow does not read, and hidden files, are not listed
    (:func:`list_images`). A non-UTF-8 name is listed with its reason and never opened.
    """
    errors: dict[str, str] = {}
    images, _ = list_images(root, skip=skip, errors=errors)
    return _with_link_errors([_tree_entry(rel, classes) for rel in images], errors)


@register_layout("csv")
def read_csv_layout(root: Path, *, classes: ClassList, labels: Mapping[str, LabelRef] | None = None, skip=(),
                    labels_file: str | Path | None = None) -> list[Entry]:
    """Files and labels from a ``path,label`` CSV (``labels_file``), paths relative to ``root``.

    A row whose path leaves the root, whose file is missing, whose label is
    empty or not a class of the training split is listed with its reason.
    Files under the root that the CSV does not name are not listed.

    Raises:
        ValueError: the CSV itself is unusable (see :func:`imagenet_clean.data.labelcsv.read_labels_csv`).
    """
    from .labelcsv import read_labels_csv

    if labels_file is None:
        raise ValueError("layout csv needs splits.<split>.labels: a CSV with the columns path,label")
    rows = read_labels_csv(labels_file)
    root_real = os.path.realpath(root)
    entries = []
    for row in rows:
        rel = row.path
        if row.error:
            entries.append(Entry(rel, error=row.error))
            continue
        full = os.path.join(root, rel)
        if os.path.islink(full):
            why = _link_error(full, rel, root_real)
            if why:
                entries.append(Entry(rel, error=why))
                continue
        if not os.path.isfile(full):
            entries.append(Entry(rel, wnid=row.label, error=f"{MISSING_FILE}: {rel} ({row.where}) is not a file under the root"))
        elif not row.label:
            entries.append(Entry(rel, error=f"no label: empty label ({row.where})"))
        elif row.label not in classes:
            why = f"unknown class {row.label!r} ({row.where}): not a class of the training split"
            entries.append(Entry(rel, wnid=row.label, error=why))
        else:
            entries.append(Entry(rel, wnid=row.label, label=classes.index(row.label)))
    return entries
