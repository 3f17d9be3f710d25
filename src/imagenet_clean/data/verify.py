"""``imagenet-clean verify``: has the image tree changed since its manifest was written?

DVC never hashes the external image tree; the manifest records each file's
size and mtime instead, and :func:`verify_manifest` re-stats them.
"""
from __future__ import annotations

import os
from pathlib import Path


def verify_manifest(path: str | Path, *, root: str | Path | None = None) -> dict:
    """Re-stat every file of a manifest and report what changed.

    Args:
        path: A manifest parquet written by ingestion.
        root: The image root to check; default the ``root`` stored in the manifest.

    Returns:
        ``{"manifest", "root", "n_files", "n_unchanged", "missing": [...],
        "changed": [{"sample_id", "what", "was", "now"}], "added": [...], "ok": bool}``;
        ``ok`` is False when any file is missing, changed, or new under the root.

    Raises:
        FileNotFoundError: the manifest or the root does not exist.
        ValueError: the manifest has no ``root`` metadata and none was given.
    """
    from ..io import read_metadata, read_table
    from ..progress import progress

    path = Path(path)
    df = read_table(path, columns=["sample_id", "path", "size", "mtime_ns"])
    if root is None:
        root = read_metadata(path).get("root")
        if not root:
            raise ValueError(f"{path}: no 'root' in the manifest metadata; pass the image root explicitly")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image root of {path} not found")
    missing, changed = [], []
    for sid, rel, size, mtime in progress(zip(df["sample_id"], df["path"], df["size"], df["mtime_ns"]),
                                          total=len(df), desc="verify", unit="file"):
        try:
            st = os.stat(root / rel)
        except FileNotFoundError:
            missing.append(sid)
            continue
        except OSError as e:
            changed.append({"sample_id": sid, "what": "unreadable", "was": "", "now": e.strerror or str(e)})
            continue
        if int(size) >= 0 and st.st_size != int(size):
            changed.append({"sample_id": sid, "what": "size", "was": int(size), "now": st.st_size})
        elif int(mtime) >= 0 and st.st_mtime_ns != int(mtime):
            changed.append({"sample_id": sid, "what": "mtime_ns", "was": int(mtime), "now": st.st_mtime_ns})
    from .layouts import list_files

    known = set(df["path"])
    added = [rel for rel in list_files(root) if rel not in known]
    return {
        "manifest": str(path),
        "root": str(root),
        "n_files": len(df),
        "n_unchanged": len(df) - len(missing) - len(changed),
        "missing": missing,
        "changed": changed,
        "added": added,
        "ok": not missing and not changed and not added,
    }
