"""What changed between two decision tables (``imagenet-clean diff A B``).

Rows are matched by ``sample_id``; rows left over on both sides are then matched
by ``content_hash`` (a renamed or moved file). A matched pair whose hashes
differ is reported as ``content`` (same name, different image).

When either table carries label sets (a ``labels`` column, issue 30) a changed
set is reported as ``labels`` and the result gains ``labels_a``/``labels_b``
(a table without the column counts as having no set anywhere); without the
column on either side the result is what it was before label sets existed.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import read_table

COMPARED = ("action", "new_label", "rules")
"""Decision columns whose change is reported (``label`` too, when present on both sides)."""

DIFF_COLUMNS = ("sample_id_a", "sample_id_b", "change", "label_a", "label_b", "action_a", "action_b",
                "new_label_a", "new_label_b", "rules_a", "rules_b")


SET_COLUMNS = ("labels_a", "labels_b")
"""Columns :func:`diff_decisions` adds after :data:`DIFF_COLUMNS` when a side has label sets."""


def _norm(df: pd.DataFrame, *, sets: bool = False) -> pd.DataFrame:
    missing = {"sample_id", "action", "new_label"} - set(df.columns)
    if missing:
        raise ValueError(f"not a decisions table: it lacks columns {sorted(missing)}")
    out = df.copy()
    out["rules"] = [tuple(r) if r is not None else () for r in out["rules"]] if "rules" in out else [()] * len(out)
    if "content_hash" not in out:
        out["content_hash"] = None
    if "label" not in out:
        out["label"] = -1
    if out["sample_id"].duplicated().any():
        raise ValueError(f"duplicate sample_id {out.loc[out['sample_id'].duplicated(), 'sample_id'].iloc[0]!r}")
    cols = ["sample_id", "label", "action", "new_label", "rules", "content_hash"]
    if sets:
        out["labels"] = ([tuple(int(x) for x in v) if v is not None else () for v in out["labels"]] if "labels" in out
                         else [()] * len(out))
        cols.append("labels")
    return out[cols].reset_index(drop=True)


def diff_decisions(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The rows whose decision differs between two decision tables.

    Args:
        a: The old decisions (at least ``sample_id``, ``action``, ``new_label``).
        b: The new decisions.

    Returns:
        One row per difference: ``sample_id_a``/``_b`` (None on the side that
        lacks it), ``change`` (comma-separated: ``only_a``, ``only_b``,
        ``moved``, ``content``, ``label``, ``action``, ``new_label``, ``rules``)
        and the old and new ``label``, ``action``, ``new_label``, ``rules``; with
        label sets on either side also ``labels`` (change kind and
        :data:`SET_COLUMNS`).
    """
    sets = "labels" in a.columns or "labels" in b.columns
    compared = (*COMPARED, "labels") if sets else COMPARED
    carried = ("sample_id", "label", "action", "new_label", "rules", *(("labels",) if sets else ()))
    columns = [*DIFF_COLUMNS, *(SET_COLUMNS if sets else ())]
    a, b = _norm(a, sets=sets), _norm(b, sets=sets)
    m = a.merge(b, on="sample_id", how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"].copy()
    both["sample_id_a"] = both["sample_id_b"] = both["sample_id"]
    only_a = m.loc[m["_merge"] == "left_only", ["sample_id"]].merge(a, on="sample_id")
    only_b = m.loc[m["_merge"] == "right_only", ["sample_id"]].merge(b, on="sample_id")

    # leftovers matched by content hash (unique, non-null on both sides)
    ha = only_a.dropna(subset=["content_hash"]).drop_duplicates("content_hash", keep=False)
    hb = only_b.dropna(subset=["content_hash"]).drop_duplicates("content_hash", keep=False)
    moved = ha.merge(hb, on="content_hash", suffixes=("_a", "_b"))
    moved["content_hash_a"] = moved["content_hash_b"] = moved["content_hash"]
    only_a = only_a[~only_a["sample_id"].isin(moved["sample_id_a"])]
    only_b = only_b[~only_b["sample_id"].isin(moved["sample_id_b"])]

    rows = []
    for df, is_moved in ((both, False), (moved, True)):
        for r in df.to_dict("records"):
            kinds = ["moved"] if is_moved else []
            ca, cb = r["content_hash_a"], r["content_hash_b"]
            if not is_moved and isinstance(ca, str) and isinstance(cb, str) and ca != cb:
                kinds.append("content")
            if r["label_a"] != r["label_b"]:
                kinds.append("label")
            kinds += [c for c in compared if r[f"{c}_a"] != r[f"{c}_b"]]
            if kinds:
                rows.append(_row(r, ",".join(kinds), columns))
    for side, df in (("a", only_a), ("b", only_b)):
        other = "b" if side == "a" else "a"
        for r in df.to_dict("records"):
            rec = {f"{c}_{side}": r[c] for c in carried}
            rec.update({f"{c}_{other}": None for c in carried})
            rows.append(_row(rec, f"only_{side}", columns))
    out = pd.DataFrame(rows, columns=columns)
    for c in ("rules_a", "rules_b", *(SET_COLUMNS if sets else ())):
        out[c] = [list(r) if r is not None else None for r in out[c]]
    return out.sort_values(["change", "sample_id_a", "sample_id_b"], key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)


def _row(r: dict, change: str, columns=DIFF_COLUMNS) -> dict:
    rec = {c: r.get(c) for c in columns}
    rec["change"] = change
    return rec


def diff_files(a: str | Path, b: str | Path) -> pd.DataFrame:
    """:func:`diff_decisions` of two decision parquet files."""
    return diff_decisions(read_table(a), read_table(b))


def summarize(diff: pd.DataFrame) -> dict[str, int]:
    """Counts per change kind, and transitions between actions (``keep->remove``: n)."""
    counts: dict[str, int] = {"changed": int(len(diff))}
    for kinds in diff["change"]:
        for k in kinds.split(","):
            counts[k] = counts.get(k, 0) + 1
    both = diff[diff["action_a"].notna() & diff["action_b"].notna() & (diff["action_a"] != diff["action_b"])]
    for (x, y), n in both.groupby(["action_a", "action_b"]).size().items():
        counts[f"{x}->{y}"] = int(n)
    return counts
