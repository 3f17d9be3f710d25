"""Free-space checks before a stage writes large outputs (prediction, decision and clean files).

A stage estimates, from its inputs, the bytes its outputs and temporaries need
at once, and calls :func:`check_free_space` before it starts, so that a full
disk is a one-line refusal with the size needed, not an ENOSPC hours later.
The estimates are upper bounds of the uncompressed data (parquet's zstd only
makes the files smaller).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .io import OutputError

MARGIN = 64 * 2**20
"""Bytes kept free beyond the estimate (metadata, logs, other writers)."""

PREDICTION_ROW_OVERHEAD = 96
"""Bytes per prediction row besides the probabilities: sample id, status, reason, fold, top-5."""


def free_bytes(folder: str | Path) -> int:
    """Free bytes (for this user) on the file system that holds ``folder`` or its nearest existing parent."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def format_bytes(n: float) -> str:
    """``n`` bytes as MB / GB with one decimal."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def check_free_space(needs: dict[str | Path, int], *, what: str) -> None:
    """Refuse to start when the folders' file systems lack the bytes the outputs need.

    Args:
        needs: Output folder -> bytes it will need at once (folders on one file
            system are added up).
        what: The stage, for the message (``"clean@train"``).

    Raises:
        OutputError: naming the folder, the bytes needed and the bytes free.
    """
    by_fs: dict[int, list] = {}
    for folder, need in needs.items():
        p = Path(folder).absolute()
        q = p
        while not q.exists() and q != q.parent:
            q = q.parent
        dev = os.stat(q).st_dev
        entry = by_fs.setdefault(dev, [p, 0])
        entry[1] += int(need)
    for dev, (folder, need) in by_fs.items():
        free = free_bytes(folder)
        if need + MARGIN > free:
            raise OutputError(f"{what}: needs about {format_bytes(need + MARGIN)} free in {folder} "
                              f"but only {format_bytes(free)} is free; free some space (or move the outputs) and rerun")


def prediction_file_bytes(n_rows: int, num_classes: int) -> int:
    """Upper bound of one prediction file (float16 probabilities, uncompressed) for ``n_rows`` samples."""
    return int(n_rows) * (2 * int(num_classes) + PREDICTION_ROW_OVERHEAD)


def clean_outputs_bytes(manifest: str | Path, n_rows: int) -> int:
    """Upper bound of the clean stage's outputs (decisions, clean manifest, change list, metrics) from its manifest.

    Decisions carry the manifest's columns plus the evidence (about 300 bytes a
    row before compression); the clean manifest and the change list are
    smaller than the manifest; twice the manifest file covers the temporaries.
    """
    return 2 * Path(manifest).stat().st_size + int(n_rows) * 400
