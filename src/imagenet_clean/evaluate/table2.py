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
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from ..io import read_metadata, read_table, write_json
from ..predictions import read_predictions, write_predictions
from ..progress import progress
from .accuracy import (
    PLACEHOLDER,
    TRAIN_SPLIT,
    EvalSet,
    RoundPaths,
    accuracy,
    split_sets,
)
from .splits import SKIPPED_SPLITS, primary_set, table_rows, train_skip_reason, usable_splits, write_skipped

log = logging.getLogger(__name__)

InputSize = tuple[int, int, int]


# ------------------------------------------------------------------ backends


class RetrainBackend(Protocol):
    """Trains a model on samples and predicts a manifest; the only part that touches torch."""

    fingerprint: dict
    """Everything about the backend that changes results (recipe, epochs); part of the cache key."""

    def fit(self, samples: pd.DataFrame, root: str, *, arch: str, num_classes: int, seed: int, input_size: InputSize | None): ...

    def predict(self, model, manifest: pd.DataFrame, root: str, *, arch: str, num_classes: int, input_size: InputSize | None): ...

    def default_input_size(self, arch: str, *, num_classes: int) -> InputSize: ...


RESULT_NEUTRAL = ("threads", "workers", "cache_images")
"""``TrainConfig`` fields that change speed, not the trained model: left out of the run cache key."""


@dataclass
class TimmBackend:
    """Trains with ``models.train.train_model`` and predicts with ``models.predict.predict_samples``.

    Args:
        train: The training recipe (``TrainConfig``, epochs already set for the tables).
        batch_size: Prediction batch size.
        kwargs: timm ``create_model`` kwargs per architecture (default: none).
    """

    train: object
    batch_size: int = 128
    kwargs: dict = field(default_factory=dict)
    fingerprint: dict = field(init=False)

    def __post_init__(self):
        recipe = {k: v for k, v in dataclasses.asdict(self.train).items() if k not in RESULT_NEUTRAL}
        self.fingerprint = {"backend": "timm", "train": recipe, "kwargs": {a: self.kwargs[a] for a in sorted(self.kwargs)}}

    def _cfg(self, arch: str, input_size: InputSize | None):
        from ..config import ModelConfig

        size = None if input_size is None else tuple(input_size)
        return ModelConfig(arch=arch, weights="train", input_size=size, kwargs=dict(self.kwargs.get(arch, {})))

    def fit(self, samples, root, *, arch, num_classes, seed, input_size):
        from ..models.train import train_model

        return train_model(
            samples, root, arch_cfg=self._cfg(arch, input_size), num_classes=num_classes, cfg=self.train, seed=seed, input_size=input_size
        )

    def predict(self, model, manifest, root, *, arch, num_classes, input_size):
        from ..models.factory import data_config
        from ..models.predict import predict_samples

        data_cfg = data_config(model, self._cfg(arch, input_size))
        return predict_samples(model, data_cfg, root, manifest, batch_size=self.batch_size)

    def default_input_size(self, arch, *, num_classes):
        import torch

        from ..models import timm_registry
        from ..models.factory import data_config

        timm = timm_registry()

        from ..models import torchvision_archs as tv

        with torch.device("meta"):
            model = (tv.create(arch, num_classes=num_classes) if tv.is_torchvision(arch)
                     else timm.create_model(arch, num_classes=num_classes))
        return tuple(data_config(model, self._cfg(arch, None))["input_size"])


BACKENDS: dict[str, Callable[..., RetrainBackend]] = {"timm": TimmBackend}
"""Retraining backends by name; tests register a fast stand-in."""


# ------------------------------------------------------------------ context


@dataclass
class RetrainContext:
    """What every retraining run shares: the data, the evaluated sets and where runs are cached.

    Args:
        train_root: Image root of the training split.
        num_classes: Classifier width.
        eval_manifests: Per evaluated split, its readable manifest rows (``sample_id``, ``path``, ...).
        eval_roots: Per evaluated split, its image root.
        eval_sets: Evaluation sets by name (``val``, ``val_clean``, ...).
        backend: Trains and predicts.
        cache_dir: Where finished runs are cached.
    """

    train_root: str
    num_classes: int
    eval_manifests: dict[str, pd.DataFrame]
    eval_roots: dict[str, str]
    eval_sets: dict[str, EvalSet]
    backend: RetrainBackend
    cache_dir: Path
    log: list = field(default_factory=list)
    skipped_splits: dict = field(default_factory=dict)


