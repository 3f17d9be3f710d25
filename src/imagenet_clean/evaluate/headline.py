"""``metrics/headline.json``: the few figures a person compares between cleanup variants.

The detail metrics files (``metrics/cleanup/<split>.json``, ``detection.json``,
``review.json``, ``table1.json``, ``table2.json``, ...) hold hundreds of
figures; ``dvc exp show`` would make each one a column. The headline file is
the only entry of ``dvc.yaml``'s top-level ``metrics:`` and holds one flat,
ordered object whose keys read well as table columns, the split first::

    train.h1 ... v2.h3                    the thresholds each split used: the least count that passes (models; for h2 candidates)
    train.removals val.removals ...       counts per cleaned split
    train.fixes ...
    train.precision train.recall ...      what was fixed or removed against the injected truth (where it exists)
    val.review_precision ...              the share of reviewed changes the reviewers accepted (where reviews exist)
    train.merges ...                      samples whose class a merge changed
    train.changed ...                     share of the split fixed or removed
    label_sets.precision label_sets.recall   label sets against the truth, pooled over the cleaned splits (where scored)
    duplicates.precision duplicates.recall   duplicate pairs found against the injected copies (where scored)
    table1.val_c                          mean top-1 of the cleanup models on the cleaned validation split
    table1.val_c_set                      their mean set accuracy there (top-1 in the label set; only with label sets)
    table2.T table2.T_c table2.gain       table 2's headline: T and T_c top-1 on the headline set, T_c - T

Keys are flat strings (``"train.removals"``) rather than nested objects so
that their order, which is the column order of ``dvc exp show``, is chosen here:
what a threshold changes most (the resolved thresholds and the removals of
every split) comes first. A figure whose source does not exist (no truth, no
reviews, a skipped table or split) is left out rather than written as null.

The rule for later metrics: detail files for people (tracked stage outputs,
read with ``dvc metrics show FILE``), a few headline numbers here.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from .accuracy import CLEAN_SUFFIX, SET_METRIC
from .splits import primary_set, table_rows

SPLITS = ("train", "val", "v2")
"""The cleaned splits, in the order their columns appear."""
THRESHOLDS = ("h1", "h2", "h3")
"""The thresholds whose resolved numbers of models (``thresholds_resolved`` of the cleanup metrics) are headline figures
(``fn``, a fraction of cleanlab's flags, is left to ``metrics/cleanup/<split>.json``)."""
COUNTS = (("removals", "remove"), ("fixes", "fix"), ("merges", "merged"))
"""``(headline key, cleanup metrics key)`` of the per-split counts, in column order."""
PLOT_COLUMNS = ("split", *THRESHOLDS, "fixes", "removals", "merges", "precision", "recall")
"""Columns of ``metrics/plots/headline.csv`` (one row per cleaned split): the sweep plot's data."""


def _skipped(obj) -> bool:
    return not isinstance(obj, Mapping) or bool(obj.get("skipped"))


def _round(x, digits: int):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def table2_gain(table2: Mapping | None) -> tuple[dict[str, float], str | None]:
    """Table 2's headline, averaged over its architectures: ``({"T", "T_c", "gain"}, key read for the gain)``.

    Reads either layout of ``metrics/table2.json``: the seed-spread one
    (``<arch>.headline.top1.{T, T_c, gain}`` with ``gain`` a number) or a
    paired-gain one, where the gain is an object with a ``mean`` (and an
    interval), at ``<arch>.headline.top1.gain``, ``<arch>.headline.gain`` or
    ``<arch>.gain``. The second value names the key the gain came from
    (``None`` when no row has one).
    """
    if _skipped(table2):
        return {}, None
    vals: dict[str, list[float]] = {"T": [], "T_c": [], "gain": []}
    used = None
    for row in table_rows(table2).values():
        if not isinstance(row, Mapping):
            continue
        head = row.get("headline") if isinstance(row.get("headline"), Mapping) else {}
        top1 = head.get("top1") if isinstance(head.get("top1"), Mapping) else {}
        for k in ("T", "T_c"):
            if isinstance(top1.get(k), (int, float)):
                vals[k].append(float(top1[k]))
        for where, cand in (("headline.top1.gain", top1.get("gain")), ("headline.gain", head.get("gain")),
                            ("gain", row.get("gain"))):
            if isinstance(cand, Mapping) and isinstance(cand.get("mean"), (int, float)):
                vals["gain"].append(float(cand["mean"]))
                used = f"{where}.mean"
                break
            if isinstance(cand, (int, float)) and not isinstance(cand, bool):
                vals["gain"].append(float(cand))
                used = where
                break
    return {k: round(sum(v) / len(v), 2) for k, v in vals.items() if v}, used


def table1_clean_accuracy(table1: Mapping | None, metric: str = "top1") -> float | None:
    """Mean top-1 (percent) of the cleanup models on table 1's headline cleaned set (``val_clean``), or None.

    ``metric="top1_set"``: their mean set accuracy there, None when the set has no label sets.
    """
    if _skipped(table1):
        return None
    rows = [r for r in table_rows(table1).values() if isinstance(r, Mapping) and r.get("cleanup", True)]
    sets = sorted({k for r in rows for k in r if isinstance(k, str) and k.endswith(CLEAN_SUFFIX)})
    primary = primary_set(sets)
    if primary is None:
        return None
    top1 = [r[primary][metric] for r in rows if isinstance(r.get(primary), Mapping) and r[primary].get(metric) is not None]
    return round(sum(top1) / len(top1), 2) if top1 else None


def evidence_headline(detection: Mapping | None) -> dict[str, float]:
    """Label sets (precision and recall of their labels, pooled over the cleaned splits) and duplicates (precision and
    recall of the pairs found against the injected copies), where ``metrics/detection.json`` scored them."""
    if _skipped(detection):
        return {}
    out: dict[str, float] = {}
    sets = [s["label_sets"]["labels"] for s in (detection.get("splits") or {}).values()
            if isinstance(s, Mapping) and isinstance(s.get("label_sets"), Mapping)]
    if sets:
        right, emitted = sum(x["right_in_sets"] for x in sets), sum(x["in_sets"] for x in sets)
        found, shown = sum(x["found_in_scenes"] for x in sets), sum(x["true_in_scenes"] for x in sets)
        if emitted:
            out["label_sets.precision"] = round(right / emitted, 4)
        if shown:
            out["label_sets.recall"] = round(found / shown, 4)
    dup = (detection.get("duplicates") or {}).get("all") if isinstance(detection.get("duplicates"), Mapping) else None
    if isinstance(dup, Mapping):
        for k in ("precision", "recall"):
            v = _round(dup.get(k), 4)
            if v is not None:
                out[f"duplicates.{k}"] = v
    return out


def _review_precision(review: Mapping | None, split: str) -> float | None:
    s = ((review or {}).get("splits") or {}).get(split) or {}
    n = s.get("reviewed") or 0
    if not n:
        return None
    return round((s.get("by_verdict") or {}).get("accept", 0) / n, 4)


def headline_metrics(cleanup: Mapping[str, Mapping | None], *, detection: Mapping | None = None,
                     review: Mapping | None = None, table1: Mapping | None = None, table2: Mapping | None = None,
                     splits: Sequence[str] = SPLITS) -> dict[str, int | float]:
    """The headline figures from the detail metrics (see the module docstring for the keys).

    Args:
        cleanup: ``split -> metrics/cleanup/<split>.json`` (None or skipped: the split is left out).
        detection: ``metrics/detection.json`` (precision and recall of what was fixed or removed).
        review: ``metrics/review.json`` (machine precision as the reviewers judged it).
        table1: ``metrics/table1.json``.
        table2: ``metrics/table2.json`` (either layout, :func:`table2_gain`).
        splits: Column order of the splits.

    Returns:
        An ordered ``{"<split>.<figure>" or "<table>.<figure>": number}``.
    """
    done = [s for s in splits if not _skipped(cleanup.get(s))]
    det = {} if _skipped(detection) else (detection.get("splits") or {})
    out: dict[str, int | float] = {}
    for t in THRESHOLDS:
        for s in done:
            v = (cleanup[s].get("thresholds_resolved") or {}).get(t)
            if v is not None:
                out[f"{s}.{t}"] = math.ceil(round(float(v), 6))  # a sample passes when its count >= v
    for key, src in COUNTS[:2]:
        for s in done:
            out[f"{s}.{key}"] = int(cleanup[s].get(src) or 0)
    for s in done:
        found = (det.get(s) or {}).get("detected") or {}
        for k in ("precision", "recall"):
            v = _round(found.get(k), 4)
            if v is not None:
                out[f"{s}.{k}"] = v
    for s in done:
        v = _review_precision(review, s)
        if v is not None:
            out[f"{s}.review_precision"] = v
    for key, src in COUNTS[2:]:
        for s in done:
            out[f"{s}.{key}"] = int(cleanup[s].get(src) or 0)
    for s in done:
        n = cleanup[s].get("samples") or 0
        if n:
            out[f"{s}.changed"] = round((int(cleanup[s].get("fix") or 0) + int(cleanup[s].get("remove") or 0)) / n, 4)
    out.update(evidence_headline(detection))
    v = table1_clean_accuracy(table1)
    if v is not None:
        out["table1.val_c"] = v
    v = table1_clean_accuracy(table1, SET_METRIC)
    if v is not None:
        out["table1.val_c_set"] = v
    for k, v in table2_gain(table2)[0].items():
        out[f"table2.{k}"] = v
    return out


def plot_rows(headline: Mapping[str, int | float], splits: Sequence[str] = SPLITS) -> list[dict]:
    """One row per cleaned split of ``headline`` with :data:`PLOT_COLUMNS` (precision falls back to the reviewers')."""
    rows = []
    for s in splits:
        if f"{s}.removals" not in headline:
            continue
        row = {"split": s}
        for c in PLOT_COLUMNS[1:]:
            row[c] = headline.get(f"{s}.{c}")
        if row["precision"] is None:
            row["precision"] = headline.get(f"{s}.review_precision")
        rows.append(row)
    return rows
