"""Category merges (paper section 3.3, appendix D table A.1) and the placeholders they leave.

A merge table is a CSV with columns ``merged_wnid, merged_name, target_wnid,
target_name, note``: every sample of the merged class moves to the target class
(after the fixes and removals), and the emptied merged class keeps one black
placeholder row so that the 1000-class interface stays intact. Class ids
(wnids) are authoritative; names are documentation, checked only when
``check_names=True``.

``dataset.merges`` selects the table: ``imagenet`` (the paper's table A.1, 21
pairs over 42 table cells, 40 distinct classes since two targets repeat),
``embedded`` (the embedded default's synonym pair), ``none``, or a CSV path.
"""
from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..classes import ClassList

BUILTIN_MERGES = {
    "imagenet": "imagenet_merges.csv",
    "embedded": "embedded_merges.csv",
}
"""Registry of the merge tables shipped in ``imagenet_clean/resources``."""

NO_MERGES = "none"
PLACEHOLDER_DIR = "__placeholder__"
COLUMNS = ("merged_wnid", "merged_name", "target_wnid", "target_name", "note")


def resolve_merge_spec(spec: str, root: str | Path) -> str:
    """``dataset.merges`` with a relative CSV path made ``root``'s (the project's); built-in names pass through."""
    if spec in BUILTIN_MERGES or spec == NO_MERGES or Path(spec).is_absolute():
        return spec
    return str(Path(root) / spec)


def placeholder_path(wnid: str) -> str:
    """Path (and sample id) of the black placeholder image of an emptied class."""
    return f"{PLACEHOLDER_DIR}/{wnid}.JPEG"


def read_merge_table(spec: str | Path) -> pd.DataFrame:
    """The rows of a merge table: a built-in name (see :data:`BUILTIN_MERGES`), ``none`` or a CSV path.

    Raises:
        FileNotFoundError: ``spec`` is neither a built-in name nor an existing file.
        ValueError: the CSV lacks the ``merged_wnid``/``target_wnid`` columns.
    """
    spec = str(spec)
    if spec == NO_MERGES:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in COLUMNS})
    if spec in BUILTIN_MERGES:
        text = resources.files("imagenet_clean").joinpath("resources", BUILTIN_MERGES[spec]).read_text()
        where = f"built-in merge table {spec!r}"
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: merge table not found (dataset.merges is one of {', '.join(BUILTIN_MERGES)}, "
                f"{NO_MERGES} or a CSV path)"
            )
        text = path.read_text()
        where = str(path)
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"merged_wnid", "target_wnid"} <= set(rows[0]):
        raise ValueError(f"{where}: a merge table needs columns merged_wnid and target_wnid, got {list(rows[0])}")
    df = pd.DataFrame(rows, columns=list(COLUMNS)).fillna("")
    df.attrs["source"] = where
    return df.astype(str)


def load_merges(spec: str | Path, classes: ClassList, *, check_names: bool = False) -> dict[str, str]:
    """The merge map ``{merged wnid: target wnid}``, validated against the class list.

    Args:
        spec: ``imagenet``, ``embedded``, ``none`` or a CSV path.
        classes: The dataset's class list.
        check_names: Also require the table's names to equal the class list's names.

    Raises:
        ValueError: an unknown class id (quoting it and the table's row), a class
            merged twice, a merge into itself, or a chain (a target that is itself merged).
    """
    table = read_merge_table(spec)
    where = table.attrs.get("source", str(spec))
    merges: dict[str, str] = {}
    for row, r in enumerate(table.itertuples(index=False), 2):
        for col in ("merged_wnid", "target_wnid"):
            wnid = getattr(r, col)
            if wnid not in classes:
                raise ValueError(f"{where}, line {row}: {col} {wnid!r} is not in the class list ({len(classes)} classes)")
            if check_names:
                name_col = col.replace("wnid", "name")
                name = getattr(r, name_col)
                if name != classes.names[classes.index(wnid)]:
                    raise ValueError(f"{where}, line {row}: {name_col} {name!r} is not the class list's "
                                     f"{classes.names[classes.index(wnid)]!r} for {wnid}")
        if r.merged_wnid == r.target_wnid:
            raise ValueError(f"{where}, line {row}: {r.merged_wnid} is merged into itself")
        if r.merged_wnid in merges:
            raise ValueError(f"{where}, line {row}: {r.merged_wnid} is merged twice")
        merges[r.merged_wnid] = r.target_wnid
    chained = sorted(t for t in merges.values() if t in merges)
    if chained:
        raise ValueError(f"{where}: {chained[0]} is both a merge target and merged itself; merge it directly into the final class")
    return merges


def merge_index(merges: dict[str, str], classes: ClassList) -> np.ndarray:
    """A (K,) lookup ``label -> label after merges``."""
    lut = np.arange(len(classes), dtype=np.int64)
    for src, dst in merges.items():
        lut[classes.index(src)] = classes.index(dst)
    return lut


def apply_merges(labels, merges: dict[str, str], classes: ClassList) -> tuple[np.ndarray, np.ndarray]:
    """Move labels of merged classes to their targets.

    Returns:
        ``(labels after merges, bool mask of rows that moved)``.
    """
    labels = np.asarray(labels, np.int64)
    merged = merge_index(merges, classes)[labels]
    return merged, merged != labels


def placeholder_rows(merges: dict[str, str], classes: ClassList) -> pd.DataFrame:
    """One clean-manifest row per merged (hence emptied) class: a black placeholder image."""
    wnids = [w for w in classes.wnids if w in merges]
    labels = [classes.index(w) for w in wnids]
    paths = [placeholder_path(w) for w in wnids]
    return pd.DataFrame({
        "sample_id": paths,
        "path": paths,
        "label": np.asarray(labels, np.int64),
        "wnid": wnids,
        "orig_label": np.asarray(labels, np.int64),
        "orig_wnid": wnids,
        "action": ["placeholder"] * len(wnids),
        "size": np.zeros(len(wnids), np.int64),
        "content_hash": pd.Series([None] * len(wnids), dtype=object),
    })