def _root_of(path: Path, fallback: str | None) -> str:
    root = read_metadata(path).get("root") or fallback
    if not root:
        raise ValueError(f"{path}: no 'root' in the schema metadata and no splits.<split>.root in params")
    return root


def num_classes_of(path: Path, fallback: int | None = None) -> int:
    """The class count stored in a manifest's metadata (``num_classes``), else ``fallback``."""
    value = read_metadata(path).get("num_classes")
    if value is None:
        if fallback is None:
            raise ValueError(f"{path}: no 'num_classes' in the schema metadata")
        return fallback
    return int(value)


def original_train(manifest: pd.DataFrame) -> pd.DataFrame:
    """T: readable training rows with their original labels (``sample_id``, ``path``, ``label``)."""
    rows = manifest[manifest["status"] == "ok"]
    return rows[["sample_id", "path", "label", *(c for c in CONTENT_COLUMNS if c in rows.columns)]].reset_index(drop=True)


def cleaned_train(clean: pd.DataFrame) -> pd.DataFrame:
    """T_c: clean training rows with their cleaned labels, placeholders left out."""
    rows = clean[clean["action"] != PLACEHOLDER]
    return rows[["sample_id", "path", "label", *(c for c in CONTENT_COLUMNS if c in rows.columns)]].reset_index(drop=True)


def load_context(
    splits: Sequence[str],
    *,
    paths: RoundPaths,
    backend: RetrainBackend,
    roots: Mapping[str, str | None] | None = None,
) -> RetrainContext:
    """Read the evaluated splits' manifests and clean manifests of this round.

    Args:
        splits: Evaluated splits (not the training split).
        paths: The round's file layout.
        backend: Trains and predicts.
        roots: Fallback image roots per split (params.yaml ``splits.<s>.root``).
    """
    roots = dict(roots or {})
    train_manifest = paths.manifest(TRAIN_SPLIT)
    if not train_manifest.is_file():
        raise FileNotFoundError(f"{train_manifest}: no training manifest (has `imagenet-clean ingest --split {TRAIN_SPLIT}` run?)")
    eval_manifests, eval_roots, eval_sets = {}, {}, {}
    for split in splits:
        m_path = paths.manifest(split)
        manifest = read_table(m_path)
        eval_sets.update(split_sets(split, paths))
        eval_manifests[split] = manifest[manifest["status"] == "ok"].reset_index(drop=True)
        eval_roots[split] = _root_of(m_path, roots.get(split))
    return RetrainContext(
        train_root=_root_of(train_manifest, roots.get(TRAIN_SPLIT)),
        num_classes=num_classes_of(train_manifest),
        eval_manifests=eval_manifests,
        eval_roots=eval_roots,
        eval_sets=eval_sets,
        backend=backend,
        cache_dir=paths.retrain_cache,
    )


# ------------------------------------------------------------------ cached runs


CONTENT_COLUMNS = ("content_hash", "size", "mtime_ns")
"""Manifest columns that change with an image's bytes; part of a run's key where present."""


