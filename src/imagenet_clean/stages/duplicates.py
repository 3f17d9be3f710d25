"""Stage ``duplicates``: exact and near copies within and across splits -> ``data/duplicates/``, ``metrics/duplicates.json``.

Exact pairs come from the manifests' content hashes. Near pairs come from pooled
features, one vector per sample (:func:`imagenet_clean.cleanup.duplicates.pool_models`
over ``duplicates.models``):

- ``train.mode: probe``: the ``features`` stage's files, ``data/features/<model>/<split>.parquet``;
- otherwise (scratch, finetune: the embedded default): the full (not fold) models'
  penultimate activations, computed here in streaming batches.

Images without features (unreadable) are recorded per split. Cross-split pairs
(``train-val``, ``train-v2``, ``val-v2``) are leakage and reported on their own.
Where ``dataset.truth`` records injected copies, the found pairs are scored
against them. ``duplicates.remove`` lists the within-split copies a removal
drops (one representative per group always stays) in ``removals.parquet``, which
the clean stage applies as the rule ``duplicate``; the file is always written
(empty with the rule off), because it is a static dependency of ``clean@``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..cleanup.duplicate_rule import REMOVALS_COLUMNS, write_removals
from ..cleanup.duplicates import (
    LEAKAGE_PAIRS,
    count_pairs,
    exact_duplicates,
    merge_pairs,
    near_duplicates,
    pair_name,
    pool_models,
    read_feature_file,
    removable,
    score_pairs,
    split_pairs,
    truth_pairs,
)
from ..config import Params
from ..io import read_metadata, read_table, write_json, write_table
from ..workspace import Workspace
from .common import project_classes, skip_reason, split_root


def feature_file(ws: Workspace, model: str, split: str) -> Path:
    """The ``features`` stage's file of ``model`` on ``split`` (probe mode)."""
    return ws.data / "features" / model / f"{split}.parquet"


def _splits(params: Params, ws: Workspace) -> list[str]:
    return [s for s in params.splits if skip_reason(params, s) is None and ws.manifest(s).is_file()
            and read_metadata(ws.manifest(s)).get("skipped") != "true"]


def _model_features(params: Params, ws: Workspace, model: str, manifests: dict[str, pd.DataFrame]) -> dict:
    """``split -> (ids with features, features, {sample_id: reason} of the rest)`` of one model."""
    out = {}
    if getattr(params.train, "mode", "scratch") == "probe":
        for split, man in manifests.items():
            out[split] = read_feature_file(feature_file(ws, model, split), man["sample_id"].tolist())
        return out
    from ..models.factory import load_trained

    first = next(iter(manifests))
    classes = project_classes(read_metadata(ws.manifest(first)), params, ws)
    net, data_cfg = load_trained(model, params.models[model], num_classes=len(classes), fold=-1, models_dir=ws.models)
    from ..models.embeddings import penultimate_features

    for split, man in manifests.items():
        usable = man[man["status"] == "ok"]
        bad = {i: r or "unreadable" for i, r in zip(man.loc[man["status"] != "ok", "sample_id"], man.loc[man["status"] != "ok", "reason"])}
        root = split_root(read_metadata(ws.manifest(split)), params, split, ws)
        x, reasons = penultimate_features(net, data_cfg, root, usable["path"].tolist(), batch_size=params.duplicates.batch_size,
                                          max_pixels=params.ingest.max_pixels, kind=params.duplicates.features,
                                          desc=f"features {model} {split}")
        ok = np.array([not r for r in reasons], bool)
        ids = usable["sample_id"].astype(str).to_numpy()
        bad.update({i: r for i, r, g in zip(ids, reasons, ok) if not g})
        out[split] = (ids[ok].tolist(), x[ok], bad)
    return out


def _pixel_features(params: Params, ws: Workspace, manifests: dict[str, pd.DataFrame]) -> dict:
    """``split -> (ids with a thumbnail, thumbnails, {sample_id: reason} of the rest)`` (``duplicates.pixels`` side)."""
    from ..models.embeddings import pixel_features

    out = {}
    for split, man in manifests.items():
        usable = man[man["status"] == "ok"]
        bad = {i: r or "unreadable" for i, r in zip(man.loc[man["status"] != "ok", "sample_id"], man.loc[man["status"] != "ok", "reason"])}
        root = split_root(read_metadata(ws.manifest(split)), params, split, ws)
        x, reasons = pixel_features(root, usable["path"].tolist(), side=params.duplicates.pixels, batch_size=params.duplicates.batch_size,
                                    max_pixels=params.ingest.max_pixels, desc=f"pixels {split}")
        ok = np.array([not r for r in reasons], bool)
        ids = usable["sample_id"].astype(str).to_numpy()
        bad.update({i: r for i, r, g in zip(ids, reasons, ok) if not g})
        out[split] = (ids[ok].tolist(), x[ok], bad)
    return out


