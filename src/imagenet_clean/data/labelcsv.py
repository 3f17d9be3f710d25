"""Labels from a CSV: ``path,label`` rows, paths relative to the split root (``init folders --labels``).

Labels are read as text, never as numbers: ``007`` and ``7`` are two classes,
spaces and any unicode are kept as written (leading and trailing blanks of a
cell are stripped). What makes the whole file unusable (no ``path,label``
header, not UTF-8, a path listed twice) is one ``ValueError``; what is wrong
with one row (an empty label, a path leaving the root) is that row's reason.
"""
from __future__ import annotations

import csv
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .layouts import PATH_OUTSIDE

HEADER = ("path", "label")
# Duplicate paths listed in the error message (the count is always given).
_LISTED = 3


@dataclass(frozen=True)
class LabelRow:
    """One CSV row.

    Attributes:
        path: The path normalised to POSIX form relative to the root (the ``sample_id``).
        label: The class name as written (may be empty).
        where: ``file:line``.
        error: Why the row cannot be used as it is, empty when it can.
    """

    path: str
    label: str
    where: str
    error: str = ""


def normalise_path(path: str) -> str | None:
    """``path`` as a relative POSIX path below the root, or None when it is empty, absolute or leaves the root."""
    p = path.strip().replace("\\", "/")
    if not p or p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return None
    p = posixpath.normpath(p)
    if p == "." or p == ".." or p.startswith("../"):
        return None
    return p


def read_labels_csv(path: str | Path) -> list[LabelRow]:
    """The rows of a labels CSV, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8, no ``path,label`` header, a row without two cells,
            or a path listed more than once (the message names the file, the
            first duplicates and their lines).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels CSV not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}); save the CSV as UTF-8") from None
    reader = csv.reader(text.splitlines())
    head = next(reader, None)
    if head is None or tuple(c.strip().lower() for c in head[:2]) != HEADER:
        raise ValueError(f"{path}: the first line must be the header 'path,label'; found {','.join(head or [])[:60]!r}")
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    dups: list[str] = []
    for lineno, cells in enumerate(reader, 2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) < 2:
            raise ValueError(f"{path}:{lineno}: expected two cells 'path,label', got {','.join(cells)[:60]!r}")
        raw, label = cells[0], cells[1].strip()
        where = f"{path.name}:{lineno}"
        rel = normalise_path(raw)
        if rel is None:
            rows.append(LabelRow(raw, label, where, f"{PATH_OUTSIDE}: {raw!r} ({where}) is empty, absolute or leaves the root"))
            continue
        if rel in seen:
            dups.append(f"{rel!r} (lines {seen[rel]} and {lineno})")
            continue
        seen[rel] = lineno
        rows.append(LabelRow(rel, label, where))
    if dups:
        raise ValueError(f"{path}: {len(dups)} path(s) listed more than once, e.g. {'; '.join(dups[:_LISTED])}; "
                         "give each file one label")
    return rows


def csv_classes(rows: list[LabelRow]) -> list[str]:
    """The distinct non-empty labels of usable rows, sorted (the class list when the CSV labels the training split)."""
    return sorted({r.label for r in rows if r.label and not r.error})
