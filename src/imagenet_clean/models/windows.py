"""What each model reads in a grid of windows of an image: the evidence for label sets.

A whole-image softmax spreads its mass over the classes a scene shows and
cannot say which are there (on the embedded default, label sets read from it
have a precision of 0.3-0.5, docs/label-sets.md). Read window by window, a
scene's objects each fill a window, and each is read as confidently as a
single-object image: :func:`window_boxes` lays an ``n x n`` grid of square
windows (side ``window`` times the shorter side, ``n`` from ``stride``, evenly
spaced so that the last one touches the far edge) and :func:`window_topk`
returns every model's top classes in every window, streaming the images in
batches. :mod:`imagenet_clean.cleanup.labelsets` turns them into sets.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..constants import MAX_IMAGE_PIXELS

WINDOW_TOPK = 3
"""Classes kept per model and window (their probabilities are what merged classes sum)."""


def windows_per_side(window: float, stride: float) -> int:
    """Windows along each side of the grid: enough steps of ``stride`` to reach the far edge."""
    if not (0 < window <= 1 and 0 < stride <= 1):
        raise ValueError(f"window {window!r} and stride {stride!r} must be fractions in (0, 1]")
    return 1 if window >= 1 else math.ceil(round((1 - window) / stride, 9)) + 1


def window_boxes(width: int, height: int, *, window: float, stride: float) -> list[tuple[int, int, int, int]]:
    """The grid's ``(left, top, right, bottom)`` boxes in pixels, row by row.

    The side is ``window`` times the shorter image side; along each axis the
    ``windows_per_side`` windows are evenly spaced from one edge to the other,
    so every image gets the same number of windows whatever its size.
    """
    side = max(1, int(round(window * min(width, height))))
    n = windows_per_side(window, stride)
    xs = np.linspace(0, width - side, n).round().astype(int) if n > 1 else np.array([(width - side) // 2])
    ys = np.linspace(0, height - side, n).round().astype(int) if n > 1 else np.array([(height - side) // 2])
    return [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]


class WindowImages:
    """Map-style dataset: item ``i`` is ``(i, (W, C, H, W) crops tensor, reason, (width, height))``; an unreadable
    image gives zeros and size ``(0, 0)``."""

    def __init__(self, root: str | Path, paths: Sequence[str], data_cfg: dict, *, window: float, stride: float,
                 max_pixels: int = MAX_IMAGE_PIXELS):
        from .transforms import eval_transform

        self.root = Path(root)
        self.paths = list(paths)
        self.transform = eval_transform(data_cfg)
        self.shape = tuple(int(v) for v in data_cfg["input_size"])
        self.window, self.stride = window, stride
        self.n = windows_per_side(window, stride) ** 2
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        from ..data.images import load_rgb

        try:
            img = load_rgb(self.root / self.paths[i], max_pixels=self.max_pixels, within=self.root)
            boxes = window_boxes(*img.size, window=self.window, stride=self.stride)
            return i, torch.stack([self.transform(img.crop(b)) for b in boxes]), "", torch.tensor(img.size)
        except Exception as e:  # an image broken since ingestion is a recorded reason, never a crash
            reason = str(e) or type(e).__name__
            if not reason.startswith("unreadable"):
                reason = f"unreadable now: {reason}"
            return i, torch.zeros((self.n, *self.shape)), reason, torch.zeros(2, dtype=torch.int64)


def window_topk(models: Sequence[tuple[object, dict]], root: str | Path, paths: Sequence[str], *, window: float,
                stride: float, batch_size: int = 64, max_pixels: int = MAX_IMAGE_PIXELS,
                desc: str = "windows") -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Every model's top :data:`WINDOW_TOPK` classes in every window of every image.

    Args:
        models: ``(module, data config)`` per model; the models stay in memory together (one
            image batch is decoded once for all of them when their data configs agree).
        root: The images' root folder.
        paths: Image paths relative to ``root``.
        window: Window side as a fraction of the shorter image side.
        stride: Step between windows, same unit.
        batch_size: Images per step (each gives ``windows_per_side ** 2`` crops).
        max_pixels: Decompression-bomb limit.
        desc: Progress label.

    Returns:
        ``(classes int16 (N, M, W, T), probabilities float32 (N, M, W, T), reason per image,
        int32 (N, 2) width and height the windows were laid on)``; an unreadable image (a reason)
        has class -1, probability 0 everywhere and size 0 x 0.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..progress import progress

    n, m, t = len(paths), len(models), WINDOW_TOPK
    w = windows_per_side(window, stride) ** 2
    classes = np.full((n, m, w, t), -1, np.int16)
    probs = np.zeros((n, m, w, t), np.float32)
    reasons = [""] * n
    sizes = np.zeros((n, 2), np.int32)
    groups: dict[str, list[int]] = {}  # models sharing a data config share the decoded crops
    for j, (_, cfg) in enumerate(models):
        groups.setdefault(repr(sorted(cfg.items())), []).append(j)
    with torch.inference_mode():
        for members in groups.values():
            ds = WindowImages(root, paths, models[members[0]][1], window=window, stride=stride, max_pixels=max_pixels)
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
            for idx, x, why, size in progress(loader, desc=desc, unit="batch"):
                rows = idx.numpy()
                sizes[rows] = size.numpy()
                flat = x.flatten(0, 1)
                for j in members:
                    p = models[j][0].eval()(flat).float().softmax(1)
                    top = p.topk(min(t, p.shape[1]), dim=1)
                    k = top.indices.shape[1]
                    classes[rows, j, :, :k] = top.indices.numpy().reshape(len(rows), w, k)
                    probs[rows, j, :, :k] = top.values.numpy().reshape(len(rows), w, k)
                for i, r in zip(rows.tolist(), why):
                    reasons[i] = r
    bad = [i for i, r in enumerate(reasons) if r]
    classes[bad] = -1
    probs[bad] = 0.0
    sizes[bad] = 0
    return classes, probs, reasons, sizes
