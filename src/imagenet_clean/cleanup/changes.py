"""The human-readable change list of a cleaned split (``data/changes/<split>.csv``).

One row per changed image: fixes, removals, label sets (``relabel_set``: the
image keeps the first class of its set), merges (a kept or fixed image whose
class was merged) and the placeholders of emptied classes, with the old and new
class (index, wnid, name) and a one-line reason a reviewer can check.

When the decisions carry label sets (a ``labels`` column, issue 30) the list
gains a last column ``wnids``: the set of a ``relabel_set`` row after merges as a
JSON list of class ids (``["n01","n02"]``; JSON because a folder dataset's class
ids are folder names, which may hold any separator), empty on every other row.
Without the column the list is exactly what it was before label sets existed.

The list is meant to be opened in a spreadsheet, so text cells that a
spreadsheet would run as a formula (a file named ``=cmd|' /C calc'!A0.JPEG``)
are escaped with a leading apostrophe (:func:`escape_formula`); the exact
paths are in ``data/decisions/<split>.parquet``.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..classes import ClassList
from .rules import ACTION_SET, RULE_CAM_EXEMPT, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_DUPLICATE, RULE_FIX, RULE_QUALITY, RULE_UNREADABLE

CHANGE_COLUMNS = ("file", "old_label", "old_wnid", "old_name", "new_label", "new_wnid", "new_name", "action", "reason")
SET_COLUMN = "wnids"
"""Column added after :data:`CHANGE_COLUMNS` when the decisions carry label sets: a ``relabel_set`` row's set (JSON list of class ids)."""
LABELS = "labels"
"""The decisions' and clean manifest's label-set column (docs/label-sets.md)."""
TEXT_COLUMNS = ("file", "old_wnid", "old_name", "new_wnid", "new_name", "action", "reason")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet cell a formula (CSV injection, OWASP)."""


def escape_formula(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula.

    Example: ``escape_formula("=1+1")`` is ``"'=1+1"``; ``"cat.JPEG"`` is unchanged.
    """
    return f"'{text}" if isinstance(text, str) and text.startswith(FORMULA_START) else text


def _reason(row, n_models: int, thresholds: dict) -> str:
    rules = list(row.rules)
    parts = []
    if RULE_UNREADABLE in rules:
        parts.append(f"unreadable: {row.reason}" if getattr(row, "reason", "") else "unreadable")
    flagged = ", ".join(f"{m}->{c}" for m, c in zip(row.flagged_models, row.candidates))
    if RULE_FIX in rules:
        parts.append(f"confident learning: {row.n_flagged} of {n_models} models flagged it "
                     f"(>= h1={thresholds.get('h1', '?'):g}); candidates {flagged}")
    if RULE_CL_REMOVE in rules:
        n_distinct = len(set(row.candidates))
        parts.append(f"confident learning: {n_distinct} distinct candidates (>= h2={thresholds.get('h2', '?'):g}): {flagged}")
    if RULE_CONSENSUS in rules:
        parts.append(f"top-5 consensus: {row.c_s} of {n_models} models miss the label in their top-5 "
                     f"(>= h3={thresholds.get('h3', '?'):g})")
        if RULE_CAM_EXEMPT in rules:
            parts.append(f"exempted by the CAMs of {row.exempted_by}")
        elif row.cam_scores not in ("", "{}"):
            parts.append("no model's CAMs cover the box")
    if RULE_QUALITY in rules:  # cleanup/quality.py: the measures that fired are the row's reason
        parts.append(str(row.reason))
    if RULE_DUPLICATE in rules:  # cleanup/duplicates.py: names the group member that is kept
        parts.append(str(row.reason))
    if "human" in rules:  # cleanup/verdicts.py: a reviewer overrode the machine (only a relabel is still a change)
        parts.append(f"human review: {getattr(row, 'verdict', '')}")
    return "; ".join(parts)


