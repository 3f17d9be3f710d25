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
                "gain": {"val_clean": {"top1": {"gain", "ci95", "pairs", "sd", "verdict", "beyond_noise"}, "top5": ...}, ...},
                "headline": {"set": "val_clean", "seeds": 5,
                             "top1": {"T", "T_c", "gain", "ci95", "pairs", "sd", "verdict", "beyond_noise"}, "top5": {...}}},
     "skipped_splits": {"imagenet_r": "splits.imagenet_r.root is null"}}

Every (training set, evaluation set) pair of the paper's table 2 is there:
(T, V), (T, V_c), (T_c, V_c), (T, V2), (T_c, V2), (T, V2_c), (T_c, V2_c), as mean
and sample std over seeds. ``gain`` is paired by seed (:func:`paired_gain`): T
and T_c of one seed give one difference T_c - T in points; ``gain`` is their
mean, ``ci95`` its 95 % Student-t interval over the seeds, and ``verdict``
"helps" (the interval is above 0), "hurts" (below 0) or "not resolved" (it
contains 0): ``beyond_noise`` is true for the first two. With fewer than 2 seeds
the verdict is "not computed" and ``why`` says that an interval needs pairs.
``headline`` repeats it for the primary cleaned set (V_c, else the first cleaned
set) with both means. docs/reliability.md has why this statistic gives the same
verdict on two CPU families, whose trainings differ in the last bits.
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

from ..constants import PAIRED_CONFIDENCE, PAIRED_MIN_PAIRS
from ..io import read_table, write_json
from ..workspace import Workspace
from .accuracy import (
    SET_METRIC,
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


VERDICTS = ("helps", "hurts", "not resolved", "not computed")
"""Verdicts of :func:`paired_gain`: the interval is above 0, below 0, contains 0, or there are too few pairs."""


def paired_gain(base: Sequence[float | None], other: Sequence[float | None], *, confidence: float = PAIRED_CONFIDENCE) -> dict:
    """``other - base`` paired by seed: the mean difference, its t-interval and the verdict.

    ``base[i]`` and ``other[i]`` come from the same seed (table 2 trains T and T_c with the
    same seeds), so each seed gives one difference ``d_i``; what a seed does to both
    models alike (the same initial weights, scored on the same images) cancels in it.
    The interval is ``mean(d) +- t_{(1+c)/2, n-1} * sd(d) / sqrt(n)`` (``scipy.stats.t``).

    Args:
        base: Per-seed values of the reference (T), in seed order.
        other: Per-seed values of the compared model (T_c), same seeds, same order.
        confidence: Two-sided confidence of the interval.

    Returns:
        ``{"gain", "ci95": [lo, hi], "pairs", "sd", "verdict", "beyond_noise"}``, rounded to 4
        decimals: ``gain`` the mean difference, ``sd`` the differences' sample std, ``verdict``
        "helps" (interval above 0), "hurts" (below 0) or "not resolved"; ``beyond_noise``
        whether the interval excludes 0. With fewer than 2 pairs (pairs with ``None``/``nan``
        on either side are left out) ``ci95``, ``sd`` and ``beyond_noise`` are null, the
        verdict is "not computed" and ``why`` says why. ``ci95`` holds the interval at
        ``confidence`` (0.95 unless told otherwise).

    Raises:
        ValueError: ``base`` and ``other`` differ in length, or ``confidence`` is not in (0, 1).
    """
    if len(base) != len(other):
        raise ValueError(f"paired values need one per seed on both sides; got {len(base)} and {len(other)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    b = np.asarray([np.nan if x is None else x for x in base], np.float64)
    o = np.asarray([np.nan if x is None else x for x in other], np.float64)
    d = (o - b)[np.isfinite(o) & np.isfinite(b)]
    n = int(len(d))
    gain = round(float(d.mean()), 4) if n else None
    if n < PAIRED_MIN_PAIRS:
        why = f"a confidence interval needs at least {PAIRED_MIN_PAIRS} seed pairs (T and T_c with the same seed); got {n}"
        return {"gain": gain, "ci95": None, "pairs": n, "sd": None, "verdict": "not computed", "beyond_noise": None, "why": why}
    from scipy import stats

    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / np.sqrt(n)
    lo, hi = round(float(d.mean()) - half, 4), round(float(d.mean()) + half, 4)
    verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "not resolved"
    return {"gain": gain, "ci95": [lo, hi], "pairs": n, "sd": round(sd, 4), "verdict": verdict, "beyond_noise": verdict != "not resolved"}


def metrics_of(runs: Mapping[int, Mapping[str, Mapping[str, float]]], set_name: str) -> tuple[str, ...]:
    """The accuracy metrics the runs have on ``set_name``: ``top1``, ``top5`` and, where label sets exist, ``top1_set``."""
    first = next(iter(runs.values()), {}).get(set_name, {})
    return ("top1", "top5", SET_METRIC) if SET_METRIC in first else ("top1", "top5")


def aggregate(runs: Mapping[int, Mapping[str, Mapping[str, float]]]) -> dict:
    """``{set: {"top1": summary, "top5": summary}}`` over the seeds of ``runs`` (plus ``top1_set`` where the set has label sets)."""
    sets = next(iter(runs.values())).keys() if runs else ()
    return {s: {k: summarize([r[s][k] for r in runs.values()]) for k in metrics_of(runs, s)} for s in sets}


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
            s: {m: paired_gain(per_metric(per_set["T"], s, m), per_metric(per_set["T_c"], s, m)) for m in metrics_of(per_set["T"], s)}
            for s in ctx.eval_sets
        }
        primary = primary_set(list(ctx.eval_sets))
        if primary is not None:
            row["headline"] = headline_row(row, primary, seeds=len(seeds))
        table[arch] = row
        runs[arch] = {name: runs_json(r) for name, r in per_set.items()}
    return table, runs


def headline_row(row: Mapping, set_name: str, *, seeds: int) -> dict:
    """The answer to "does T_c beat T on ``set_name`` beyond seed noise?" for one table-2 row.

    Returns:
        ``{"set", "seeds", "top1": {"T", "T_c", **paired_gain}, "top5": {...}}``; ``T``/``T_c``
        are mean accuracies, the rest :func:`paired_gain` of T_c against T (gain, interval, verdict).
        Where ``set_name`` has label sets, a third block ``"top1_set"`` does the same for the set accuracy.
    """
    out: dict = {"set": set_name, "seeds": int(seeds)}
    for m in ("top1", "top5", SET_METRIC):
        if m in row["gain"][set_name]:
            out[m] = {"T": row["T"][set_name][m]["mean"], "T_c": row["T_c"][set_name][m]["mean"], **row["gain"][set_name][m]}
    return out


def verdict_line(head: Mapping) -> str:
    """One line for a :func:`headline_row`: the paired top-1 gain, its interval and the verdict (or why none)."""
    g = head["top1"]
    what = f"T_c - T top-1 on {head['set']}: {_signed(g['gain'])} points, paired over {g['pairs']} seed(s)"
    if g["ci95"] is None:
        return f"{what}; verdict not computed: {g['why']}"
    lo, hi = g["ci95"]
    return f"{what}, 95 % interval [{_signed(lo)}, {_signed(hi)}]: {g['verdict']}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


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