def _digest_frame(df: pd.DataFrame, columns: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for col in [*columns, *(c for c in CONTENT_COLUMNS if c in df.columns)]:
        h.update(col.encode())
        h.update(pd.util.hash_pandas_object(df[col].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def run_key(ctx: RetrainContext, samples: pd.DataFrame, *, arch: str, seed: int, input_size: InputSize | None) -> str:
    """Content hash of one run: equal keys give the same trained model and predictions.

    Covers the training rows in order (path, label and, where the manifest has them,
    content hash, size and mtime, so regenerated images with the same names miss the cache).
    """
    spec = {
        "arch": arch,
        "seed": int(seed),
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "num_classes": ctx.num_classes,
        "backend": ctx.backend.fingerprint,
        "train": _digest_frame(samples, ("path", "label")),
        "train_root": str(ctx.train_root),
        "eval": {s: [str(ctx.eval_roots[s]), _digest_frame(m, ("sample_id", "path"))] for s, m in sorted(ctx.eval_manifests.items())},
    }
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=12).hexdigest()


def cached_run(ctx: RetrainContext, samples: pd.DataFrame, *, arch: str, seed: int, input_size: InputSize | None = None, label: str = "") -> Path:
    """Train and predict one run unless its cache folder is complete; returns the folder.

    The folder holds ``<split>.parquet`` predictions (contract of ``predictions.py``)
    for every evaluated split and ``done.json`` (written last) with the run's spec
    and timings.

    Raises:
        ValueError: ``samples`` is empty or lacks ``path``/``label``.
    """
    missing = [c for c in ("path", "label") if c not in samples.columns]
    if missing:
        raise ValueError(f"training samples for {arch} ({label}) lack column(s) {missing}")
    if samples.empty:
        raise ValueError(f"training set {label!r} for {arch} has no samples")
    key = run_key(ctx, samples, arch=arch, seed=seed, input_size=input_size)
    folder = ctx.cache_dir / key
    done = folder / "done.json"
    if done.is_file():
        ctx.log.append({"key": key, "arch": arch, "set": label, "seed": seed, "cached": True})
        return folder
    t0 = time.perf_counter()
    model = ctx.backend.fit(samples, ctx.train_root, arch=arch, num_classes=ctx.num_classes, seed=seed, input_size=input_size)
    t_fit = time.perf_counter() - t0
    for split, manifest in ctx.eval_manifests.items():
        table = ctx.backend.predict(model, manifest, ctx.eval_roots[split], arch=arch, num_classes=ctx.num_classes, input_size=input_size)
        write_predictions(folder / f"{split}.parquet", table, model=f"{arch}-{label}-seed{seed}", arch=arch, split=split, num_classes=ctx.num_classes)
    record = {
        "arch": arch, "set": label, "seed": seed, "input_size": input_size, "n_train": len(samples),
        "fit_s": round(t_fit, 2), "total_s": round(time.perf_counter() - t0, 2),
    }
    write_json(done, record)
    ctx.log.append({"key": key, "cached": False, **record})
    return folder


def run_accuracies(ctx: RetrainContext, folder: Path, set_names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Top-1/top-5 (percent; ``None`` for an empty set) of a cached run on each evaluation set."""
    out, preds = {}, {}
    for name, s in ctx.eval_sets.items():
        if set_names is not None and name not in set_names:
            continue
        if s.split not in preds:
            preds[s.split] = read_predictions(folder / f"{s.split}.parquet")
        acc = accuracy(preds[s.split], s.sample_ids, s.labels, source=str(folder / f"{s.split}.parquet"),
                       merges=s.merges, subset=s.subset).as_dict()
        out[name] = {"top1": acc["top1"], "top5": acc["top5"]}
    return out


def seed_runs(
    ctx: RetrainContext,
    samples: pd.DataFrame,
    *,
    arch: str,
    seeds: Sequence[int],
    input_size: InputSize | None = None,
    label: str = "",
) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {set: {"top1", "top5"}}}`` for one (arch, training set, input size) over seeds."""
    out = {}
    for seed in progress(seeds, desc=f"{arch} {label}", unit="run"):
        folder = cached_run(ctx, samples, arch=arch, seed=seed, input_size=input_size, label=label)
        out[seed] = run_accuracies(ctx, folder)
    return out


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
    table, runs = {}, {}
    for arch in archs:
        per_set = {name: seed_runs(ctx, samples, arch=arch, seeds=seeds, input_size=input_size, label=name) for name, samples in train_sets.items()}
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


def stage_skip_reason(params, *, paths: RoundPaths, decisions: bool = False) -> tuple[str | None, list[str], dict[str, str]]:
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


def stage_context(params, *, paths: RoundPaths, backend: RetrainBackend | None = None, splits: Sequence[str] | None = None) -> RetrainContext:
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
    return ctx


def with_skipped(table: dict, skipped: Mapping[str, str]) -> dict:
    """``table`` with ``skipped_splits`` added when any split was left out."""
    return {**table, SKIPPED_SPLITS: dict(skipped)} if skipped else table


def write_table2(params, *, paths: RoundPaths, backend: RetrainBackend | None = None) -> Path:
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
