"""Ingestion: a split root in an ImageNet layout -> the manifest (docs/architecture.md).

Only image headers are read (plus the file's last bytes, to catch truncation),
in parallel worker processes. Every file found becomes one manifest row; a file
that cannot be used gets ``status="error"`` and a ``reason`` instead of being
dropped, and bad annotations are collected in the stats, never fatal.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..classes import ClassList
from ..constants import MAX_IMAGE_PIXELS
from .annotations import Annotations, load_annotations
from .images import inspect_image
from .layouts import LABEL_FILE_LAYOUTS, LAYOUTS, LINK_ERRORS, MISSING_FILE, NON_UTF8_NAME, NOT_OPENED, PATH_OUTSIDE

MANIFEST_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("path", pa.string()),
        ("label", pa.int64()),
        ("wnid", pa.string()),
        ("boxes", pa.list_(pa.list_(pa.float64(), 4))),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("content_hash", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)
"""The manifest columns, in order (docs/architecture.md, data contracts)."""

# Files per task sent to a worker process: large enough to hide the IPC cost.
_CHUNK = 512
# Fewer files than this are read in this process: a worker pool costs more than it saves.
_MIN_PARALLEL = 4096
# Most annotation errors listed one by one in the stats (the count is always exact).
MAX_LISTED_ERRORS = 1000


def _inspect_chunk(root: str, rels: list[str], max_pixels: int, hash: bool) -> list[tuple]:
    out = []
    for rel in rels:
        info = inspect_image(f"{root}/{rel}", max_pixels=max_pixels, hash=hash)
        out.append((info.width, info.height, info.size, info.mtime_ns, info.content_hash, info.reason))
    return out


def inspect_files(root: str | Path, rels: list[str], *, max_pixels: int, hash: bool, workers: int) -> list[tuple]:
    """``(width, height, size, mtime_ns, content_hash, reason)`` per file, in order, with a progress bar."""
    from ..progress import progress

    root = str(root)
    chunks = [rels[i : i + _CHUNK] for i in range(0, len(rels), _CHUNK)]
    results: list[list[tuple] | None] = [None] * len(chunks)
    with progress(total=len(rels), desc="ingest", unit="file") as bar:
        if workers <= 1 or len(rels) < _MIN_PARALLEL:
            for i, chunk in enumerate(chunks):
                results[i] = _inspect_chunk(root, chunk, max_pixels, hash)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                futures = {pool.submit(_inspect_chunk, root, c, max_pixels, hash): i for i, c in enumerate(chunks)}
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.update(len(chunks[i]))
    return [row for chunk in results for row in chunk]


# Reason kinds counted in the stats (the reason text starts with one of them).
REASON_KINDS = (
    "empty file", "truncated file", "not an image", "unreadable header", "unreadable file", "decompression bomb",
    "unknown class folder", "unknown class", "no label", "not in a class folder", *LINK_ERRORS,
    NON_UTF8_NAME, MISSING_FILE, PATH_OUTSIDE,
)


def _reason_kind(reason: str) -> str:
    if not reason:
        return "ok"
    return next((k for k in REASON_KINDS if reason.startswith(k)), reason.split(":", 1)[0].strip())


def ingest_split(
    root: str | Path,
    *,
    layout: str,
    classes: ClassList,
    annotations: str | Path | None = None,
    labels: str | Path | None = None,
    workers: int = 1,
    max_pixels: int = MAX_IMAGE_PIXELS,
    hash: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Build the manifest of one split.

    Args:
        root: The split root (e.g. ``data/raw/train``).
        layout: A key of :data:`~imagenet_clean.data.layouts.LAYOUTS`
            (``train``, ``val``, ``v2``, ``folders``; ``imagefolder``, ``csv`` for your own folders).
        classes: The class list labels index into.
        annotations: Boxes (and, for flat validation files, labels): a VOC XML
            folder, a Kaggle ``LOC_*_solution.csv`` or a labels file.
        labels: A labels file (``<file> <wnid or index>`` per line) for flat
            validation files; overrides labels from ``annotations``. For the
            ``csv`` layout: the ``path,label`` CSV (:mod:`~imagenet_clean.data.labelcsv`).
        workers: Worker processes reading headers (1: in this process).
        max_pixels: Images with more pixels are errors (decompression bombs).
        hash: Record each file's BLAKE2b-128 content hash (reads whole files).

    Returns:
        ``(manifest, stats)``: the manifest rows sorted by ``sample_id`` (columns
        of :data:`MANIFEST_SCHEMA`) and a JSON-able dict of counts (ok/error by
        reason, boxes, annotation errors, files/s).

    Raises:
        FileNotFoundError: ``root`` (or an annotation source) does not exist.
        NotADirectoryError: ``root`` is not a folder.
        ValueError: unknown ``layout``.
    """
    t0 = time.perf_counter()
    root = Path(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset root not found")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: dataset root is not a folder")
    ann = load_annotations(annotations, classes=classes) if annotations else Annotations()
    label_src = dict(ann.labels)
    errors = list(ann.errors)
    skip = tuple(Path(p) for p in (annotations, labels) if p)
    if layout in LABEL_FILE_LAYOUTS:  # the layout reads its labels file itself (csv: path,label rows)
        entries = LAYOUTS[layout](root, classes=classes, labels=label_src, skip=skip, labels_file=labels)
    else:
        if labels:
            lab = load_annotations(labels, classes=classes, kind="labels")
            label_src.update(lab.labels)
            errors += lab.errors
        entries = LAYOUTS[layout](root, classes=classes, labels=label_src, skip=skip)

    stems = {Path(e.path).stem for e in entries}
    for stem in sorted(set(ann.boxes) - stems):
        errors.append(f"{ann.where.get(stem, annotations)}: no image named {stem!r} under {root}")
    if layout == "val":
        for stem in sorted(set(label_src) - stems - set(ann.boxes)):
            errors.append(f"{label_src[stem].where}: no image named {stem!r} under {root}")

    # links leaving the root or dangling, missing and non-UTF-8 files are never opened: no size, time or hash
    opened = [e for e in entries if not e.error.startswith(NOT_OPENED)]
    read = iter(inspect_files(root, [e.path for e in opened], max_pixels=max_pixels, hash=hash, workers=workers))
    infos = [(-1, -1, -1, -1, None, "") if e.error.startswith(NOT_OPENED) else next(read) for e in entries]
    rows = []
    for e, (w, h, size, mtime, digest, reason) in zip(entries, infos):
        reason = e.error or reason
        boxes = [b for wnid, b in ann.boxes.get(Path(e.path).stem, ()) if wnid == e.wnid] if e.label >= 0 else []
        rows.append((e.path, e.path, e.label, e.wnid, boxes, w, h, size, mtime, digest, "error" if reason else "ok", reason))
    df = pd.DataFrame(rows, columns=MANIFEST_SCHEMA.names)
    df = df.sort_values("sample_id", kind="stable", ignore_index=True)
    df = df.astype({"label": "int64", "width": "int32", "height": "int32", "size": "int64", "mtime_ns": "int64"})

    seconds = time.perf_counter() - t0
    kinds = Counter(_reason_kind(r) for r in df["reason"])
    ok = int((df["status"] == "ok").sum())
    stats = {
        "root": str(root),
        "layout": layout,
        "n_files": len(df),
        "n_ok": ok,
        "n_error": len(df) - ok,
        "errors_by_reason": {k: v for k, v in sorted(kinds.items()) if k != "ok"},
        "n_with_boxes": int(sum(len(b) > 0 for b in df["boxes"])),
        "n_boxes": int(sum(len(b) for b in df["boxes"])),
        "n_annotation_errors": len(errors),
        "annotation_errors": errors[:MAX_LISTED_ERRORS],
        "workers": workers,
        "seconds": round(seconds, 3),
        "files_per_s": round(len(df) / seconds, 1) if seconds > 0 else None,
    }
    return df, stats