def pooled_features(params: Params, ws: Workspace, manifests: dict[str, pd.DataFrame]) -> tuple[dict, dict[str, dict[str, str]]]:
    """Per split ``(ids, pooled features)`` over ``duplicates.models`` and per split ``{sample_id: reason}`` without features.

    With ``duplicates.pixels`` the pooled models' vector and the images' thumbnails
    are pooled again with equal weight: a pair's distance is the mean of the two.
    """
    models = list(params.duplicates.models) or list(params.models)
    per_model = {m: _model_features(params, ws, m, manifests) for m in models}
    pixels = _pixel_features(params, ws, manifests) if params.duplicates.pixels else None
    feats, missing = {}, {}
    for split in manifests:
        missing[split] = {}
        for m in models:
            missing[split].update(per_model[m][split][2])
        feats[split] = pool_models([per_model[m][split][:2] for m in models])
        if pixels is not None:
            missing[split].update(pixels[split][2])
            feats[split] = pool_models([feats[split], pixels[split][:2]])
    return feats, missing


def _truth(params: Params, ws: Workspace) -> pd.DataFrame | None:
    if not params.dataset.truth:
        return None
    path = ws.resolve(params.dataset.truth)
    return read_table(path) if path.is_file() else None


def run(params: Params, ws: Workspace) -> dict:
    """Find the duplicate pairs of every split and pair of splits; write their files and the report.

    Args:
        params: The validated params (``splits``, ``models``, ``train.mode``, ``duplicates``, ``dataset.truth``).
        ws: The project (round 1).

    Returns:
        The report written to ``ws.metric("duplicates.json")``.
    """
    cfg = params.duplicates
    out_dir = ws.data / "duplicates"
    splits = _splits(params, ws)
    manifests = {s: read_table(ws.manifest(s), columns=["sample_id", "path", "status", "reason", "content_hash"]) for s in splits}
    exact = exact_duplicates({s: pd.Series(m["content_hash"].to_numpy(), index=m["sample_id"].astype(str)) for s, m in manifests.items()})
    if params.models and manifests:
        feats, missing = pooled_features(params, ws, manifests)
        near = near_duplicates(feats, max_distance=cfg.max_distance, k=cfg.k)
        probe = getattr(params.train, "mode", "scratch") == "probe"
        source = "features files (train.mode probe)" if probe else f"full models' last activations ({cfg.features})"
        if cfg.pixels:
            source += f" and {cfg.pixels}x{cfg.pixels} colour thumbnails, weighted equally"
    else:
        near, missing, source = exact.iloc[:0], {s: {} for s in manifests}, "none (no models)"
    pairs = merge_pairs(exact, near)
    names = pd.Series([pair_name(a, b) for a, b in zip(pairs["split_a"], pairs["split_b"])], dtype=object)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.parquet"):
        if old.stem not in (*split_pairs(splits), "no_features", "removals"):
            old.unlink()
    for name in split_pairs(splits):
        write_table(out_dir / f"{name}.parquet", pairs[(names == name).to_numpy()].reset_index(drop=True),
                    metadata={"max_distance": cfg.max_distance, "k": cfg.k})
    counts = count_pairs(pairs)
    report = {
        "rule": "exact: same content hash; near: cosine distance of the pooled features <= max_distance",
        "features": source,
        "models": list(cfg.models) or list(params.models),
        "max_distance": cfg.max_distance,
        "k": cfg.k,
        "splits": {s: {"n": len(m), "no_features": len(missing.get(s, {}))} for s, m in manifests.items()},
        "pairs": {name: {"exact": counts.get(name, {}).get("exact", 0), "near": counts.get(name, {}).get("near", 0)}
                  for name in split_pairs(splits)},
        "leakage": {name: sum(counts.get(name, {}).values()) for name in LEAKAGE_PAIRS if name in split_pairs(splits)},
    }
    write_table(out_dir / "no_features.parquet",
                pd.DataFrame([(s, i, r) for s in sorted(missing) for i, r in sorted(missing[s].items())],
                             columns=["split", "sample_id", "reason"], dtype=object))
    removals = pd.DataFrame(columns=list(REMOVALS_COLUMNS), dtype=object)
    if cfg.remove:
        drops = [removable(pairs, s, max_distance=cfg.remove_max_distance).assign(split=s) for s in splits]
        removals = pd.concat([removals, *drops], ignore_index=True)[list(removals.columns)]
        report["removals"] = {s: int((removals["split"] == s).sum()) for s in splits}
    write_removals(ws.duplicate_removals, removals, remove=cfg.remove, remove_max_distance=cfg.remove_max_distance)
    truth = _truth(params, ws)
    if truth is not None and "duplicate_of" in truth.columns:
        report["scores"] = score_pairs(pairs, truth_pairs(truth[truth["split"].isin(splits)]))
    write_json(ws.metric("duplicates.json"), report)
    return report
