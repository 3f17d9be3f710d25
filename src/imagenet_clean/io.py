"""Atomic, reproducible file writes shared by every stage.

Every output is written to a temporary name in the destination folder and
renamed into place, so no stage ever leaves a partial file where a later stage
or ``dvc push`` would read it; on failure the previous good file is untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .leftovers import sweep_once, temporary_name


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class OutputError(OSError):
    """An output could not be written (full disk, read-only folder, ...)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary is ``.<name>.<host>-<pid>-<random>.tmp``
    (:func:`imagenet_clean.leftovers.temporary_name`). If this process is
    killed inside the write, the next process that writes into the same folder
    removes it: the first atomic write of a process into a folder sweeps that
    folder's temporaries of dead owners
    (:func:`~imagenet_clean.leftovers.sweep_once`), so library calls clean up
    after themselves as the CLI stages do.

    Raises:
        OutputError: the folder is not writable or the write failed; the old
            ``path`` (if any) is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_once(path.parent)  # what killed writers into this folder left (once per folder and process)
        tmp = path.parent / temporary_name(path.name)  # names its owner: a later run's sweep removes it after a kill
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.chmod(tmp, 0o666 & ~_UMASK)  # created 0600; outputs are as readable as any new file
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as sorted, indented JSON atomically (byte-stable across runs)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(path: str | Path, table: pa.Table | pd.DataFrame, *, metadata: dict | None = None) -> None:
    """Write a parquet file atomically, deterministically (no pandas index, fixed metadata).

    Args:
        path: Destination ``.parquet`` file.
        table: The rows.
        metadata: Extra string key/values stored in the schema (e.g. dataset root).
    """
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    for k, v in (metadata or {}).items():
        meta[f"imagenet_clean.{k}".encode()] = str(v).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a parquet file written by :func:`write_table` into a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (has the stage that writes it run?)")
    return pq.read_table(path, columns=columns).to_pandas()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``imagenet_clean.*`` schema metadata of a parquet file, without the prefix."""
    meta = pq.read_schema(path).metadata or {}
    prefix = b"imagenet_clean."
    return {k[len(prefix):].decode(): v.decode() for k, v in meta.items() if k.startswith(prefix)}


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Content hash of a file (BLAKE2b, 128 bit, hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
