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


PIXEL_DATA_CFG = {"interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0, "crop_mode": "center"}
"""How :func:`pixel_features` decodes an image (no model involved): resized (shorter side, centre crop) to twice the side."""


def pixel_features(root: str | Path, paths: Sequence[str], *, side: int = 8, batch_size: int = 128,
                   max_pixels: int = MAX_IMAGE_PIXELS, desc: str = "pixels") -> tuple[np.ndarray, list[str]]:
    """A small colour thumbnail of every image under ``root``: what the picture itself looks like.

    Each image is resized to ``2 side`` pixels square (shorter side, centre crop),
    average-pooled 2 x 2 to ``side x side`` per RGB channel, flattened and
    centred on its own mean (a uniform brightness shift, as a recolouring makes,
    does not count). Classifier features are trained to ignore colour and
    background, so two different pictures of one class in one place come close;
    the thumbnail keeps them apart (docs/duplicates.md has the measurements).

    Returns:
        ``(float32 (n, 3 side^2) features, reason per row)``; a row with a reason (unreadable) has zeros.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from ..progress import progress
    from .predict import ManifestImages

    if side < 1:
        raise ValueError(f"side {side!r}: a thumbnail needs at least 1 pixel")
    ds = ManifestImages(root, list(paths), {**PIXEL_DATA_CFG, "input_size": (3, 2 * side, 2 * side)}, max_pixels=max_pixels)
    out = np.zeros((len(ds), 3 * side * side), np.float32)
    reasons = [""] * len(ds)
    with torch.inference_mode():
        for idx, x, why in progress(DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0), desc=desc, unit="batch"):
            f = F.avg_pool2d(x.float(), 2).flatten(1)
            f = f - f.mean(dim=1, keepdim=True)
            rows = idx.numpy()
            out[rows] = f.numpy()
            for i, r in zip(rows.tolist(), why):
                reasons[i] = r
    out[[i for i, r in enumerate(reasons) if r]] = 0.0
    return out, reasons
