"""Stage ``windows@split``: every cleanup model's top classes in a grid of windows of each image -> ``ws.windows(split)``.

The evidence for label sets (:mod:`imagenet_clean.cleanup.labelsets`), read by the
clean stage when ``label_sets.enabled``. Off, the stage writes an empty file
marked skipped (DVC finds its output; the clean stage does not read it).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import Params
from ..workspace import Workspace
from .common import project_classes, skip_reason, split_root

WINDOWS_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("classes", pa.list_(pa.int16())),
    ("probs", pa.list_(pa.float32())),
])
"""One row per manifest row: its (M, W, T) classes and probabilities, flattened (shape in the metadata)."""


def run(params: Params, ws: Workspace, split: str) -> dict:
    """Read every usable image of the round's manifest through every model, window by window.

    Returns:
        Counts (``n``, ``ok``, ``error``), the grid (``windows``) and ``skipped``.

    Raises:
        ValueError: ``train.mode: probe`` (its models read features, not images).
    """
    from ..io import read_metadata, read_table, write_table
    from ..leftovers import sweep_outputs
    from ..models.windows import WINDOW_TOPK, window_topk, windows_per_side

    out = ws.windows(split)
    sweep_outputs([out])
    cfg = params.label_sets
    why = skip_reason(params, split) or ("" if cfg.enabled else "label_sets.enabled is false")
    if why:
        write_table(out, WINDOWS_SCHEMA.empty_table(), metadata={"split": split, "skipped": "true", "why": why})
        return {"split": split, "skipped": True, "why": why, "n": 0, "ok": 0, "error": 0}
    if getattr(params.train, "mode", "scratch") == "probe":
        raise ValueError("label_sets.enabled needs models that read images; train.mode probe fits heads on features: "
                         "set label_sets.enabled: false or train.mode: finetune")
    from ..models.factory import load_trained

    manifest_path = ws.round_manifest(split)
    manifest = read_table(manifest_path)
    meta = read_metadata(manifest_path)
    classes = project_classes(meta, params, ws)
    names = list(params.models)
    models = [load_trained(m, params.models[m], num_classes=len(classes), fold=-1, models_dir=ws.models) for m in names]
    ok = (manifest["status"] == "ok").to_numpy()
    root = split_root(meta, params, split, ws)
    cls, prob, reasons = window_topk(models, root, manifest.loc[ok, "path"].tolist(), window=cfg.window, stride=cfg.stride,
                                     batch_size=cfg.batch_size, max_pixels=params.ingest.max_pixels, desc=f"windows {split}")
    w = windows_per_side(cfg.window, cfg.stride) ** 2
    shape = (len(names), w, WINDOW_TOPK)
    n = len(manifest)
    all_cls = np.full((n, *shape), -1, np.int16)
    all_prob = np.zeros((n, *shape), np.float32)
    all_cls[ok], all_prob[ok] = cls, prob
    status = np.where(ok, "ok", "error").astype(object)
    reason = manifest["reason"].fillna("").astype(str).to_numpy(dtype=object).copy()
    usable = np.flatnonzero(ok)
    for i, r in zip(usable.tolist(), reasons):
        if r:
            status[i], reason[i] = "error", r
    table = pd.DataFrame({
        "sample_id": manifest["sample_id"].astype(str).to_numpy(),
        "status": status,
        "reason": np.where(status == "ok", "", reason).astype(object),
        "classes": list(all_cls.reshape(n, -1)),
        "probs": list(all_prob.reshape(n, -1)),
    })
    write_table(out, pa.Table.from_pandas(table, schema=WINDOWS_SCHEMA, preserve_index=False),
                metadata={"split": split, "shape": ",".join(map(str, shape)), "models": json.dumps(names),
                          "window": repr(cfg.window), "stride": repr(cfg.stride)})
    return {"split": split, "skipped": False, "n": n, "ok": int((status == "ok").sum()),
            "error": int((status != "ok").sum()), "windows": w}