def change_list(decisions: pd.DataFrame, clean: pd.DataFrame, classes: ClassList, *, n_models: int,
                thresholds: dict | None = None) -> pd.DataFrame:
    """The change list of one split.

    Args:
        decisions: The decisions table (see docs/architecture.md).
        clean: The clean manifest (after merges, with placeholder rows).
        classes: The class list (for names).
        n_models: Ensemble size, for the reasons.
        thresholds: Resolved thresholds (``h1``, ``h2``, ``h3`` as numbers), for the reasons.

    Returns:
        Columns :data:`CHANGE_COLUMNS`: fixes (``fix``, or ``fix+merge`` with the
        final class), label sets (``relabel_set``, new label the first of the set
        after merges) and removals in decision order, then merges of kept images,
        then placeholders. Removals have new label -1. Text cells starting like a
        formula are escaped (:func:`escape_formula`). When ``decisions`` has a
        ``labels`` column, a last column :data:`SET_COLUMN` holds each
        ``relabel_set`` row's set after merges (the clean manifest's ``labels``
        where it has them) as a JSON list of class ids, ``""`` elsewhere.
    """
    thresholds = thresholds or {}
    names = np.asarray(classes.names, dtype=object)
    wnids = np.asarray(classes.wnids, dtype=object)
    with_sets = LABELS in decisions.columns
    rows = []
    fix_merged = dict(zip(*(clean.loc[clean["action"] == "fix+merge", c] for c in ("sample_id", "label"))))
    set_rows = clean[clean["action"] == ACTION_SET]
    set_final = dict(zip(set_rows["sample_id"], set_rows["label"]))
    set_labels = dict(zip(set_rows["sample_id"], set_rows[LABELS])) if LABELS in clean.columns else {}
    changed = decisions[decisions["action"] != "keep"]
    for r in changed.itertuples(index=False):
        fix = r.action == "fix"
        is_set = r.action == ACTION_SET
        final = int(fix_merged.get(r.sample_id, set_final.get(r.sample_id, r.new_label)))
        reason = _reason(r, n_models, thresholds)
        the_set: list[int] = []
        if is_set:
            given = set_labels.get(r.sample_id)  # after merges; else the decisions' own set
            if given is None and with_sets:
                given = getattr(r, LABELS)
            the_set = [int(x) for x in given] if given is not None and len(given) else [final]
            reason = "; ".join(x for x in (reason, "label set " + " + ".join(f"{wnids[c]} ({names[c]})" for c in the_set)) if x)
        if (fix and r.sample_id in fix_merged) or (is_set and final != int(r.new_label)):
            reason += f"; then {wnids[r.new_label]} merged into {wnids[final]}"
        fixed = fix or is_set
        row = {
            "file": r.path,
            "old_label": int(r.label),
            "old_wnid": wnids[r.label],
            "old_name": names[r.label],
            "new_label": final if fixed else -1,
            "new_wnid": wnids[final] if fixed else "",
            "new_name": names[final] if fixed else "",
            "action": "fix+merge" if fix and r.sample_id in fix_merged else r.action,
            "reason": reason,
        }
        if with_sets:
            row[SET_COLUMN] = set_json([wnids[c] for c in the_set]) if is_set else ""
        rows.append(row)
    for r in clean[clean["action"] == "merge"].itertuples(index=False):
        rows.append({
            "file": r.path,
            "old_label": int(r.orig_label),
            "old_wnid": r.orig_wnid,
            "old_name": names[r.orig_label],
            "new_label": int(r.label),
            "new_wnid": r.wnid,
            "new_name": names[r.label],
            "action": "merge",
            "reason": f"category merge {r.orig_wnid} -> {r.wnid}",
        })
    for r in clean[clean["action"] == "placeholder"].itertuples(index=False):
        rows.append({
            "file": r.path, "old_label": -1, "old_wnid": "", "old_name": "",
            "new_label": int(r.label), "new_wnid": r.wnid, "new_name": names[r.label],
            "action": "placeholder", "reason": "black placeholder keeps the emptied (merged) class",
        })
    columns = list(CHANGE_COLUMNS) + ([SET_COLUMN] if with_sets else [])
    out = pd.DataFrame([r if not with_sets else {SET_COLUMN: "", **r} for r in rows], columns=columns)
    for c in TEXT_COLUMNS:
        out[c] = [escape_formula(v) for v in out[c]]
    return out


def set_json(class_ids) -> str:
    """A label set as the change list (and ``reviews/<split>.csv``) writes it: a compact JSON list of class ids.

    Example: ``set_json(["n01", "n02"])`` is ``'["n01","n02"]'``; it never starts like a spreadsheet formula.
    """
    return json.dumps([str(c) for c in class_ids], ensure_ascii=False, separators=(",", ":"))


def cam_summary(cam_scores: str) -> dict:
    """Parse a ``cam_scores`` JSON cell (``{}`` when the CAMs did not run)."""
    return json.loads(cam_scores) if cam_scores else {}
