"""Ablations: which cleanup step moves accuracy. Training-set variants built from the decisions.

Variants of the training set T (readable rows of the training manifest):

* ``none``: T as it is (equals table 2's T run, shared through the cache);
* ``fixes``: only the label fixes applied (an image kept with a label set, action
  ``relabel_set``, counts as a fix to the first class of its set, as T_c trains on it);
* ``removals``: only the removals applied;
* ``merges``: only the category merges applied (to the original labels);
* ``all``: fixes, then removals, then merges: T_c without its placeholders.

Each variant is trained with the table-2 seeds and evaluated on every set.

``metrics/ablations.json``::

    {"<arch>": {"<variant>": {"n_train": 1480, "val_clean": {"top1": summary, "top5": summary}, ...,
                              "d_top1": 0.4, "ci95_top1": [-0.3, 1.1], "verdict": "not resolved"}}}

``d_top1`` is the variant's mean top-1 on the primary cleaned set minus ``none``'s, paired by
seed; ``ci95_top1`` and ``verdict`` are table 2's paired t-interval and verdict (:func:`.table2.paired_gain`).
``skipped_splits`` and the skipped-file format are table 2's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..cleanup.rules import ACTION_SET
from ..io import read_table, write_json
from ..workspace import Workspace
from .accuracy import PLACEHOLDER, TRAIN_SPLIT
from .splits import primary_set, write_skipped
from .table2 import (
    CONTENT_COLUMNS,
    RetrainBackend,
    RetrainContext,
    aggregate,
    paired_gain,
    per_metric,
    runs_json,
    seed_runs,
    seeds_of,
    square_size,
    stage_context,
    stage_skip_reason,
    with_skipped,
)


@dataclass(frozen=True)
class Variant:
    """Which cleanup steps a training-set variant applies."""

    fixes: bool
    removals: bool
    merges: bool


VARIANTS: dict[str, Variant] = {
    "none": Variant(False, False, False),
    "fixes": Variant(True, False, False),
    "removals": Variant(False, True, False),
    "merges": Variant(False, False, True),
    "all": Variant(True, True, True),
}
"""Training-set variants of the ablation study, by name."""


def merge_map(clean: pd.DataFrame, decisions: pd.DataFrame | None = None, *, source: str = "clean manifest") -> dict[int, int]:
    """The category merges (source label -> target label) that a clean manifest applied.

    Read from its ``merge`` rows (``orig_label`` -> ``label``) and, given the
    decisions, its ``fix+merge`` rows (fixed label -> ``label``) and its ``relabel_set``
    rows whose first class was merged (the decision's first class -> ``label``).

    Raises:
        ValueError: a column is missing or one class was merged into two classes.
    """
    for col in ("sample_id", "label", "orig_label", "action"):
        if col not in clean.columns:
            raise ValueError(f"{source}: missing column {col!r}")
    pairs = clean.loc[clean["action"] == "merge", ["orig_label", "label"]].to_numpy().tolist()
    fm = clean[clean["action"].isin(["fix+merge", ACTION_SET])]
    if len(fm) and decisions is not None:
        fixed = decisions.set_index("sample_id")["new_label"]
        src = fixed.reindex(fm["sample_id"]).to_numpy()
        pairs += [[s, t] for s, t, a in zip(src, fm["label"].to_numpy(), fm["action"].to_numpy())
                  if pd.notna(s) and (a != ACTION_SET or int(s) != int(t))]
    out: dict[int, int] = {}
    for s, t in pairs:
        s, t = int(s), int(t)
        if out.setdefault(s, t) != t:
            raise ValueError(f"{source}: class {s} is merged into both {out[s]} and {t}")
    return out


def variant_manifest(manifest: pd.DataFrame, decisions: pd.DataFrame, merges: Mapping[int, int], *, variant: str) -> pd.DataFrame:
    """The training rows of one ablation variant.

    Args:
        manifest: The training manifest the decisions were made on (``sample_id``, ``path``,
            ``label``, optional ``status``; in round r >= 2 the previous round's clean
            manifest, whose placeholder rows are skipped).
        decisions: Its decisions (``sample_id``, ``action``, ``new_label``), one row per manifest row.
        merges: Category merges, source label -> target label.
        variant: A key of :data:`VARIANTS`.

    Returns:
        Readable rows (``sample_id``, ``path``, ``label``, ``orig_label`` and the manifest's
        content columns) with the
        variant's labels; removed rows are dropped when the variant applies removals.

    Raises:
        ValueError: unknown variant, missing column, a readable manifest row without
            a decision, repeated decision rows, or an unknown action.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; known: {', '.join(VARIANTS)}")
    v = VARIANTS[variant]
    for df, cols, name in ((manifest, ("sample_id", "path", "label"), "manifest"), (decisions, ("sample_id", "action", "new_label"),
                                                                                    "decisions")):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing}")
    if decisions["sample_id"].duplicated().any():
        dup = decisions.loc[decisions["sample_id"].duplicated(), "sample_id"].iloc[0]
        raise ValueError(f"decisions: sample_id {dup!r} appears more than once")
    bad = sorted(set(decisions["action"]) - {"keep", "fix", "remove", ACTION_SET})
    if bad:
        raise ValueError(f"decisions: unknown action(s) {bad}; expected keep, fix, remove or {ACTION_SET}")
    usable = manifest["status"] == "ok" if "status" in manifest.columns else pd.Series(True, index=manifest.index)
    if "action" in manifest.columns:
        usable &= manifest["action"] != PLACEHOLDER
    keep_cols = ["sample_id", "path", "label", *(c for c in CONTENT_COLUMNS if c in manifest.columns)]
    rows = manifest.loc[usable, keep_cols].reset_index(drop=True)
    dec = decisions.set_index("sample_id").reindex(rows["sample_id"])
    if dec["action"].isna().any():
        sid = rows["sample_id"][dec["action"].isna().to_numpy()].iloc[0]
        raise ValueError(f"decisions: no decision for manifest sample {sid!r}")
    action = dec["action"].to_numpy()
    rows["orig_label"] = rows["label"]
    if v.fixes:
        fix = (action == "fix") | (action == ACTION_SET)
        rows.loc[fix, "label"] = dec["new_label"].to_numpy()[fix].astype("int64")
    if v.merges and merges:
        rows["label"] = rows["label"].map(lambda x: merges.get(int(x), int(x))).astype("int64")
    if v.removals:
        rows = rows[action != "remove"].reset_index(drop=True)
    return rows


