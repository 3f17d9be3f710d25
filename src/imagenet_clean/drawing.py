"""Pictures shared by the review app and ``imagenet-clean explain``: an image scaled for viewing, its boxes, a CAM overlay.

Small images are enlarged with nearest-neighbour sampling (pixels stay visible)
to at least :data:`MIN_SIDE` on the shorter side; large ones are shrunk to at
most :data:`MAX_SIDE` on the longer side.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

MIN_SIDE = 256
MAX_SIDE = 768
BOX_COLOUR = (255, 40, 40)


def scaled_for_viewing(img: Image.Image) -> tuple[Image.Image, float]:
    """``(image, scale)``: ``img`` resized for viewing (at least MIN_SIDE short side, at most MAX_SIDE long side)."""
    w, h = img.size
    s = max(1.0, MIN_SIDE / max(1, min(w, h)))
    s = min(s, MAX_SIDE / max(w, h)) if max(w, h) * s > MAX_SIDE else s
    if s == 1.0:
        return img, 1.0
    resample = Image.NEAREST if s > 1 else Image.BILINEAR
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), resample), s


def draw_boxes(img: Image.Image, boxes: Sequence[Sequence[float]], scale: float) -> None:
    """Draw ``boxes`` (xmin, ymin, xmax, ymax in original pixels) times ``scale`` onto ``img``, in place."""
    d = ImageDraw.Draw(img)
    width = max(2, round(min(img.size) / 128))
    for b in boxes or []:
        x0, y0, x1, y1 = (float(v) * scale for v in b)
        d.rectangle([x0, y0, x1, y1], outline=BOX_COLOUR, width=width)


def jet(x: np.ndarray) -> np.ndarray:
    """The classic "jet" colour map: values in [0, 1] -> RGB in [0, 1] (blue, cyan, yellow, red)."""
    x = np.clip(np.asarray(x, np.float32), 0, 1)[..., None]
    return np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0], np.float32)), 0, 1)


def overlay(img: Image.Image, heat: np.ndarray, boxes: Sequence[Sequence[float]], *, alpha: float = 0.5) -> Image.Image:
    """``heat`` (H x W in [0, 1], the image's size) as a jet colour map over ``img``, with the boxes."""
    rgb = (jet(heat) * 255).astype(np.uint8)
    mixed = Image.blend(img.convert("RGB"), Image.fromarray(rgb).resize(img.size), alpha)
    out, s = scaled_for_viewing(mixed)
    draw_boxes(out, boxes, s)
    return out
