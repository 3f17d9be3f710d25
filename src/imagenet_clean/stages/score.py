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
    if truth is not None:
        result.update(evidence_scores(params, ws, truth, merge_lut=lut))
    write_json(ws.detection, result)
    return result


def evidence_scores(params: Params, ws: Workspace, truth: pd.DataFrame, *, merge_lut=None) -> dict:
    """Issue 30's evidence against the truth, each key present only where it applies.

    - ``duplicates``: the duplicates stage's pairs (``data/duplicates/<pair>.parquet``)
      against the injected copies, when the truth records copies;
    - ``quality``: per split, what the quality rule adds, when its decisions were made with it on;
    - ``duplicate_rule``: per split, the duplicate rule's removals, when it was on.
    """
    from ..cleanup.duplicates import PAIR_COLUMNS, pair_name, split_pairs
    from ..evaluate.score import score_duplicate_rule, score_duplicates, score_quality_rule

    out: dict = {}
    folder = ws.data / "duplicates"
    if "duplicate_of" in truth.columns and folder.is_dir():
        checked = [s for s in params.splits if (folder / f"{pair_name(s, s)}.parquet").is_file()]  # the splits the stage searched
        files = [folder / f"{n}.parquet" for n in split_pairs(checked)]
        if checked and all(f.is_file() for f in files):
            pairs = pd.concat([read_table(f, columns=list(PAIR_COLUMNS)) for f in files], ignore_index=True)
            out["duplicates"] = score_duplicates(pairs, truth[truth["split"].isin(checked)])
    for split in params.splits:
        f = ws.decisions(split)
        if not f.is_file():
            continue
        meta = read_metadata(f)
        if meta.get("skipped") == "true" or not {"quality", "duplicates"} & set(meta):
            continue
        dec = read_table(f)
        t = truth[truth["split"] == split]
        if "quality" in meta:
            out.setdefault("quality", {})[split] = score_quality_rule(dec, t, merge_lut=merge_lut)
        if "duplicates" in meta and "duplicate_of" in truth.columns:
            out.setdefault("duplicate_rule", {})[split] = score_duplicate_rule(dec, t)
    return out