def ablations(
    ctx: RetrainContext,
    archs: Sequence[str],
    *,
    seeds: Sequence[int],
    variants: Mapping[str, pd.DataFrame],
    input_size=None,
    set_name: str,
) -> tuple[dict, dict]:
    """Train every arch on every variant over ``seeds``; returns (table, runs).

    Args:
        ctx: Shared data and cache.
        archs: timm architecture names.
        seeds: The table-2 seeds.
        variants: Training rows per variant name (``none`` is the baseline of ``d_top1``).
        input_size: As in table 2.
        set_name: Evaluation set of ``d_top1`` (``val_clean``).

    Raises:
        ValueError: ``variants`` lacks ``none`` or ``set_name`` is not evaluated.
    """
    if "none" not in variants:
        raise ValueError(f"variants must include the baseline 'none'; got {sorted(variants)}")
    if set_name not in ctx.eval_sets:
        raise ValueError(f"evaluation set {set_name!r} not evaluated; have {sorted(ctx.eval_sets)}")
    table, runs = {}, {}
    for arch in archs:
        per = {name: seed_runs(ctx, rows, arch=arch, seeds=seeds, input_size=input_size, label=f"ablation {name}") for name,
               rows in variants.items()}
        row = {}
        for name, r in per.items():
            c = paired_gain(per_metric(per["none"], set_name, "top1"), per_metric(r, set_name, "top1"))
            row[name] = {"n_train": len(variants[name]), **aggregate(r), "d_top1": c["gain"], "ci95_top1": c["ci95"],
                         "verdict": c["verdict"]}
        table[arch] = row
        runs[arch] = {name: runs_json(r) for name, r in per.items()}
    return table, runs


def write_ablations(params, *, paths: Workspace, backend: RetrainBackend | None = None) -> Path:
    """Write ``ablations.json`` and ``runs/ablations.json`` of this round.

    Both are ``{"skipped": true, "why": ...}`` when ``tables.ablations`` is off, when
    :func:`.table2.stage_skip_reason` says so (the training decisions included), or when
    no evaluated split has a cleaned version.
    """
    names = ["ablations.json", "runs/ablations.json"]
    if not params.tables.ablations:
        return write_skipped(paths, names, "tables.ablations is false")
    why, splits, skipped = stage_skip_reason(params, paths=paths, decisions=True)
    if why:
        return write_skipped(paths, names, why, skipped_splits=skipped)
    ctx = stage_context(params, paths=paths, backend=backend, splits=splits)
    set_name = primary_set(list(ctx.eval_sets))
    if set_name is None:
        return write_skipped(paths, names, f"no evaluated split has a cleaned version (evaluated: {', '.join(splits)})",
                             skipped_splits=skipped)
    manifest = read_table(paths.input(TRAIN_SPLIT))
    decisions = read_table(paths.decisions(TRAIN_SPLIT))
    clean = read_table(paths.clean(TRAIN_SPLIT))
    merges = merge_map(clean, decisions, source=str(paths.clean(TRAIN_SPLIT)))
    variants = {name: variant_manifest(manifest, decisions, merges, variant=name) for name in VARIANTS}
    table, runs = ablations(ctx, list(params.tables.archs), seeds=seeds_of(params), variants=variants, input_size=square_size(params),
                            set_name=set_name)
    out = paths.metric(names[0])
    write_json(out, with_skipped(table, skipped))
    write_json(paths.metric(names[1]), runs)
    return out


def placeholder_free(clean: pd.DataFrame) -> pd.DataFrame:
    """The clean manifest's rows without placeholders (what the ``all`` variant should equal)."""
    return clean[clean["action"] != PLACEHOLDER].reset_index(drop=True)
