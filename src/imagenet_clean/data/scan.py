"""A split's listing fingerprint: what ``scan@<split>`` writes so that ``dvc repro`` notices tree changes.

DVC never hashes the image trees (they may hold millions of files). Instead
the always-run ``scan@<split>`` stage lists the split root, stats each file
and writes a small JSON: the count and a BLAKE2b digest of every
``path, size, mtime_ns`` line (plus the labels CSV's bytes). Adding, moving,
removing or editing a photo changes the digest, so ``ingest@<split>`` and what
follows rerun; an unchanged tree gives byte-identical JSON, so nothing
downstream reruns. For a folder dataset's training split the JSON also holds
the class list (``classes``), which ``dataset.classes`` points at.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .labelcsv import csv_classes, read_labels_csv
from .layouts import LABEL_FILE_LAYOUTS, class_folders, list_files

MIN_CLASSES = 2
"""A folder dataset needs at least this many classes."""


def listing_digest(root: str | Path) -> tuple[int, str]:
    """``(number of files, BLAKE2b-128 hex)`` over ``path<TAB>size<TAB>mtime_ns`` of every file under ``root``, in order.

    Links that may not be followed (leaving the root, dangling) count with size and time -1.
    """
    root = Path(root)
    errors: dict[str, str] = {}
    files = list_files(root, errors=errors)
    h = hashlib.blake2b(digest_size=16)
    for rel in files:
        if rel in errors:
            size, mtime = -1, -1
        else:
            st = os.stat(root / rel)
            size, mtime = st.st_size, st.st_mtime_ns
        h.update(os.fsencode(rel) + f"\t{size}\t{mtime}\n".encode())
    return len(files), h.hexdigest()


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 hex of a (small) file's bytes."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def train_classes(root: str | Path, *, layout: str, labels: str | Path | None = None) -> dict:
    """The class list a folder dataset's training split gives: ``{"classes": [...], "empty_class_folders": [...]}``.

    ``imagefolder``: the first-level folders holding at least one image (sorted as
    ``torchvision.datasets.ImageFolder`` sorts); ``csv``: the distinct labels of
    the CSV's usable rows.

    Raises:
        ValueError: fewer than :data:`MIN_CLASSES` classes (an empty tree, one class).
    """
    if layout in LABEL_FILE_LAYOUTS:
        if labels is None:
            raise ValueError(f"layout {layout} needs a labels CSV (splits.train.labels)")
        classes, empty = csv_classes(read_labels_csv(labels)), []
        where = f"{labels}"
    else:
        classes, empty = class_folders(Path(root))
        where = f"{root}"
    if len(classes) < MIN_CLASSES:
        found = "no class with an image" if not classes else f"1 class ({classes[0]!r})"
        extra = f"; empty class folders: {', '.join(empty[:5])}" if empty else ""
        raise ValueError(f"{where}: {found}; a dataset to clean needs at least {MIN_CLASSES} classes with images{extra}")
    return {"classes": classes, "empty_class_folders": empty}


def scan_split(split: str, root: str | Path | None, *, layout: str, labels: str | Path | None = None,
               class_list: bool = False) -> dict:
    """The scan JSON of one split (JSON-able, key order fixed).

    Args:
        split: The split name.
        root: The split root (None: the split is not configured; the JSON says so).
        layout: Its layout.
        labels: Its labels file, when it has one (its bytes are fingerprinted too).
        class_list: Also list the classes (:func:`train_classes`; a folder dataset's training split).

    Raises:
        FileNotFoundError / NotADirectoryError: the root is missing or not a folder.
        ValueError: see :func:`train_classes`.
    """
    if not root:
        return {"split": split, "skipped": True}
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset root of split {split} not found")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: dataset root of split {split} is not a folder")
    n, digest = listing_digest(root)
    out = {"split": split, "skipped": False, "layout": layout, "n_files": n, "listing_blake2b": digest,
           "labels_blake2b": file_digest(labels) if labels and Path(labels).is_file() else None}
    if class_list:
        out.update(train_classes(root, layout=layout, labels=labels))
    return out
