"""``metrics/review.json``: how many changes were reviewed and how right the machine was.

For every cleaned split with decisions, from its decisions table (after the
verdicts were applied: the machine's rules are still there, plus ``verdict``)
and its reviews file (for the stale verdicts):

* ``reviewed``: applied verdicts per machine action (``fix``, ``remove``,
  ``keep`` for a CAM-exempted sample) and per verdict;
* ``by_rule``: per rule (``cl_fix``, ``cl_remove``, ``consensus``,
  ``cam_exempt``) the reviewed count, each verdict's count, ``precision`` (the
  share the reviewers accepted) and ``flag_precision`` (accepted or
  relabelled: the given label was wrong, whatever the machine proposed);
* ``by_n_flagged`` (``cl_fix`` and ``cl_remove`` samples) and ``by_c_s``
  (``consensus`` samples): the same per value, and ``at_least`` the same for
  every sample with at least that value, i.e. what the precision would be at
  ``h1 = n`` or ``h3 = n`` (``dvc exp run -S h1=n``);
* ``stale`` / ``ignored``: verdicts not applied (image changed or gone;
  unreadable image), with why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..classes import load_classes, resolve_class_spec
from ..cleanup.rules import ACTION_SET, RULE_CAM_EXEMPT, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_FIX, RULE_LABEL_SET
from ..cleanup.verdicts import VERDICTS, classify, read_verdicts
from ..io import read_metadata, write_json
from ..workspace import Workspace

SPLITS = ("train", "val", "v2")
"""The splits the clean stage writes decisions for."""
RULES = (RULE_FIX, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_CAM_EXEMPT)
BASE_VERDICTS = ("accept", "reject", "relabel")
"""Verdicts every split's counts list; ``relabel_set`` is listed only where a split has one (or a set decision),
so that a project without label sets writes the same ``metrics/review.json`` as before."""


def machine_action(rules: Iterable[str]) -> str:
    """What the machine decided from its rules: ``fix``, ``remove``, ``relabel_set`` or ``keep`` (CAM-exempted or unflagged)."""
    rules = set(rules)
    if RULE_LABEL_SET in rules:
        return ACTION_SET
    if RULE_FIX in rules:
        return "fix"
    if RULE_CL_REMOVE in rules or (RULE_CONSENSUS in rules and RULE_CAM_EXEMPT not in rules):
        return "remove"
    return "keep"


def _counts(verdicts: pd.Series, names=BASE_VERDICTS) -> dict:
    n = int(len(verdicts))
    c = {v: int((verdicts == v).sum()) for v in names}
    return {"reviewed": n, **c,
            "precision": round(c["accept"] / n, 4) if n else None,
            "flag_precision": round((c["accept"] + c["relabel"]) / n, 4) if n else None}


def _rows(df: pd.DataFrame, test) -> pd.DataFrame:
    return df.loc[np.fromiter((bool(test(r)) for r in df["rules"]), bool, len(df))]


def _by_value(df: pd.DataFrame, col: str, names=BASE_VERDICTS) -> dict:
    out = {}
    for value in sorted(df[col].unique()):
        out[str(int(value))] = {**_counts(df.loc[df[col] == value, "verdict"], names),
                                "at_least": _counts(df.loc[df[col] >= value, "verdict"], names)}
    return out


def split_review(decisions: pd.DataFrame, reviews: str | Path | None, *, wnids: set[str] | None = None) -> dict:
    """The review metrics of one split (see the module docstring).

    Raises:
        VerdictError: a malformed reviews file (a relabel checked against ``wnids``).
    """
    verdicts = read_verdicts(reviews, wnids=wnids) if reviews is not None else {}
    verdict = decisions["verdict"] if "verdict" in decisions else pd.Series([""] * len(decisions), dtype=object)
    df = pd.DataFrame({
        "rules": decisions["rules"].map(list).to_numpy(),
        "n_flagged": decisions["n_flagged"].to_numpy(),
        "c_s": decisions["c_s"].to_numpy(),
        "verdict": verdict.fillna("").to_numpy(),
    })
    df["machine"] = df["rules"].map(machine_action)
    rev = df[df["verdict"] != ""]
    sets = bool((df["machine"] == ACTION_SET).any() or (rev["verdict"] == ACTION_SET).any())
    names = VERDICTS if sets else BASE_VERDICTS
    actions = ("fix", "remove", "keep", ACTION_SET) if sets else ("fix", "remove", "keep")
    out = {
        "reviewed": int(len(rev)),
        "changes": int((df["machine"] != "keep").sum() + df["rules"].map(lambda r: RULE_CAM_EXEMPT in r).sum()),
        "by_action": {a: _counts(rev.loc[rev["machine"] == a, "verdict"], names) for a in actions},
        "by_verdict": {v: int((rev["verdict"] == v).sum()) for v in names},
        "by_rule": {r: _counts(_rows(rev, lambda x, r=r: r in x)["verdict"], names) for r in RULES + ((RULE_LABEL_SET,) if sets else ())},
        "by_n_flagged": _by_value(_rows(rev, lambda x: RULE_FIX in x or RULE_CL_REMOVE in x), "n_flagged", names),
        "by_c_s": _by_value(_rows(rev, lambda x: RULE_CONSENSUS in x), "c_s", names),
    }
    _, outcome = classify(decisions, verdicts)
    out["stale"] = outcome.stale
    out["ignored"] = outcome.ignored
    return out


def _wnids(decisions: Path, workdir: Path) -> set[str] | None:
    """The wnids of a decisions table's class list (None when its metadata names none, e.g. a skipped split)."""
    spec = read_metadata(decisions).get("classes")
    if not spec:
        return None
    return set(load_classes(resolve_class_spec(spec, workdir)).wnids)


def review_metrics(workdir: str | Path = ".", *, splits: Iterable[str] = SPLITS, out: str | Path | None = None) -> dict:
    """Write ``metrics/review.json`` for every split with a decisions table; return it.

    Raises:
        VerdictError: a malformed reviews file (nothing is written).
    """
    w = Path(workdir)
    ws = Workspace(w)
    result: dict = {"splits": {}}
    for split in splits:
        path = ws.decisions(split)
        if not path.is_file():
            continue
        cols = [c for c in ("sample_id", "rules", "n_flagged", "c_s", "content_hash", "verdict")
                if c in pq.read_schema(path).names]
        dec = pq.read_table(path, columns=cols).to_pandas()
        result["splits"][split] = split_review(dec, ws.reviews(split), wnids=_wnids(path, w))
    s = result["splits"].values()
    result["reviewed"] = sum(v["reviewed"] for v in s)
    result["stale"] = sum(len(v["stale"]) for v in s)
    write_json(Path(out) if out else ws.review_metrics, result)
    return result
