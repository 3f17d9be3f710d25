"""Iterated cleaning rounds (the paper's first limitation): the next round's training manifest.

Round 1 is the pipeline's own ``fit`` / ``predict`` / ``clean`` / tables stages.
Each further round ``r`` (2 .. params.yaml ``rounds``; run by :mod:`imagenet_clean.stages.rounds`
as a loop over the same stage functions in ``Workspace(round=r)``):

1. derives its training manifest from round ``r - 1``'s clean training manifest
   (:func:`round_training_manifest`: placeholders left out, cleaned labels,
   image paths still relative to the original training root);
2. cross-validates every cleanup model on it (``data/rounds/<r>/models/<m>/``,
   out-of-fold ``data/rounds/<r>/predictions/train/<m>.parquet``);
3. predicts every evaluated split's *original* manifest with the round's full
   models (``weights: train``) or the pretrained source
   (``data/rounds/<r>/predictions/<split>/``);
4. cleans its training manifest and the original val and V2 with the round's
   ensemble (``data/rounds/<r>/{decisions,clean,changes}/``,
   ``metrics/rounds/<r>/cleanup/``);
5. writes tables 1-3 and the ablations of the round into ``metrics/rounds/<r>/``
   (T stays the original training split, T_c is the round's clean one; the
   switches ``tables.*`` apply as in round 1, and retraining runs are shared
   with round 1 through ``data/cache/retrain``).

A round's clean manifest is relative to the manifest it cleaned: its
``orig_label``, ``action`` and change list say what *this* round changed.
Bounding boxes are carried over only where the round's label is the original
label (or its merge target): a box drawn for another class says nothing about
the new one, so a relabelled sample has no box and cannot be CAM-exempted.

``data/rounds`` is meant to be a persistent DVC output: fold checkpoints carry
fingerprints (:mod:`imagenet_clean.models.crossval`), so a rerun retrains only
what changed; everything else of a round is rewritten, and folders of rounds
beyond ``rounds`` are removed.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .accuracy import PLACEHOLDER


def round_training_manifest(manifest: pd.DataFrame, clean: pd.DataFrame, *, merged_labels: Mapping[int, int] | None = None,
                            source: str = "clean manifest") -> pd.DataFrame:
    """The training manifest of the next round: a clean training manifest's images with their cleaned labels.

    Args:
        manifest: The original training manifest (the data contract's columns).
        clean: The previous round's clean training manifest (``sample_id``, ``label``,
            ``wnid``, ``action``).
        merged_labels: Category merges (source label -> target label); a merged sample
            keeps its bounding boxes, which show the same object.
        source: Name of ``clean`` for error messages.

    Returns:
        The original manifest's rows of the clean manifest's images (placeholders left
        out), in the original manifest's order (so folds stay stable), with ``label``
        and ``wnid`` replaced by the cleaned ones and ``boxes`` emptied where the label
        is neither the original one nor its merge target.

    Raises:
        ValueError: a column is missing, a sample id repeats, or a clean row has no
            original manifest row.
    """
    for df, cols, name in ((manifest, ("sample_id", "label", "wnid"), "training manifest"),
                           (clean, ("sample_id", "label", "wnid", "action"), source)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")
    rows = clean[clean["action"] != PLACEHOLDER]
    ids = pd.Index(rows["sample_id"])
    if ids.has_duplicates:
        raise ValueError(f"{source}: sample_id {ids[ids.duplicated()][0]!r} appears more than once")
    orig = pd.Index(manifest["sample_id"])
    if orig.has_duplicates:
        raise ValueError(f"training manifest: sample_id {orig[orig.duplicated()][0]!r} appears more than once")
    unknown = ids[~ids.isin(orig)]
    if len(unknown):
        raise ValueError(f"{source}: {len(unknown)} sample(s) are not in the original training manifest, e.g. {unknown[0]!r}")
    out = manifest[orig.isin(ids)].reset_index(drop=True).copy()
    new = rows.set_index("sample_id").loc[out["sample_id"]]
    old_label = out["label"].to_numpy(np.int64)
    out["label"] = new["label"].to_numpy(np.int64)
    out["wnid"] = new["wnid"].to_numpy(dtype=object)
    if "boxes" in out.columns:
        merged = merged_labels or {}
        target = np.array([merged.get(int(x), int(x)) for x in old_label], np.int64)
        same = (out["label"].to_numpy() == old_label) | (out["label"].to_numpy() == target)
        out["boxes"] = [b if s else [] for b, s in zip(out["boxes"].tolist(), same)]
    return out


__all__ = ["round_training_manifest"]
