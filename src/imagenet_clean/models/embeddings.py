"""Penultimate activations (pooled features) of a model for the rows of a manifest, in streaming batches.

timm's ``forward_features`` then ``forward_head(pre_logits=True)``: the vector the
classifier reads. Images are decoded and transformed as for prediction
(:class:`~imagenet_clean.models.predict.ManifestImages`); an image that cannot be
read gets no features and its reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import MAX_IMAGE_PIXELS

FEATURE_KINDS = {
    "pooled": lambda model, x: model.forward_head(model.forward_features(x), pre_logits=True),
    "map": lambda model, x: model.forward_features(x),
}
"""What a sample's vector is: ``pooled`` the pre-logits vector (globally pooled), ``map`` the last
feature map unpooled (channels x height x width, flattened): it keeps where things are, so two
different pictures of one class differ more (docs/duplicates.md has the measurements)."""


def penultimate_features(model, data_cfg: dict, root: str | Path, paths: Sequence[str], *, batch_size: int = 128,
                         max_pixels: int = MAX_IMAGE_PIXELS, kind: str = "pooled", desc: str = "features") -> tuple[np.ndarray, list[str]]:
    """The pre-logits features of every image under ``root``.

    Args:
        model: A timm model (``forward_features``, ``forward_head``).
        data_cfg: Its data config (input size, mean, std, crop).
        root: The images' root folder.
        paths: Image paths relative to ``root``.
        batch_size: Images per forward pass; only one batch is in memory at a time.
        max_pixels: Decompression-bomb limit.
        kind: A key of :data:`FEATURE_KINDS`.
        desc: Progress label.

    Returns:
        ``(float32 (n, d) features, reason per row)``; a row with a reason (unreadable) has zeros.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..progress import progress
    from .predict import ManifestImages

    ds = ManifestImages(root, list(paths), data_cfg, max_pixels=max_pixels)
    reasons = [""] * len(ds)
    out: np.ndarray | None = None
    model = model.eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    with torch.inference_mode():
        for idx, x, why in progress(loader, desc=desc, unit="batch"):
            f = FEATURE_KINDS[kind](model, x).flatten(1).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(ds), f.shape[1]), np.float32)
            rows = idx.numpy()
            out[rows] = f
            for i, r in zip(rows.tolist(), why):
                reasons[i] = r
    if out is None:
        out = np.zeros((0, 0), np.float32)
    bad = [i for i, r in enumerate(reasons) if r]
    out[bad] = 0.0
    return out, reasons
