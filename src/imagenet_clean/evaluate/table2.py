"""Table 2: models retrained on the original T and the cleaned T_c, evaluated on V, V_c, V2, V2_c.

For each architecture in ``tables.archs`` and each seed ``params.seed + i``
(``i < tables.seeds``) a model is trained with the section-5 recipe
(``train``, with ``tables.epochs`` if set) on

* ``T``: the training manifest's readable rows with their original labels;
* ``T_c``: the clean training manifest's rows with their cleaned labels.
  Placeholder rows (one black image per class emptied by a merge) are left out
  of training: a black image teaches nothing, and the 1000-class interface is
  kept by the classifier's width (``num_classes``), not by the placeholder.

Each model predicts every readable row of every evaluated split once; accuracies
on the original and cleaned sets are computed from those predictions, so a
threshold experiment that only changes V_c re-scores cached runs without
training. Finished runs are cached under ``data/cache/retrain/<key>/`` where the
key hashes everything that determines the run (architecture, seed, input size,
training recipe, the training rows in order, the evaluated rows); each file is
written atomically and ``done.json`` last, so an interrupted stage resumes
at the first unfinished (arch, set, seed).

``metrics/table2.json``::

    {"<arch>": {"T":   {"val": {"top1": {"mean", "std", "n"}, "top5": {...}}, "val_clean": ..., ...},
                "T_c": {...},
                "gain": {"val_clean": {"top1": {"gain", "spread", "beyond_spread"}, "top5": ...}, ...},
                "headline": {"set": "val_clean", "seeds": 3,
                             "top1": {"T", "T_c", "gain", "spread", "beyond_spread"}, "top5": {...}}},
     "skipped_splits": {"imagenet_r": "splits.imagenet_r.root is null"}}

Every (training set, evaluation set) pair of the paper's table 2 is there:
(T, V), (T, V_c), (T_c, V_c), (T, V2), (T_c, V2), (T, V2_c), (T_c, V2_c), as mean
and sample std over seeds. ``gain`` is mean(T_c) - mean(T) in points, ``spread``
the larger of the two seed standard deviations (ddof 1), and ``beyond_spread``
whether the gain exceeds it (null with a single seed). ``headline`` repeats it
for the primary cleaned set (V_c, else the first cleaned set) with both means.
``skipped_splits`` lists configured splits left out (see :mod:`.splits`). When
the table cannot be computed (``tables.archs`` empty, the training split skipped,
no usable evaluated split) both files are ``{"skipped": true, "why": ...}``.
Per-seed accuracies go to ``metrics/runs/table2.json`` (kept out of the metrics
so ``dvc exp show`` stays readable).

Training uses ``params.train`` (every recipe field: optimizer, augmentation,
``cache_images``, ``threads``, ...) with ``tables.epochs`` if set, at the square
``tables.input_size``; an architecture that is also a cleanup model in
``params.models`` is built with that entry's timm ``kwargs`` (e.g. the embedded
default's ``crop_pct: 1.0``), so it sees images as the cleanup models do.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import read_table, write_json
from ..workspace import Workspace
from .accuracy import (
    TRAIN_SPLIT,
)
from .retrain import (  # noqa: F401  (the retraining machinery; tests and callers of table 2 import these from here too)
    BACKENDS,
    CONTENT_COLUMNS,
    RESULT_NEUTRAL,
    InputSize,
    RetrainBackend,
    RetrainContext,
    TimmBackend,
    cached_run,
    cleaned_train,
    load_context,
    num_classes_of,
    original_train,
    run_accuracies,
    run_key,
    seed_runs,
    train_in_parallel,
)
from .splits import SKIPPED_SPLITS, primary_set, table_rows, train_skip_reason, usable_splits, write_skipped

log = logging.getLogger(__name__)



# ------------------------------------------------------------------ statistics


def summarize(values: Sequence[float | None]) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one value) and count, rounded to 4 decimals.

    ``None`` and ``nan`` (the accuracy of an empty evaluation set) are left out of the count.
    """
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": round(float(v.mean()), 4), "std": round(std, 4), "n": int(len(v))}


def compare(base: Sequence[float], other: Sequence[float]) -> dict:
    """``other`` against ``base`` over seeds: gain of the means, the larger seed spread, and whether the gain exceeds it.

    ``beyond_spread`` is null with fewer than 2 seeds per side (no spread to compare with).
    """
    b, o = summarize(base), summarize(other)
    if not b["n"] or not o["n"]:
        return {"gain": None, "spread": None, "beyond_spread": None}
    gain = round(o["mean"] - b["mean"], 4)
    spread = max(b["std"], o["std"])
    beyond = bool(gain > spread) if min(b["n"], o["n"]) > 1 else None
    return {"gain": gain, "spread": spread, "beyond_spread": beyond}


