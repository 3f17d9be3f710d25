"""Stage ``suggest_merges``: class pairs every model confuses both ways -> ``metrics/merge_suggestions.json``.

Reads, per model, the predictions of every cleaned split that has them (train
out-of-fold, val and V2 from the full models), one model at a time, and the
fixes of the decisions; :mod:`imagenet_clean.cleanup.suggest` scores the pairs.
Nothing is applied: a person confirms a pair into ``dataset.merges``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..cleanup.merges import load_merges
from ..cleanup.streamread import prediction_index, read_model_rows
from ..cleanup.suggest import confident_counts, confusion_rates, fix_counts, suggest_merges
from ..config import CLEANED_SPLITS, Params
from ..io import read_metadata, read_table, write_json
from ..workspace import Workspace
from .common import merge_spec, project_classes, skip_reason


def _split_counts(params: Params, ws: Workspace, split: str, k: int) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    """Per model the split's confident joint, and its label counts; None when the split has no predictions."""
    man = read_table(ws.manifest(split), columns=["sample_id", "label", "status"])
    ids = pd.Index(man["sample_id"])
    labels = man["label"].to_numpy().astype(np.int64)
    files = {m: ws.predictions(split, m) for m in params.models}
    if not len(ids) or not all(f.is_file() for f in files.values()):
        return None
    usable = (man["status"] == "ok").to_numpy().copy()
    positions = {}
    for m, f in files.items():
        positions[m], status, _ = prediction_index(f, ids)
        usable &= status == "ok"
    per_model = {m: confident_counts(labels[usable], read_model_rows(f, positions[m][usable]).probs) for m, f in files.items()}
    return per_model, np.bincount(labels[usable], minlength=k)


def run(params: Params, ws: Workspace) -> dict:
    """Score every class pair over the ensemble and the cleaned splits; write ``ws.metric("merge_suggestions.json")``.

    Args:
        params: The validated params (``models``, ``splits``, ``dataset.merges``, ``suggest_merges``).
        ws: The project (round 1).

    Returns:
        The written report: ``pairs`` (best first), ``splits`` read, ``models``, ``min_rate``.
    """
    cfg = params.suggest_merges
    out = ws.metric("merge_suggestions.json")
    splits = [s for s in CLEANED_SPLITS if s in params.splits and skip_reason(params, s) is None
              and ws.manifest(s).is_file() and read_metadata(ws.manifest(s)).get("skipped") != "true"]
    if not params.models or not splits:
        why = "no models" if not params.models else "no cleaned split"
        result = {"skipped": True, "why": why}
        write_json(out, result)
        return result
    classes = project_classes(read_metadata(ws.manifest(splits[0])), params, ws)
    k = len(classes)
    counts = {m: np.zeros((k, k), np.int64) for m in params.models}
    label_counts = np.zeros(k, np.int64)
    fixes = np.zeros((k, k), np.int64)
    used = []
    for split in splits:
        got = _split_counts(params, ws, split, k)
        if got is None:
            continue
        used.append(split)
        for m, c in got[0].items():
            counts[m] += c
        label_counts += got[1]
        if ws.decisions(split).is_file():
            dec = read_table(ws.decisions(split), columns=["label", "new_label", "action"])
            fixed = dec["action"] == "fix"
            fixes += fix_counts(dec.loc[fixed, "label"].to_numpy(), dec.loc[fixed, "new_label"].to_numpy(), k)
    rates = {m: confusion_rates(c, label_counts) for m, c in counts.items()}
    merged = load_merges(merge_spec(params, ws), classes).items()
    pairs = suggest_merges(rates, classes, min_rate=cfg.min_rate, fixes=fixes, merged=merged, max_pairs=cfg.max_pairs)
    result = {
        "note": "candidate synonym classes for a person to confirm into dataset.merges; never applied automatically",
        "rule": "score = min over models of the geometric mean, over both directions, of the share of a class's samples that cleanlab's "
                "confident joint counts as the other class",
        "min_rate": cfg.min_rate,
        "models": list(params.models),
        "splits": used,
        "samples": int(label_counts.sum()),
        "pairs": pairs,
    }
    write_json(out, result)
    return result
