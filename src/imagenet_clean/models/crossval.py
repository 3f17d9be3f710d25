"""Stratified k-fold cross-validation: out-of-fold predictions for the training split.

For each fold ``k`` a model is trained on the other folds and predicts fold
``k``. As in the paper, the model that predicts validation and V2 is the
entry's *pretrained* model (``pypi``, ``timm`` or a checkpoint path); only a
``weights: train`` entry, which has no pretrained model, also gets one trained
on the whole usable training split. Everything lands in the model's folder::

    <out_dir>/fold<k>.safetensors   checkpoint of fold k
    <out_dir>/fold<k>.parquet       its held-out predictions (predictions.py contract)
    <out_dir>/fold<k>.json          done marker: fingerprint, sizes, held-out top-1, time
    <out_dir>/full.safetensors      model trained on every usable sample (+ full.json; weights: train only)

**Folds** come from scikit-learn's ``StratifiedKFold(shuffle=True,
random_state=seed)`` over the usable rows (manifest ``status == "ok"``) in
manifest order, so every model of a run sees the same folds. A class with fewer
samples than folds is legal: its samples land in different folds (one each), so
each is predicted by a model that saw at most the class's other samples; a
singleton class is never seen by the model predicting it, which confident
learning then rightly treats as unverifiable. Only when *every* class has fewer
samples than folds does fold assignment fail (``ValueError``).

**Resume**: each file is written atomically, the ``.json`` marker last, and the
marker holds a fingerprint of everything the fold depends on (architecture entry,
recipe, the network's parameter shapes, seed, class count, the fold's sample ids,
labels and content hashes). A
fold whose marker and files exist with a matching fingerprint is skipped; a fold
whose checkpoint exists with a matching fingerprint but lacks its predictions is
only re-predicted; anything else is retrained from scratch, which the seeded,
deterministic training makes equal to an uninterrupted run. Stale fold files of
another configuration are overwritten, never reused.

**Side by side** (``train.parallel`` > 1, one process): the trainings run in a
pool of spawned processes, and so do the model check and the architecture digest
of the fingerprints (:func:`_prepare`), so that this process never imports torch
and timm: about 7 s less a ``fit`` stage on 2 cores, where each of the pool's
processes imports them anyway.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ModelConfig, TrainConfig
from ..io import write_json
from ..leftovers import sweep_temporaries
from ..predictions import predictions_table, write_predictions

log = logging.getLogger(__name__)

FULL = -1
"""Fold id of the model trained on the whole training split."""

# Bumped when training changes in a way that must invalidate finished folds.
# 2: images of different sizes stay on the batched crop path (models/batchaug.py); before, they sent the
#    training to the per-image path under the same recipe, so folds of version 1 may hold the other recipe.
_FINGERPRINT_VERSION = 2
# Recipe fields that do not change the trained weights (speed knobs, the accuracy check).
_SPEED_ONLY = ("threads", "workers", "parallel", "cache_images", "min_accuracy")


def assign_folds(labels, *, folds: int, seed: int) -> np.ndarray:
    """Stratified, seeded fold index (0..folds-1) for each label.

    Args:
        labels: Integer labels, one per usable sample, in manifest order.
        folds: Number of folds ``k`` (>= 2).
        seed: Seeds the shuffling; equal seeds give equal folds.

    Raises:
        ValueError: fewer samples than folds, or every class smaller than ``folds``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if n < folds:
        raise ValueError(f"cannot make {folds} folds from {n} usable training samples")
    counts = np.bincount(labels) if n else np.zeros(0, int)
    if counts[counts > 0].max() < folds:
        raise ValueError(f"every class has fewer than {folds} samples (largest: {counts.max()}); lower train.folds")
    # each class shuffled, then dealt round-robin, continuing where the previous class stopped: every
    # class splits as evenly as it can and fold sizes differ by at most one (no scikit-learn import: ~2 s)
    rng = np.random.default_rng(seed)
    out = np.empty(n, np.int32)
    start = 0
    for c in np.flatnonzero(counts):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx] = (start + np.arange(len(idx))) % folds
        start += len(idx)
    small = np.flatnonzero((counts > 0) & (counts < folds))
    if len(small):
        log.warning("classes %s have fewer samples than %d folds: each of their samples is predicted by a model "
                    "that saw fewer of its class", small[:10].tolist(), folds)
    return out


