"""Retraining runs for tables 2, 3 and the ablations: the backend that trains, the shared context, the run cache.

A run is one (training samples, architecture, seed, input size) on the evaluated
splits' readable rows; finished runs are cached under ``data/cache/retrain/<key>/``
(:func:`cached_run`), where the key hashes the samples' identities, labels and
content, the architecture, seed, input size and the backend's fingerprint.
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

import pandas as pd

from ..io import read_metadata, read_table, write_json
from ..predictions import read_predictions, write_predictions
from ..progress import progress
from ..workspace import Workspace
from .accuracy import (
    PLACEHOLDER,
    SET_METRIC,
    TRAIN_SPLIT,
    EvalSet,
    accuracy,
    split_sets,
)

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


RESULT_NEUTRAL = ("threads", "workers", "parallel", "cache_images", "min_accuracy")
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
        from ..models.batchaug import loader_kind

        recipe = {k: v for k, v in dataclasses.asdict(self.train).items() if k not in RESULT_NEUTRAL}
        recipe["loader"] = loader_kind(self.train)  # the tables train in one process per run
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
        # the recipe's DataLoader workers, as cross-validation predicts held-out folds (0 here: a worker
        # process started inside a parallel retraining process cost ~10 s per split)
        return predict_samples(model, data_cfg, root, manifest, batch_size=self.batch_size, workers=self.train.workers)

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
    workers: int = 1
    """Runs trained at once in separate CPU processes (``train.parallel``; 1 on a GPU or under torchrun)."""


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
    paths: Workspace,
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


def cached_run(ctx: RetrainContext, samples: pd.DataFrame, *, arch: str, seed: int, input_size: InputSize | None = None,
               label: str = "") -> Path:
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
        write_predictions(folder / f"{split}.parquet", table, model=f"{arch}-{label}-seed{seed}", arch=arch, split=split,
                          num_classes=ctx.num_classes)
    record = {
        "arch": arch, "set": label, "seed": seed, "input_size": input_size, "n_train": len(samples),
        "fit_s": round(t_fit, 2), "total_s": round(time.perf_counter() - t0, 2),
    }
    write_json(done, record)
    ctx.log.append({"key": key, "cached": False, **record})
    return folder


def run_accuracies(ctx: RetrainContext, folder: Path, set_names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Top-1/top-5 (percent; ``None`` for an empty set) of a cached run on each evaluation set.

    A set with label sets also has ``top1_set`` (top-1 in the row's label set, :func:`.accuracy.accuracy`).
    """
    out, preds = {}, {}
    for name, s in ctx.eval_sets.items():
        if set_names is not None and name not in set_names:
            continue
        if s.split not in preds:
            preds[s.split] = read_predictions(folder / f"{s.split}.parquet")
        acc = accuracy(preds[s.split], s.sample_ids, s.labels, source=str(folder / f"{s.split}.parquet"),
                       merges=s.merges, subset=s.subset, label_sets=s.label_sets).as_dict()
        out[name] = {k: acc[k] for k in ("top1", "top5", SET_METRIC) if k in acc}
    return out


def _run_in_worker(ctx: RetrainContext, run: dict) -> dict:
    cached_run(ctx, **run)
    return ctx.log[-1]


def train_in_parallel(ctx: RetrainContext, runs: Sequence[dict]) -> None:
    """Train the runs that are not cached yet, ``ctx.workers`` processes at once.

    Args:
        ctx: Shared data and cache; ``ctx.workers`` processes.
        runs: :func:`cached_run` keyword arguments (``samples``, ``arch``,
            ``seed``, ``input_size``, ``label``), one dict a run.

    Each run is seeded on its own and lands in the same cache folder as it would
    one after another; each process gets ``cpu_count // workers`` threads (unless
    the recipe sets ``threads``), so on a CPU the results equal a sequential run
    with that thread count. With ``ctx.workers <= 1`` or one pending run nothing
    happens here, and :func:`cached_run` trains in this process when asked.
    """
    from ..models.distributed import spawn_pool

    def done(r: dict) -> bool:
        key = run_key(ctx, r["samples"], arch=r["arch"], seed=r["seed"], input_size=r.get("input_size"))
        return (ctx.cache_dir / key / "done.json").is_file()

    pending = [r for r in runs if not done(r)]
    workers = min(ctx.workers, len(pending))
    if workers <= 1:
        return
    with spawn_pool(workers) as pool:
        futures = [pool.submit(_run_in_worker, ctx, r) for r in pending]
        ctx.log.extend(f.result() for f in futures)


def seed_runs(
    ctx: RetrainContext,
    samples: pd.DataFrame,
    *,
    arch: str,
    seeds: Sequence[int],
    input_size: InputSize | None = None,
    label: str = "",
) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {set: {"top1", "top5"}}}`` for one (arch, training set, input size) over seeds.

    Pending runs are trained ``ctx.workers`` at a time first (:func:`train_in_parallel`).
    """
    train_in_parallel(ctx, [dict(samples=samples, arch=arch, seed=s, input_size=input_size, label=label) for s in seeds])
    out = {}
    for seed in progress(seeds, desc=f"{arch} {label}", unit="run"):
        folder = cached_run(ctx, samples, arch=arch, seed=seed, input_size=input_size, label=label)
        out[seed] = run_accuracies(ctx, folder)
    return out
