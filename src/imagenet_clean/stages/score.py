"""Stage ``score``: every cleaned split's decisions against the truth -> ``metrics/detection.json``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import Params
from ..io import read_metadata, read_table, write_json
from ..workspace import Workspace
from .common import merge_spec, project_classes


def run(params: Params, ws: Workspace, *, real_path: str | Path | None = None) -> dict:
    """Score every split that has decisions (:mod:`imagenet_clean.evaluate.score`); write ``ws.detection``.

    Splits without decisions (not cleaned, e.g. an evaluation-only split, or
    skipped) are listed under ``not_cleaned``.

    Args:
        params: The validated params (``dataset.truth``, ``dataset.real_labels``).
        ws: The project (round 1).
        real_path: The ReaL labels file (default: the copy timm ships).

    Raises:
        FileNotFoundError: the truth table named in params is missing.
    """
    from ..cleanup.merges import load_merges, merge_index
    from ..evaluate.score import (
        REAL_SPLIT,
        load_real_labels,
        score_decisions,
        score_real,
    )
    from ..evaluate.score_sets import score_label_sets

    result: dict = {"splits": {}}
    truth = read_table(ws.resolve(params.dataset.truth)) if params.dataset.truth else None
    lut = None
    if truth is not None:
        classes = project_classes({}, params, ws)
        lut = merge_index(load_merges(merge_spec(params, ws), classes), classes)
    for split in params.splits:
        f = ws.decisions(split)
        if not f.is_file() or read_metadata(f).get("skipped") == "true":
            result.setdefault("not_cleaned", []).append(split)
            continue
        dec = read_table(f)
        if truth is not None:
            result["splits"][split] = score_decisions(dec, truth[truth["split"] == split], merge_lut=lut)
            sets = score_label_sets(dec, truth[truth["split"] == split], merge_lut=lut)
            if sets is not None:
                result["splits"][split]["label_sets"] = sets
        if params.dataset.real_labels and split == REAL_SPLIT:
            top1 = {}
            for m in params.models:
                f = ws.predictions(split, m)
                if f.is_file():
                    t = read_table(f, columns=["sample_id", "status", "top5"])
                    t = t[t["status"] == "ok"]
                    top1[m] = pd.Series([int(x[0]) for x in t["top5"]], index=t["sample_id"])
            clean = read_table(ws.clean(split), columns=["sample_id", "action"])
            result["real"] = score_real(dec, real=load_real_labels(real_path), top1=top1,
                                        clean_ids=clean.loc[clean["action"] != "placeholder", "sample_id"])
    write_json(ws.detection, result)
    return result