def fingerprint(frame: pd.DataFrame, *, arch_cfg: ModelConfig, cfg: TrainConfig, seed: int, num_classes: int, fold: int,
                shapes: str | None = None) -> str:
    """Hash of everything a fold's result depends on (see module docstring), the network's shapes included.

    Args:
        shapes: The entry's :func:`~.factory.architecture_digest`, when already known
            (computing it builds the network, which imports torch and timm).
    """
    from .batchaug import loader_kind
    from .distributed import env_ranks

    recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _SPEED_ONLY}
    recipe["loader"] = loader_kind(cfg, world_size=env_ranks()[1])  # cache_images may pick the batch path
    if shapes is None:
        from .factory import architecture_digest

        shapes = architecture_digest(dataclasses.replace(arch_cfg, weights="train"), num_classes=num_classes)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"v": _FINGERPRINT_VERSION, "arch": dataclasses.asdict(arch_cfg), "shapes": shapes, "train": recipe,
                         "seed": seed, "num_classes": num_classes, "fold": fold}, sort_keys=True, default=list).encode())
    cols = [c for c in ("sample_id", "path", "label", "content_hash", "fold") if c in frame.columns]
    h.update(pd.util.hash_pandas_object(frame[cols].astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


def fold_paths(out_dir: Path, fold: int) -> dict[str, Path]:
    stem = "full" if fold == FULL else f"fold{fold}"
    return {"ckpt": out_dir / f"{stem}.safetensors", "preds": out_dir / f"{stem}.parquet", "done": out_dir / f"{stem}.json"}


def _done(paths: dict[str, Path], fp: str, *, need_preds: bool) -> bool:
    try:
        marker = json.loads(paths["done"].read_text())
    except (OSError, ValueError):
        return False
    return marker.get("fingerprint") == fp and paths["ckpt"].is_file() and (paths["preds"].is_file() or not need_preds)


def _checkpoint_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("fingerprint")
    except Exception:  # an unreadable checkpoint is simply retrained
        return None


def _predict(model, data_cfg: dict, frame: pd.DataFrame, root, *, fold: int, cfg: TrainConfig, shard_dir: Path) -> pa.Table | None:
    """Held-out predictions in the contract table, sharded over torchrun ranks (rank 0 gets the table)."""
    from .distributed import env_info
    from .predict import predict_samples

    info = env_info()
    return predict_samples(model, data_cfg, root, frame, batch_size=max(cfg.batch_size, 64), bf16=cfg.bf16,
                           workers=cfg.workers, shard_dir=shard_dir, rank=info.rank, world_size=info.world_size,
                           fold=fold, desc=f"predict fold {fold}")


def _train_and_save(frame: pd.DataFrame, root, *, fold: int, fp: str, held: pd.DataFrame | None, arch_cfg: ModelConfig,
                    num_classes: int, cfg: TrainConfig, seed: int, out_dir: Path, live_dir: Path | None, model_name: str) -> dict:
    """Train (or reuse a matching checkpoint), save, predict ``held`` and write the done marker."""
    from .distributed import barrier, env_info
    from .factory import build_model, config_digest, save_checkpoint
    from .train import train_model

    paths = fold_paths(out_dir, fold)
    rank = env_info().rank
    name = f"{model_name} {'full' if fold == FULL else f'fold {fold}'}"
    t0 = time.perf_counter()
    trained = False
    if _checkpoint_fingerprint(paths["ckpt"]) == fp:
        log.info("%s: reusing checkpoint %s", name, paths["ckpt"])
        model, data_cfg = build_model(arch_cfg, num_classes=num_classes, checkpoint=paths["ckpt"])
    else:
        stem = "full" if fold == FULL else f"fold{fold}"
        model = train_model(frame[["path", "label"]], root, arch_cfg=arch_cfg, num_classes=num_classes, cfg=cfg,
                            seed=seed + (0 if fold == FULL else 1000 * (fold + 1)),
                            live_dir=None if live_dir is None else live_dir / stem, desc=name)
        from .factory import data_config

        data_cfg = data_config(model, arch_cfg)
        trained = True
        if rank == 0:
            save_checkpoint(model, paths["ckpt"], metadata={"fingerprint": fp, "arch": arch_cfg.arch, "fold": fold, "model": model_name,
                                                            "model_config": config_digest(arch_cfg)})
    if trained and rank == 0:  # the marker stays free of wall-clock figures: reruns give byte-identical outputs
        from ..timing import record_timing

        record_timing(f"fit@{model_name}", {"fold": fold, "train_s": round(time.perf_counter() - t0, 1), "n_train": int(len(frame))})
    marker = {"fingerprint": fp, "fold": fold, "n_train": int(len(frame))}
    if held is not None:
        shard_dir = out_dir / f".{paths['preds'].stem}-shards"
        table = _predict(model, data_cfg, held, root, fold=fold, cfg=cfg, shard_dir=shard_dir)
        if rank == 0:
            write_predictions(paths["preds"], table, model=model_name, arch=arch_cfg.arch, split="train", num_classes=num_classes)
            marker.update(n_heldout=int(len(held)), heldout_top1=_top1(table, held["label"].to_numpy()))
            shutil.rmtree(shard_dir, ignore_errors=True)
    if rank == 0:
        write_json(paths["done"], marker)
        log.info("%s: %s", name, marker)
    barrier()
    return marker


def _prepare(arch_cfg: ModelConfig, num_classes: int, finetune: bool) -> str:
    """Check the model entry before any training and return its architecture digest (for the fingerprints).

    Raises:
        ModelError: the entry cannot be built (or, to fine-tune, its weights are missing or do not fit).
    """
    from .factory import architecture_digest, check_model

    if finetune and arch_cfg.weights != "train":
        from .train import build_train_model

        build_train_model(arch_cfg, num_classes=num_classes, finetune=True)  # fails fast on missing/unfitting weights
    else:
        check_model(dataclasses.replace(arch_cfg, weights="train"), num_classes=num_classes)
    return architecture_digest(dataclasses.replace(arch_cfg, weights="train"), num_classes=num_classes)


@contextlib.contextmanager
def _trainer(cfg: TrainConfig):
    """Where the trainings run: a pool of ``cfg.parallel`` spawned processes, or None for this process.

    Each training is seeded on its own, so running several at once in separate
    processes (each with ``cpu_count // parallel`` threads unless ``cfg.threads``
    says otherwise) gives the same checkpoints as running them one after another
    with that thread count. Under torchrun (or ``parallel: 1``) the trainings run
    here, one after another, each spread over the ranks.
    """
    from .distributed import env_ranks, spawn_pool

    if cfg.parallel <= 1 or env_ranks()[1] > 1:
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        yield None
        return
    with spawn_pool(cfg.parallel, threads=cfg.threads or None) as pool:  # the pool sets each process's threads
        yield pool


def _call(pool, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the pool (waiting for it) or, without one, here."""
    return fn(*args, **kwargs) if pool is None else pool.submit(fn, *args, **kwargs).result()


def _run_jobs(jobs: dict[int, dict], *, pool, cfg: TrainConfig, common: dict) -> None:
    """Train the pending folds (and the full model) in ``pool`` (see :func:`_trainer`), or here without one.

    The largest training (the full model) is submitted first, so it does not run alone at the end.
    """
    if pool is None:
        for k, job in jobs.items():
            _train_and_save(job["frame"], fold=k, fp=job["fp"], held=job["held"], cfg=cfg, **common)
        return
    order = sorted(jobs, key=lambda k: -len(jobs[k]["frame"]))  # longest first; stable for equal sizes
    futures = [pool.submit(_train_and_save, jobs[k]["frame"], fold=k, fp=jobs[k]["fp"], held=jobs[k]["held"], cfg=cfg,
                           **common) for k in order]
    for f in futures:
        f.result()


def _top1(table: pa.Table, labels: np.ndarray) -> float | None:
    ok = np.asarray(table["status"].to_numpy(zero_copy_only=False)) == "ok"
    if not ok.any():
        return None
    top = np.array([t[0] if t is not None else -1 for t in table["top5"].to_pylist()])
    return round(float((top[ok] == labels[ok]).mean()), 4)


def cross_validate(
    manifest: pd.DataFrame,
    root: str | Path,
    *,
    model_name: str,
    arch_cfg: ModelConfig,
    num_classes: int,
    cfg: TrainConfig,
    seed: int,
    out_dir: str | Path,
    live_dir: str | Path | None = None,
    full: bool = True,
) -> pa.Table:
    """Out-of-fold predictions for every manifest row, plus fold and full checkpoints.

    Args:
        manifest: The training split's manifest (``sample_id``, ``path``, ``label``,
            ``status``, ``reason``; ``content_hash`` when present joins the fingerprint).
        root: The split's image root.
        model_name: The model's name in params.yaml (recorded in outputs).
        arch_cfg: Its entry (architecture, weights, input size, kwargs).
        num_classes: Class count of the dataset.
        cfg: Training recipe; ``cfg.folds`` folds.
        seed: Seeds fold assignment (same seed, same folds for every model) and training.
        out_dir: The model's folder, conventionally ``data/models/<model_name>``.
        live_dir: dvclive root; each fold logs to ``<live_dir>/fold<k>`` and the
            full model to ``<live_dir>/full``. None logs nothing.
        full: Also train the model on the whole usable split (``full.safetensors``);
            when False, full-split files of an earlier run are removed.

    Returns:
        The predictions table (predictions.py contract) in manifest order: usable
        rows carry their out-of-fold probabilities and ``fold``; rows unusable at
        ingestion (or unreadable now) are ``error`` rows with the reason (fold -1
        when never assigned).

    Raises:
        ValueError: missing manifest columns, labels outside ``[0, num_classes)``,
            duplicate sample ids, or too few samples for ``cfg.folds``.
        ModelError: the model entry cannot be built (checked before any training).
    """
    sweep_temporaries(out_dir)  # what a killed run's atomic writes left (leftovers.py)
    need = ["sample_id", "path", "label", "status"]
    missing = [c for c in need if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; has {list(manifest.columns)}")
    dup = manifest["sample_id"][manifest["sample_id"].duplicated()]
    if len(dup):
        raise ValueError(f"manifest has duplicate sample_id(s): {dup.head(3).tolist()}")
    out_dir = Path(out_dir)
    live_dir = None if live_dir is None else Path(live_dir)
    manifest = manifest.reset_index(drop=True)
    usable = manifest[manifest["status"] == "ok"].copy()
    bad = usable[(usable["label"] < 0) | (usable["label"] >= num_classes)]
    if len(bad):
        raise ValueError(f"labels outside [0, {num_classes}): sample {bad['sample_id'].iloc[0]!r} has label {int(bad['label'].iloc[0])}")
    usable["fold"] = assign_folds(usable["label"].to_numpy(), folds=cfg.folds, seed=seed)

    common = dict(root=root, arch_cfg=arch_cfg, num_classes=num_classes, seed=seed, out_dir=out_dir, live_dir=live_dir,
                  model_name=model_name)
    with _trainer(cfg) as pool:
        shapes = _call(pool, _prepare, arch_cfg, num_classes, cfg.finetune)  # the model check, before any training
        jobs: dict[int, dict] = {}
        for k in range(cfg.folds):
            fp = fingerprint(usable[["sample_id", "path", "label", "fold"] + [c for c in ("content_hash",) if c in usable]],
                             arch_cfg=arch_cfg, cfg=cfg, seed=seed, num_classes=num_classes, fold=k, shapes=shapes)
            if _done(fold_paths(out_dir, k), fp, need_preds=True):
                log.info("%s fold %d: done, skipped", model_name, k)
            else:
                jobs[k] = dict(frame=usable[usable["fold"] != k], held=usable[usable["fold"] == k], fp=fp)
        if full:
            fp = fingerprint(usable[["sample_id", "path", "label"] + [c for c in ("content_hash",) if c in usable]],
                             arch_cfg=arch_cfg, cfg=cfg, seed=seed, num_classes=num_classes, fold=FULL, shapes=shapes)
            if not _done(fold_paths(out_dir, FULL), fp, need_preds=False):
                jobs[FULL] = dict(frame=usable, held=None, fp=fp)
        _run_jobs(jobs, pool=pool, cfg=cfg, common=common)
    parts = [pq.read_table(fold_paths(out_dir, k)["preds"]) for k in range(cfg.folds)]
    from .distributed import env_ranks

    if env_ranks()[0] == 0:
        _remove_stale(out_dir, cfg.folds, full=full)
    return _assemble(manifest, parts, num_classes=num_classes)


def _remove_stale(out_dir: Path, folds: int, *, full: bool = True) -> None:
    """Delete fold files of an earlier run with more folds, and its full model when none is trained now.

    Such files would mislead later stages (a pretrained entry predicts with its
    pretrained weights, never with a ``full.safetensors`` of another configuration).
    """
    exts = (".safetensors", ".parquet", ".json")
    keep = {f"fold{k}{ext}" for k in range(folds) for ext in exts}
    stale = [p for p in out_dir.glob("fold*") if p.name not in keep]
    if not full:
        stale += [out_dir / f"full{ext}" for ext in exts]
    for p in stale:
        if p.suffix in exts and p.is_file():
            log.info("removing stale %s", p)
            p.unlink()


def _assemble(manifest: pd.DataFrame, parts: list[pa.Table], *, num_classes: int) -> pa.Table:
    """Fold tables + error rows for unusable samples, in manifest order."""
    unusable = manifest[manifest["status"] != "ok"]
    reasons = unusable["reason"].fillna("").astype(str) if "reason" in unusable else pd.Series([""] * len(unusable))
    err = predictions_table(unusable["sample_id"].to_numpy(), np.zeros((len(unusable), num_classes), np.float32),
                            status=["error"] * len(unusable),
                            reason=[r or "unusable at ingestion" for r in reasons], fold=np.full(len(unusable), -1, np.int32))
    parts = [p.select(err.column_names).cast(err.schema) for p in parts]
    table = pa.concat_tables(parts + [err])
    ids = table["sample_id"].to_numpy(zero_copy_only=False)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    if pos.index.duplicated().any() or len(ids) != len(manifest):
        raise ValueError(f"out-of-fold predictions cover {len(ids)} rows for {len(manifest)} manifest rows (fold files inconsistent)")
    return table.take(pa.array(pos.loc[manifest["sample_id"].to_numpy()].to_numpy()))
