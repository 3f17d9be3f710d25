"""Whole-file prediction on top of :func:`~imagenet_clean.models.predict.predict_samples`.

:func:`predict_to_file` is the ``predict`` command (any model on a folder or a
manifest, one file); :func:`run_predict_split` is the predict stage's library
(every configured model on one split, sharded and resumable, ImageNet-R
restricted to its classes, skipped splits written empty).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..constants import MAX_IMAGE_PIXELS, SKIPPED_WHY
from ..diskspace import check_free_space, prediction_file_bytes
from ..io import read_metadata
from ..leftovers import sweep_outputs, sweep_temporaries
from ..predictions import predictions_table
from .distributed import barrier
from .predict import predict_samples

_log = logging.getLogger(__name__)



def accuracy_summary(table: pa.Table, labels) -> dict:
    """``n`` (predicted rows), ``n_error``, and ``top1``/``top5`` fractions over rows with a known label (>= 0)."""
    status = np.asarray(table["status"].to_pylist(), dtype=object)
    ok = status == "ok"
    out = {"n": int(ok.sum()), "n_error": int((~ok).sum())}
    labels = np.asarray(labels, np.int64)
    known = ok & (labels >= 0)
    if known.any():
        top5 = np.asarray([t for t, k in zip(table["top5"].to_pylist(), known) if k], np.int64)
        y = labels[known]
        out["n_labelled"] = int(known.sum())
        out["top1"] = round(float((top5[:, 0] == y).mean()), 6)
        out["top5"] = round(float((top5 == y[:, None]).any(axis=1).mean()), 6)
    return out


def folder_manifest(images: str | Path, *, classes, max_pixels: int = MAX_IMAGE_PIXELS) -> pd.DataFrame:
    """A manifest for any image folder: ``<wnid>/`` class folders (labelled) and/or flat files (label -1).

    Raises:
        FileNotFoundError: ``images`` does not exist.
        ValueError: the folder holds no files.
    """
    from ..data.ingest import ingest_split

    df, _ = ingest_split(images, layout="val", classes=classes, hash=False, max_pixels=max_pixels)
    if df.empty:
        raise ValueError(f"{images}: no files found")
    # label problems are not read problems here: predict unlabelled images too
    label_issue = df["reason"].str.startswith(("no label", "not in a class folder", "unknown class")) & (df["width"] > 0)
    df.loc[label_issue, ["status", "reason"]] = ["ok", ""]
    df.loc[label_issue, "label"] = -1
    return df


def predict_to_file(
    cfg,
    *,
    out: str | Path,
    manifest: str | Path | None = None,
    images: str | Path | None = None,
    classes: str = "imagenet-1k",
    root: str | Path | None = None,
    batch_size: int = 64,
    bf16: bool = False,
    compile: bool = False,
    workers: int = 1,
    shard_dir: str | Path | None = None,
) -> dict:
    """Predict a manifest or an image folder with one model and write the prediction file.

    Args:
        cfg: The :class:`~imagenet_clean.config.ModelConfig` (arch + weights).
        out: Destination ``.parquet`` (written atomically, by rank 0 under torchrun).
        manifest: A manifest parquet; its images lie under ``root`` (default: its ``root`` metadata).
        images: An image folder instead (``<wnid>/`` class folders or flat files).
        classes: ``imagenet-1k`` or a class TSV (labels of ``images`` and the model's class count).
        batch_size: Images per forward pass.
        bf16: bfloat16 autocast.
        compile: ``torch.compile`` the model (worth its ~30 s on thousands of images).
        workers: Decoding worker processes.
        shard_dir: Keep finished shards here so an interrupted run resumes.

    Returns:
        A JSON-able summary: ``n``, ``n_error``, ``top1``/``top5`` (when labels are known), ``seconds``, ``images_per_s``.
    """
    import time

    from ..classes import load_classes
    from ..io import read_table
    from ..predictions import write_predictions
    from .distributed import process_group
    from .factory import build_model, check_model

    sweep_outputs([out])
    if (manifest is None) == (images is None):
        raise ValueError("give exactly one of a manifest file or an image folder")
    class_list = load_classes(classes)
    k = len(class_list)
    check_model(cfg, num_classes=k)
    if manifest is not None:
        df = read_table(manifest)
        meta = read_metadata(manifest)
        if meta.get("num_classes") and int(meta["num_classes"]) != k:
            raise ValueError(f"{manifest} has {meta['num_classes']} classes but --classes {classes} has {k}")
        root = root or meta.get("root")
        if not root:
            raise ValueError(f"{manifest}: no root in its metadata; pass the image root")
    else:
        df = folder_manifest(images, classes=class_list)
        root = images
    check_free_space({Path(out).parent: prediction_file_bytes(len(df), k) * (2 if shard_dir else 1)}, what=f"predict {out}")
    with process_group() as info:
        model, data_cfg = build_model(cfg, num_classes=k)
        t0 = time.perf_counter()
        table = predict_samples(
            model, data_cfg, root, df, batch_size=batch_size, bf16=bf16, compile=compile, workers=workers,
            shard_dir=shard_dir, rank=info.rank, world_size=info.world_size, device=info.device,
        )
        seconds = time.perf_counter() - t0
        if table is None:
            return {}
        write_predictions(out, table, model=cfg.arch, arch=cfg.arch, split=Path(str(manifest or images)).stem, num_classes=k,
                          weights=cfg.weights)
    summary = accuracy_summary(table, df["label"] if "label" in df.columns else np.full(len(df), -1))
    summary.update(seconds=round(seconds, 3), images_per_s=round(summary["n"] / seconds, 2) if seconds > 0 else None)
    return summary


SPLIT_SUBSETS: dict[str, str] = {"imagenet_r": "imagenet_r"}
"""Splits whose images cover a class subset (:mod:`imagenet_clean.data.imagenet_r`): their
predictions are restricted to it (zeros elsewhere, renormalised, top-5 among the subset)."""


def restrict_table(table: pa.Table, *, subset: str) -> pa.Table:
    """A predictions table with its probabilities and top-5 restricted to a class subset of ImageNet-1k.

    Error rows keep their status and reason (and null probabilities).

    Raises:
        ValueError: the table's probabilities are not 1000-wide, or ``subset`` is unknown.
    """
    from ..data.imagenet_r import restrict_probs

    n, k = table.num_rows, table.schema.field("probs").type.list_size
    status = np.asarray(table["status"].to_pylist(), dtype=object)
    probs = np.zeros((n, k), np.float32)
    ok = status == "ok"
    if ok.any():
        col = table["probs"].combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, k)
        probs[ok] = flat[ok] if len(flat) == n else flat
    probs = restrict_probs(probs, subset=subset, keep_shape=True, renormalize=True)
    return predictions_table(table["sample_id"].to_pylist(), probs, status=status, reason=table["reason"].to_pylist(),
                             fold=table["fold"].to_numpy())


def _skip_reason(split: str, params, manifest_path: Path) -> str | None:
    """Why ``split`` is skipped (null root in params.yaml, or no manifest rows, as ``ingest`` writes then); None when it is not."""
    sc = params.splits.get(split)
    if sc is not None and not sc.root:
        return f"splits.{split}.root is null"
    if not manifest_path.is_file():
        return "not configured in params.yaml splits and no manifest" if sc is None else None
    if pq.ParquetFile(manifest_path).metadata.num_rows == 0:
        return f"{manifest_path} has no rows"
    return None


def _write_skipped(split: str, params, names: list[str], *, why: str, manifest_path: Path, out_dir: Path) -> dict:
    """One empty prediction file per model (the contract schema, ``skipped`` metadata) for a skipped split."""
    from ..classes import load_classes
    from ..predictions import write_predictions
    from .distributed import env_ranks

    meta = read_metadata(manifest_path) if manifest_path.is_file() else {}
    k = int(meta.get("num_classes") or 0) or len(load_classes(params.dataset.classes))
    summaries = {}
    if env_ranks()[0] != 0:  # no torch import for a skipped split
        return summaries
    empty = predictions_table([], np.zeros((0, k), np.float32))
    for name in names:
        write_predictions(out_dir / split / f"{name}.parquet", empty, model=name, arch=params.models[name].arch, split=split,
                          num_classes=k, skipped="true", **{SKIPPED_WHY: why})
        summaries[name] = {"n": 0, "n_error": 0, "skipped": why}
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    _log.info("split %s skipped (%s): wrote %d empty prediction files", split, why, len(names))
    return summaries


def run_predict_split(
    split: str,
    params,
    *,
    manifests_dir: str | Path,
    models_dir: str | Path,
    out_dir: str | Path,
    cache_dir: str | Path,
    models: list[str] | None = None,
    features_dir: str | Path | None = None,
) -> dict:
    """The ``predict@split`` stage: every configured model predicts one split, one model at a time.

    Which weights predict (:func:`~imagenet_clean.models.factory.resolve_checkpoint`):
    a ``weights: train`` model loads ``<models_dir>/<model>/full.safetensors``; other
    sources predict with their pretrained weights, as in the paper. Every model is
    checked before the first prediction starts. Shards go to
    ``<cache_dir>/<split>/<model>/`` (resumable) and are removed once the model's
    file ``<out_dir>/<split>/<model>.parquet`` is written. Works under torchrun.

    A split whose root is null in params.yaml, or whose manifest has no rows (what
    ``ingest`` writes for a skipped split), is skipped: one empty prediction file
    per model (metadata ``skipped``: ``true``, ``why``), so that DVC finds the
    stage's output; ``clean`` and ``tables`` skip such splits by params.yaml. A split in :data:`SPLIT_SUBSETS`
    (``imagenet_r``) has its probabilities restricted to its classes.

    Returns:
        ``{model: summary}`` (see :func:`accuracy_summary`; a skipped split's
        summaries hold ``skipped``: why), on rank 0; ``{}`` on other ranks.

    Raises:
        ModelError: a model is misconfigured or its checkpoint is missing or does not fit.
        FileNotFoundError: the split's manifest is missing.
        ValueError: unknown model names, no image root, or a subset split whose
            class list is not ImageNet-1k.
    """
    import shutil
    import time

    from ..io import read_table
    from ..predictions import write_predictions

    sweep_temporaries(Path(out_dir) / split, Path(cache_dir) / split)  # what killed runs' atomic writes left
    names = list(params.models) if models is None else list(models)
    unknown = [n for n in names if n not in params.models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; params.yaml models: {', '.join(params.models)}")
    manifest_path = Path(manifests_dir) / f"{split}.parquet"
    why = _skip_reason(split, params, manifest_path)
    if why is not None:
        return _write_skipped(split, params, names, why=why, manifest_path=manifest_path, out_dir=Path(out_dir))
    if params.train.mode == "probe":  # the heads fit@<model> fitted on all of train, on this split's features
        from .probe_run import predict_probe_split

        return predict_probe_split(split, params, names, manifest_path=manifest_path, models_dir=models_dir, out_dir=out_dir,
                                   features_dir=features_dir or Path(models_dir).parent / "features")
    from .distributed import process_group  # torch and timm: only for a split that is predicted
    from .factory import build_model, check_model, resolve_checkpoint
    from .weights import ModelError

    df = read_table(manifest_path)
    meta = read_metadata(manifest_path)
    root = meta.get("root") or (params.splits[split].root if split in params.splits else None)
    if not root:
        raise ValueError(f"{manifest_path}: no root in its metadata and no splits.{split}.root in params.yaml")
    if meta.get("num_classes"):
        k = int(meta["num_classes"])
    else:
        from ..classes import load_classes

        k = len(load_classes(params.dataset.classes))
    subset = SPLIT_SUBSETS.get(split)
    if subset is not None:
        from ..data.imagenet_r import NUM_IMAGENET_CLASSES

        if k != NUM_IMAGENET_CLASSES:
            raise ValueError(f"split {split!r} is evaluated on the {subset} subset of the {NUM_IMAGENET_CLASSES} ImageNet-1k classes, "
                             f"but {manifest_path} has {k} classes (dataset.classes {params.dataset.classes!r})")
    checkpoints = {}
    for name in names:  # fail before any long work
        cfg = params.models[name]
        try:
            checkpoints[name] = resolve_checkpoint(name, cfg, models_dir=models_dir)
            check_model(cfg, num_classes=k, checkpoint=checkpoints[name])
        except ModelError as e:
            msg = str(e)
            raise ModelError(msg if msg.startswith(f"model {name!r}") else f"model {name!r}: {msg}") from None

    file_bytes = prediction_file_bytes(len(df), k)  # one model's shards and file exist at once; the files add up
    check_free_space({Path(out_dir) / split: len(names) * file_bytes, Path(cache_dir) / split: file_bytes},
                     what=f"predict@{split}")
    pc = params.predict
    summaries = {}
    with process_group() as info:
        for name in names:
            cfg = params.models[name]
            model, data_cfg = build_model(cfg, num_classes=k, checkpoint=checkpoints[name])
            shard_dir = Path(cache_dir) / split / name
            t0 = time.perf_counter()
            table = predict_samples(
                model, data_cfg, root, df, batch_size=pc.batch_size, bf16=pc.bf16, channels_last=pc.channels_last,
                compile=pc.compile, workers=pc.workers, shard_dir=shard_dir, shard_size=pc.shard_size, rank=info.rank,
                world_size=info.world_size, device=info.device, max_pixels=params.ingest.max_pixels, desc=f"{split}/{name}",
            )
            seconds = time.perf_counter() - t0
            if info.is_main:
                if subset is not None:
                    table = restrict_table(table, subset=subset)
                write_predictions(Path(out_dir) / split / f"{name}.parquet", table, model=name, arch=cfg.arch, split=split, num_classes=k,
                                  **({"subset": subset} if subset else {}))
                shutil.rmtree(shard_dir, ignore_errors=True)
                s = accuracy_summary(table, df["label"] if "label" in df.columns else np.full(len(df), -1))
                s.update(seconds=round(seconds, 3))
                summaries[name] = s
            del model, table
            barrier()
    return summaries