def aggregate(runs: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict:
    """``{set: {"top1": summary, "top5": summary}}`` over the seeds of ``runs``."""
    sets = next(iter(runs.values())).keys() if runs else ()
    return {s: {k: summarize([r[s][k] for r in runs.values()]) for k in ("top1", "top5")} for s in sets}


def per_metric(runs: Mapping[int, Mapping[str, Mapping[str, float]]], set_name: str, metric: str) -> list[float]:
    """One set's metric over seeds, in seed order."""
    return [runs[s][set_name][metric] for s in sorted(runs)]


def runs_json(runs: Mapping[int, Mapping]) -> dict:
    """Per-seed accuracies keyed ``seed<k>`` for ``metrics/runs/*.json``."""
    return {f"seed{s}": r for s, r in sorted(runs.items())}


# ------------------------------------------------------------------ table 2


def table2(
    ctx: RetrainContext,
    archs: Sequence[str],
    *,
    seeds: Sequence[int],
    train_sets: Mapping[str, pd.DataFrame],
    input_size: InputSize | None = None,
) -> tuple[dict, dict]:
    """Train every arch on ``T`` and ``T_c`` over ``seeds``; returns (table, per-seed runs).

    Args:
        ctx: Shared data and cache (:func:`load_context`).
        archs: timm architecture names.
        seeds: Training seeds.
        train_sets: ``{"T": samples, "T_c": samples}`` (``path``, ``label``).
        input_size: Square training/eval size, ``None`` for the backend's default.

    Raises:
        ValueError: no archs, no seeds, or ``train_sets`` lacks ``T`` or ``T_c``.
    """
    if not archs:
        raise ValueError("table 2 needs at least one architecture (tables.archs is empty)")
    if not seeds:
        raise ValueError("table 2 needs at least one seed (tables.seeds)")
    missing = [k for k in ("T", "T_c") if k not in train_sets]
    if missing:
        raise ValueError(f"train_sets lacks {missing}; got {sorted(train_sets)}")
    train_in_parallel(ctx, [dict(samples=samples, arch=arch, seed=seed, input_size=input_size, label=name)
                            for arch in archs for name, samples in train_sets.items() for seed in seeds])
    table, runs = {}, {}
    for arch in archs:
        per_set = {name: seed_runs(ctx, samples, arch=arch, seeds=seeds, input_size=input_size, label=name) for name,
                   samples in train_sets.items()}
        row = {name: aggregate(r) for name, r in per_set.items()}
        row["gain"] = {
            s: {m: compare(per_metric(per_set["T"], s, m), per_metric(per_set["T_c"], s, m)) for m in ("top1", "top5")}
            for s in ctx.eval_sets
        }
        primary = primary_set(list(ctx.eval_sets))
        if primary is not None:
            row["headline"] = headline_row(row, primary, seeds=len(seeds))
        table[arch] = row
        runs[arch] = {name: runs_json(r) for name, r in per_set.items()}
    return table, runs


def headline_row(row: Mapping, set_name: str, *, seeds: int) -> dict:
    """The answer to "does T_c beat T on ``set_name`` beyond the seed spread?" for one table-2 row.

    Returns:
        ``{"set", "seeds", "top1": {"T", "T_c", "gain", "spread", "beyond_spread"}, "top5": {...}}``;
        ``T``/``T_c`` are mean accuracies, ``gain`` their difference in points.
    """
    out: dict = {"set": set_name, "seeds": int(seeds)}
    for m in ("top1", "top5"):
        out[m] = {"T": row["T"][set_name][m]["mean"], "T_c": row["T_c"][set_name][m]["mean"], **row["gain"][set_name][m]}
    return out


def headline(table: Mapping) -> dict:
    """Per arch of a table-2 file: its ``headline`` (see :func:`headline_row`); skipped or headline-less rows are left out."""
    return {arch: row["headline"] for arch, row in table_rows(table).items() if isinstance(row, Mapping) and "headline" in row}


# ------------------------------------------------------------------ stage glue


def eval_splits(params) -> list[str]:
    """Configured evaluated splits: every split with a root, except the training split (files are not read)."""
    return [name for name, sc in params.splits.items() if name != TRAIN_SPLIT and sc.root is not None]


def seeds_of(params) -> list[int]:
    """Training seeds of the tables: ``params.seed + i`` for ``i < tables.seeds``."""
    return [params.seed + i for i in range(params.tables.seeds)]


def train_config(params):
    """The tables' training recipe: ``params.train`` with ``tables.epochs`` when set."""
    train = params.train
    if params.tables.epochs is not None:
        train = dataclasses.replace(train, epochs=params.tables.epochs)
    return train


def arch_kwargs(params, archs: Sequence[str]) -> dict[str, dict]:
    """timm kwargs per table architecture: those of the first ``params.models`` entry with that arch, if any."""
    out = {}
    for arch in archs:
        entry = next((m for m in params.models.values() if m.arch == arch), None)
        if entry is not None and entry.kwargs:
            out[arch] = dict(entry.kwargs)
    return out


def make_backend(params, *, name: str = "timm") -> RetrainBackend:
    """The retraining backend for params: :func:`train_config`, ``predict.batch_size`` and :func:`arch_kwargs`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown retraining backend {name!r}; known: {sorted(BACKENDS)}")
    return BACKENDS[name](train=train_config(params), batch_size=params.predict.batch_size, kwargs=arch_kwargs(params, params.tables.archs))


def square_size(params) -> InputSize | None:
    """The square input size of the tables' models: ``tables.input_size`` or ``None`` (the trainer's default)."""
    side = params.tables.input_size
    return None if side is None else (3, int(side), int(side))


def stage_skip_reason(params, *, paths: Workspace, decisions: bool = False) -> tuple[str | None, list[str], dict[str, str]]:
    """Whether a retraining stage (table 2, 3, ablations) can run, from params and this round's files.

    Returns:
        ``(reason, splits, skipped)``: why the stage is skipped (``None`` when it runs), the usable
        evaluated splits and ``{split: reason}`` for the evaluated splits left out.
    """
    splits, skipped = usable_splits(params, paths)
    if not params.tables.archs:
        return "tables.archs is empty", splits, skipped
    why = train_skip_reason(params, paths, decisions=decisions)
    if why:
        return f"training split skipped: {why}", splits, skipped
    if not splits:
        return "no evaluated split besides the training split can be used", splits, skipped
    return None, splits, skipped


def stage_context(params, *, paths: Workspace, backend: RetrainBackend | None = None,
                  splits: Sequence[str] | None = None) -> RetrainContext:
    """The :class:`RetrainContext` of a tables stage from params and this round's files.

    Args:
        params: Loaded params.
        paths: The round's file layout.
        backend: Trains and predicts (default: :func:`make_backend`).
        splits: Evaluated splits (default: :func:`.splits.usable_splits`; the others are
            recorded in ``skipped_splits``).
    """
    skipped = {}
    if splits is None:
        splits, skipped = usable_splits(params, paths)
    ctx = load_context(
        splits,
        paths=paths,
        backend=backend or make_backend(params),
        roots={name: sc.root for name, sc in params.splits.items()},
    )
    ctx.skipped_splits = dict(skipped)
    ctx.workers = cpu_workers(params.train.parallel)
    return ctx


def cpu_workers(parallel: int) -> int:
    """``parallel`` retraining processes on a CPU-only single process; 1 on a GPU or under torchrun."""
    import torch

    from ..models.distributed import env_ranks

    return parallel if not torch.cuda.is_available() and env_ranks()[1] <= 1 else 1


def with_skipped(table: dict, skipped: Mapping[str, str]) -> dict:
    """``table`` with ``skipped_splits`` added when any split was left out."""
    return {**table, SKIPPED_SPLITS: dict(skipped)} if skipped else table


def write_table2(params, *, paths: Workspace, backend: RetrainBackend | None = None) -> Path:
    """Run (or re-score from cache) table 2 and write ``table2.json`` and ``runs/table2.json`` of this round.

    Both files are ``{"skipped": true, "why": ...}`` when :func:`stage_skip_reason` says so.
    """
    names = ["table2.json", "runs/table2.json"]
    why, splits, skipped = stage_skip_reason(params, paths=paths)
    if why:
        return write_skipped(paths, names, why, skipped_splits=skipped)
    ctx = stage_context(params, paths=paths, backend=backend, splits=splits)
    train_sets = {
        "T": original_train(read_table(paths.manifest(TRAIN_SPLIT))),
        "T_c": cleaned_train(read_table(paths.clean(TRAIN_SPLIT))),
    }
    table, runs = table2(ctx, list(params.tables.archs), seeds=seeds_of(params), train_sets=train_sets, input_size=square_size(params))
    out = paths.metric(names[0])
    write_json(out, with_skipped(table, skipped))
    write_json(paths.metric(names[1]), runs)
    for entry in ctx.log:
        log.info("retrain run %s", entry)
    return out
