"""Plain file lists and class lists beside an applied ImageFolder tree.

Many trainers read ``path<TAB>label`` lists (``train.txt`` style) instead of
walking folders. ``apply`` writes, in its output folder:

* ``<split>.txt``: one ``<wnid>/<file><TAB><label>`` line per image, sorted by
  path; the label is the clean manifest's label (an index into the dataset's
  class list). This list is authoritative.
* ``classes.txt``: the class ids in label order, one per line (line ``i`` is the
  class with label ``i``).

``torchvision.datasets.ImageFolder`` numbers the class folders in sorted order
instead; :func:`imagefolder_target_map` converts its indices to clean labels
(they coincide for ImageNet-1k, whose class order is the sorted wnids).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..io import write_text

CLASSES_FILE = "classes.txt"


def format_file_list(items: list[tuple[str, int]]) -> str:
    """``path<TAB>label`` lines, sorted by path.

    Args:
        items: ``(relative path, label)`` pairs; paths use ``/`` separators.

    Raises:
        ValueError: a path holds a tab or a newline (the list could not be read back).
    """
    bad = [p for p, _ in items if "\t" in p or "\n" in p]
    if bad:
        raise ValueError(f"paths with a tab or newline cannot go in a file list: {bad[:5]}")
    return "".join(f"{p}\t{int(label)}\n" for p, label in sorted(items))


def read_file_list(path: str | Path) -> list[tuple[str, int]]:
    """Read a ``path<TAB>label`` list written by :func:`format_file_list`.

    Raises:
        ValueError: a line is not ``path<TAB>integer`` (quotes the file and line).
    """
    path = Path(path)
    items = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'path<TAB>label', got {line!r}")
        items.append((parts[0], int(parts[1])))
    return items


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` atomically unless the file already holds exactly it; True when written."""
    path = Path(path)
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return False
    write_text(path, text)
    return True


def read_classes(out: str | Path) -> list[str]:
    """Class ids in label order from ``<out>/classes.txt`` (empty lines are label gaps)."""
    return Path(out, CLASSES_FILE).read_text().splitlines()


def imagefolder_target_map(out: str | Path) -> dict[int, int]:
    """ImageFolder class index -> clean label, for an applied tree.

    ImageFolder indexes the class folders of ``out`` in sorted order; the clean
    label of folder ``wnid`` is its line number in ``classes.txt``.

    Raises:
        ValueError: a class folder is not in ``classes.txt``.
    """
    label_of = {w: i for i, w in enumerate(read_classes(out)) if w}
    folders = sorted(e.name for e in os.scandir(out) if e.is_dir())
    unknown = [f for f in folders if f not in label_of]
    if unknown:
        raise ValueError(f"{out}: class folders not in {CLASSES_FILE}: {unknown[:5]}")
    return {i: label_of[w] for i, w in enumerate(folders)}
