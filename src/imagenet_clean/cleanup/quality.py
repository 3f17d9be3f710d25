"""The optional quality rule: an image whose quality measures lie beyond params.yaml's bounds is removed.

The measures come from stage ``quality`` (:mod:`imagenet_clean.data.quality`);
the bounds from ``quality.thresholds`` (``{measure: {min, max}}``), set on the
embedded truth by ``benchmarks/fit_quality_thresholds.py`` (docs/embedded.md).
The rule adds :data:`~imagenet_clean.cleanup.rules.RULE_QUALITY` to a row's
``rules`` and the measures that fired to its ``reason``
(``image quality: contrast 0.041 < min 0.06``). As the paper's rules do, it
never removes a fixed sample; unreadable rows keep their own rule and reason;
a reviewer's verdict, applied after it, still wins (:mod:`.verdicts`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..config import QualityBound
from .rules import RULE_QUALITY, RULE_UNREADABLE

REASON_PREFIX = "image quality: "


def beyond_bounds(figures: pd.DataFrame, thresholds: Mapping[str, QualityBound]) -> list[str]:
    """Per row of ``figures``, the measures beyond their bounds (``"contrast 0.041 < min 0.06"``, ``"; "``-joined; empty: none).

    A missing figure (NaN: an unreadable image, an image without boxes for
    ``object_size``) is never beyond a bound.
    """
    out = [[] for _ in range(len(figures))]
    for name, b in thresholds.items():
        v = figures[name].to_numpy(np.float64)
        for side, bound, beyond in (("min", b.min, lambda x, t: x < t), ("max", b.max, lambda x, t: x > t)):
            if bound is None:
                continue
            with np.errstate(invalid="ignore"):
                hit = beyond(v, bound) & ~np.isnan(v)
            op = "<" if side == "min" else ">"
            for i in np.flatnonzero(hit):
                out[i].append(f"{name} {v[i]:.4g} {op} {side} {bound:g}")
    return ["; ".join(parts) for parts in out]


def apply_quality_rule(decisions: pd.DataFrame, figures: pd.DataFrame, thresholds: Mapping[str, QualityBound], *,
                       source: str = "<quality>") -> pd.DataFrame:
    """Remove the rows whose quality measures lie beyond ``thresholds`` (fixed and unreadable rows excepted).

    Args:
        decisions: The full decisions table (docs/architecture.md), before the verdicts.
        figures: The split's quality file (``sample_id`` and the measures), a row for every decisions row
            (a later round's decisions cover a subset of them).
        thresholds: ``measure -> QualityBound`` (params ``quality.thresholds``).
        source: The quality file's name, for the messages.

    Returns:
        A copy: rows beyond a bound get action ``remove``, the rule ``quality``
        appended to ``rules`` and the measures that fired in ``reason``; a row
        already removed by another rule keeps its action and gets the rule and
        reason as evidence.

    Raises:
        ValueError: the quality file lacks a sample of the decisions (it is stale:
            rerun ``imagenet-clean quality --split S``), or lacks a measure.
    """
    missing = [m for m in thresholds if m not in figures.columns]
    if missing:
        raise ValueError(f"{source}: no column {missing[0]!r}; rerun `imagenet-clean quality`")
    pos = pd.Index(figures["sample_id"]).get_indexer(decisions["sample_id"])
    if (pos < 0).any():  # a later round cleans a subset of the split's rows: more figures than decisions is fine
        gone = decisions["sample_id"].to_numpy()[pos < 0]
        raise ValueError(f"{source} lacks sample {gone[0]!r} ({len(gone)} in all): it is stale; "
                         "rerun `imagenet-clean quality` for this split")
    fired = beyond_bounds(figures.iloc[pos].reset_index(drop=True), thresholds)
    out = decisions.copy()
    action = out["action"].to_numpy(dtype=object).copy()
    reason = out["reason"].to_numpy(dtype=object).copy()
    rules = [list(r) for r in out["rules"]]
    for i, why in enumerate(fired):
        if not why or action[i] == "fix" or RULE_UNREADABLE in rules[i]:
            continue
        action[i] = "remove"
        rules[i].append(RULE_QUALITY)
        reason[i] = REASON_PREFIX + why
    out["action"] = action
    out["reason"] = reason
    out["rules"] = pd.Series(rules, dtype=object, index=out.index)
    return out


def read_quality(path: str | Path) -> pd.DataFrame:
    """The quality file of a split (stage ``quality``)."""
    from ..io import read_table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no quality measures; run `imagenet-clean quality --split {path.stem}` "
                                "(quality.enabled is true)")
    return read_table(path)
