"""The optional duplicate rule (``duplicates.remove``): the duplicates stage's removal list, applied by the clean stage.

The duplicates stage (:mod:`imagenet_clean.stages.duplicates`) always writes
``data/duplicates/removals.parquet`` (empty with the rule off); with the rule on,
the clean stage removes the listed within-split copies (rule ``duplicate``), one
member of each group always staying (:func:`imagenet_clean.cleanup.duplicates.representatives`).
"""
from __future__ import annotations

import pandas as pd

REMOVALS_COLUMNS = ("split", "sample_id", "representative")
"""``data/duplicates/removals.parquet``: the within-split copies the rule drops and the representative each group keeps."""

DUPLICATE_REASON = "duplicate of {kept}"
"""The reason line of a removed copy, naming the group member that is kept."""


def write_removals(path, removals: pd.DataFrame, *, remove: bool, remove_max_distance: float) -> None:
    """Write the removal list (:data:`REMOVALS_COLUMNS`) with the params it was made with (checked by :func:`read_removals`)."""
    from ..io import write_table

    write_table(path, removals[list(REMOVALS_COLUMNS)].reset_index(drop=True),
                metadata={"remove": str(remove).lower(), "remove_max_distance": remove_max_distance})


def read_removals(path, *, remove_max_distance: float) -> pd.DataFrame:
    """The duplicates stage's removal list, checked against the params it is applied with.

    Raises:
        FileNotFoundError: no file (run ``imagenet-clean duplicates``).
        ValueError: the file was written with ``duplicates.remove`` off or another
            ``remove_max_distance`` (stale: rerun the duplicates stage), or lacks a column.
    """
    from pathlib import Path

    from ..io import read_metadata, read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no duplicate removals; run `imagenet-clean duplicates` (duplicates.remove is true)")
    meta = read_metadata(path)
    if meta.get("remove") != "true" or float(meta.get("remove_max_distance", "nan")) != float(remove_max_distance):
        raise ValueError(f"{path} was written with duplicates.remove {meta.get('remove')!r}, remove_max_distance "
                         f"{meta.get('remove_max_distance')!r}, not true and {remove_max_distance!r}: it is stale; "
                         "rerun `imagenet-clean duplicates`")
    table = read_table(path)
    missing = [c for c in REMOVALS_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a duplicate removal list (no column {missing[0]!r})")
    return table


def apply_duplicate_rule(decisions: pd.DataFrame, removals: pd.DataFrame, *, split: str) -> pd.DataFrame:
    """Remove the within-split copies of ``removals`` from a split's decisions, keeping one member of each group.

    Each group (a representative and the copies listed with it) keeps one
    member: its representative, unless another rule already removes it (or the
    row is not in ``decisions``, as in a later round), then its next member by
    ``sample_id`` that stays. Every other member that stays is removed with the
    rule ``duplicate`` and the reason ``duplicate of <kept id>``. As the paper's
    rules do, a fixed row (or one given a label set) is never removed (it stays beside the kept member), and
    unreadable rows keep their own rule; a reviewer's verdict, applied later,
    still wins. Rows of other splits in ``removals`` are ignored; leakage pairs
    are never in the list.

    Returns:
        A copy of ``decisions``.

    Raises:
        ValueError: a representative is itself listed for removal (the list would drop
            every copy of its group; a group keeps one representative).
    """
    from .rules import ACTION_SET, RULE_DUPLICATE, RULE_UNREADABLE

    mine = removals[removals["split"] == split]
    both = sorted(set(mine["sample_id"].astype(str)) & set(mine["representative"].astype(str)))
    if both:
        raise ValueError(f"split {split!r}: the duplicate removal list drops {both[0]!r}, the representative its group keeps "
                         f"({len(both)} such); a group keeps one representative: rerun `imagenet-clean duplicates`")
    groups: dict[str, list[str]] = {}
    for sid, rep in zip(mine["sample_id"].astype(str), mine["representative"].astype(str)):
        groups.setdefault(rep, []).append(sid)
    out = decisions.copy()
    action = out["action"].to_numpy(dtype=object).copy()
    reason = out["reason"].to_numpy(dtype=object).copy()
    rules = [list(r) for r in out["rules"]]
    pos = {str(s): i for i, s in enumerate(out["sample_id"])}
    for rep in sorted(groups):
        members = [m for m in [rep, *sorted(groups[rep])] if m in pos]
        staying = [m for m in members if action[pos[m]] != "remove" and RULE_UNREADABLE not in rules[pos[m]]]
        if not staying:
            continue
        kept = staying[0]
        for m in staying[1:]:
            i = pos[m]
            if action[i] in ("fix", ACTION_SET):  # a changed label (or label set) is kept beside the kept member
                continue
            action[i] = "remove"
            rules[i].append(RULE_DUPLICATE)
            reason[i] = DUPLICATE_REASON.format(kept=kept)
    out["action"] = action
    out["reason"] = reason
    out["rules"] = pd.Series(rules, dtype=object, index=out.index)
    return out