def manifest_table(df: pd.DataFrame) -> pa.Table:
    """The manifest DataFrame as an Arrow table with the exact contract schema."""
    boxes = [[[float(v) for v in b] for b in bs] for bs in df["boxes"]]
    cols = {n: df[n].tolist() for n in MANIFEST_SCHEMA.names if n != "boxes"}
    cols["boxes"] = boxes
    return pa.table({n: pa.array(cols[n], type=MANIFEST_SCHEMA.field(n).type, from_pandas=True) for n in MANIFEST_SCHEMA.names},
                    schema=MANIFEST_SCHEMA)


def write_manifest(path: str | Path, df: pd.DataFrame, *, root: str | Path, layout: str, split: str, classes: str,
                   num_classes: int) -> None:
    """Write a manifest parquet (atomically) with its schema metadata.

    Args:
        path: Destination, e.g. ``data/manifests/val.parquet``.
        df: Rows from :func:`ingest_split`.
        root: The split root as the user gave it (relative paths stay relative).
        layout: The layout name.
        split: The split name.
        classes: The class spec (``imagenet-1k`` or a TSV path).
        num_classes: Length of the class list.
    """
    from ..io import write_table

    meta = {"root": str(root), "layout": layout, "split": split, "classes": str(classes), "num_classes": int(num_classes)}
    write_table(path, manifest_table(df), metadata=meta)


def manifest_table_empty() -> pa.Table:
    """A manifest table with no rows and the contract schema."""
    return MANIFEST_SCHEMA.empty_table()
