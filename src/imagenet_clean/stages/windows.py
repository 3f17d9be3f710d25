"""Stage ``windows@split``: every cleanup model's top classes in a grid of windows of each image -> ``ws.windows(split)``.

The evidence for label sets (:mod:`imagenet_clean.cleanup.labelsets`), read by the
clean stage when ``label_sets.enabled``. Off, the stage writes an empty file
marked skipped (DVC finds its output; the clean stage does not read it).

Only images the models are unsure of as a whole (their mean top-class probability
in the prediction files below ``label_sets.max_confidence``, the clean stage's
gate) are read window by window: the others cannot get a set. On the embedded
default that is about a fifth of the images, and the stage costs about a fifth.
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
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("classes", pa.list_(pa.int16())),
    ("probs", pa.list_(pa.float32())),
])
"""One row per manifest row: the size the windows were laid on (0 x 0 where none was read) and its (M, W, T)
classes and probabilities, flattened (shape in the metadata)."""
GATED = "gated"
"""``status`` of a row not read: the models read its whole image with confidence, so it cannot get a set."""
GATED_WHY = "whole image read with confidence (label_sets.max_confidence)"


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
    readable = (manifest["status"] == "ok").to_numpy()
    unsure = whole_image_unsure(params, ws, split, manifest, classes, names)
    ok = readable & unsure  # only the images whose whole image the models are unsure of can get a set: only they are read
    models = [load_trained(m, params.models[m], num_classes=len(classes), fold=-1, models_dir=ws.models) for m in names]
    root = split_root(meta, params, split, ws)
    cls, prob, reasons, sizes = window_topk(models, root, manifest.loc[ok, "path"].tolist(), window=cfg.window,
                                            stride=cfg.stride, batch_size=cfg.batch_size,
                                            max_pixels=params.ingest.max_pixels, desc=f"windows {split}")
    w = windows_per_side(cfg.window, cfg.stride) ** 2
    shape = (len(names), w, WINDOW_TOPK)
    n = len(manifest)
    all_cls = np.full((n, *shape), -1, np.int16)
    all_prob = np.zeros((n, *shape), np.float32)
    all_size = np.zeros((n, 2), np.int32)
    all_cls[ok], all_prob[ok], all_size[ok] = cls, prob, sizes
    status = np.where(ok, "ok", np.where(readable, GATED, "error")).astype(object)
    reason = manifest["reason"].fillna("").astype(str).to_numpy(dtype=object).copy()
    reason[readable & ~unsure] = GATED_WHY
    usable = np.flatnonzero(ok)
    for i, r in zip(usable.tolist(), reasons):
        if r:
            status[i], reason[i] = "error", r
    table = pd.DataFrame({
        "sample_id": manifest["sample_id"].astype(str).to_numpy(),
        "status": status,
        "reason": np.where(status == "ok", "", reason).astype(object),  # gated rows say why they were not read
        "width": all_size[:, 0],
        "height": all_size[:, 1],
        "classes": list(all_cls.reshape(n, -1)),
        "probs": list(all_prob.reshape(n, -1)),
    })
    write_table(out, pa.Table.from_pandas(table, schema=WINDOWS_SCHEMA, preserve_index=False),
                metadata={"split": split, "shape": ",".join(map(str, shape)), "models": json.dumps(names),
                          "window": repr(cfg.window), "stride": repr(cfg.stride)})
    return {"split": split, "skipped": False, "n": n, "ok": int((status == "ok").sum()), "gated": int((status == GATED).sum()),
            "error": int((status == "error").sum()), "windows": w}


def whole_image_unsure(params: Params, ws: Workspace, split: str, manifest: pd.DataFrame, classes, names: list[str]) -> np.ndarray:
    """Per manifest row: the models' mean top-class probability in their prediction files (merged classes summed)
    is below ``label_sets.max_confidence`` -- the clean stage's gate (:func:`imagenet_clean.cleanup.labelsets.ambiguous`).

    A row without a usable prediction in some model is not unsure (the clean stage does not decide it either).
    """
    from ..cleanup.confident import top_probability
    from ..cleanup.labelsets import ambiguous
    from ..cleanup.merges import load_merges, merge_index
    from ..cleanup.streamread import read_model_rows, usable_rows
    from .common import merge_spec

    merges = load_merges(merge_spec(params, ws), classes)
    lut = merge_index(merges, classes) if merges else None
    positions, usable = usable_rows({m: ws.predictions(split, m) for m in names}, pd.Index(manifest["sample_id"]),
                                    (manifest["status"] == "ok").to_numpy())
    rows = np.flatnonzero(usable)
    top = np.stack([top_probability(read_model_rows(ws.predictions(split, m), positions[m][rows]).probs, merge_lut=lut)
                    for m in names]) if len(rows) else np.zeros((len(names), 0), np.float32)
    out = np.zeros(len(manifest), bool)
    out[rows] = ambiguous(top, max_confidence=params.label_sets.max_confidence)
    return out
