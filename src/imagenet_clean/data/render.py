"""Drawing one embedded image: a scikit-learn digit glyph on a registered background style, with its box.

:func:`render` places a digit (rotated, scaled, coloured against the
background's luma) on a canvas and optionally degrades it; backgrounds are a
registry (:func:`register_background`). :mod:`imagenet_clean.data.generate`
uses it for every split and problem kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Style:
    """How a split's images look: background kinds, digit scale, rotation."""

    backgrounds: tuple[str, ...]
    scale: tuple[float, float]  # digit height as a fraction of the image size
    rotation: float  # max |degrees|
    dark: bool  # darker, more saturated palette (the shifted V2 distribution)


STYLES = {
    "train": Style(("solid", "gradient", "noise"), (30 / 64, 50 / 64), 0.0, False),
    "val": Style(("solid", "gradient", "noise"), (30 / 64, 50 / 64), 0.0, False),
    "v2": Style(("stripes", "checker", "noise"), (26 / 64, 44 / 64), 20.0, True),
}

BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, np.ndarray], np.ndarray]] = {}


def register_background(name: str):
    """Decorator adding a background ``fn(rng, size, colour) -> float32 (size, size, 3)`` in [0, 255]."""

    def deco(fn):
        BACKGROUNDS[name] = fn
        return fn

    return deco


def _second_colour(rng, c):
    return np.clip(c + rng.uniform(-70, 70, 3), 0, 255)


@register_background("solid")
def _solid(rng, s, c):
    return np.broadcast_to(c, (s, s, 3)).astype(np.float32)


@register_background("gradient")
def _gradient(rng, s, c):
    c2 = _second_colour(rng, c)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:s, 0:s] / max(s - 1, 1)
    t = (np.cos(a) * xx + np.sin(a) * yy)
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    return (c[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.float32)


@register_background("noise")
def _noise(rng, s, c):
    c2 = _second_colour(rng, c)
    g = rng.random((6, 6)).astype(np.float32)
    t = np.asarray(Image.fromarray(g).resize((s, s), Image.BICUBIC)).clip(0, 1)
    img = c[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]
    return (img + rng.normal(0, 6, (s, s, 1))).astype(np.float32)


@register_background("stripes")
def _stripes(rng, s, c):
    c2 = _second_colour(rng, c)
    period = rng.uniform(s / 10, s / 4)
    a = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:s, 0:s]
    t = (np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * math.pi / period) > 0).astype(np.float32)
    return (c[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.float32)


@register_background("checker")
def _checker(rng, s, c):
    c2 = _second_colour(rng, c)
    cell = int(rng.integers(max(2, s // 12), max(3, s // 5)))
    yy, xx = np.mgrid[0:s, 0:s]
    t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    return (c[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]).astype(np.float32)


def _luma(c: np.ndarray) -> float:
    return float(c @ np.array([0.299, 0.587, 0.114]))


def _colours(rng: np.random.Generator, dark: bool) -> tuple[np.ndarray, np.ndarray]:
    """A background and a digit colour at least 90 luma levels apart."""
    lo, hi = (0, 170) if dark else (20, 255)
    bg = rng.uniform(lo, hi, 3)
    cand = rng.uniform(0, 255, (32, 3))
    diff = np.abs(cand @ np.array([0.299, 0.587, 0.114]) - _luma(bg))
    good = np.flatnonzero(diff >= 90)
    fg = cand[good[0]] if len(good) else (np.zeros(3) if _luma(bg) > 127 else np.full(3, 255.0))
    return bg, fg


def _glyph(digit: np.ndarray, height: float, rotation: float, rng: np.random.Generator) -> np.ndarray:
    """An alpha mask (float32 in [0, 1]) of an 8x8 digit upscaled to ``height`` pixels tall."""
    ink = digit > 1.5
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32) / 16.0
    crop = np.pad(crop, 1)
    ch, cw = crop.shape
    h = max(3, int(round(height * ch / (ch - 2))))
    w = max(3, int(round(h * cw / ch * rng.uniform(0.85, 1.15))))
    a = Image.fromarray(crop).resize((w, h), Image.BICUBIC)
    if rotation:
        a = a.rotate(rng.uniform(-rotation, rotation), resample=Image.BILINEAR, expand=True)
    a = np.asarray(a)
    return np.clip((a - 0.25) / 0.4, 0.0, 1.0)


def _place(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray, x: int, y: int) -> list[float]:
    """Composite ``alpha`` in ``colour`` at (x, y); return the ink box [xmin, ymin, xmax, ymax]."""
    h, w = alpha.shape
    region = canvas[y : y + h, x : x + w]
    a = alpha[..., None]
    region[...] = region * (1 - a) + colour[None, None] * a
    ink = alpha > 0.3
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return [float(x + cols[0]), float(y + rows[0]), float(x + cols[-1] + 1), float(y + rows[-1] + 1)]


def _fit(alpha: np.ndarray, s: int) -> np.ndarray:
    """Crop ``alpha`` to its ink so it fits an ``s`` x ``s`` canvas (rotated glyphs grow)."""
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    alpha = alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return alpha[:s, :s]


def _degrade(img: np.ndarray, rng: np.random.Generator, glyph: float) -> np.ndarray:
    """A bad-quality image: the labelled object can no longer be made out.

    One of three degradations, each sized to the digit (``glyph``: its height
    in pixels), so that it survives the resize to a model's input and per-image
    normalisation, as a bad ImageNet photograph's does: an out-of-focus blur
    that leaves a blob, a dark exposure (contrast cut to a few percent) under
    heavy sensor noise, or a coarse pixelation (a thumbnail blown up).
    """
    kind = rng.integers(3)
    if kind == 0:
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.45) * glyph)), dtype=np.float32)
    if kind == 1:  # brightness, contrast, then noise: drawn in this order
        mean = img.mean(axis=(0, 1), keepdims=True)
        dark = mean * rng.uniform(0.3, 0.6)
        return dark + (img - mean) * rng.uniform(0.04, 0.08) + rng.normal(0, rng.uniform(60, 90), img.shape)
    s = img.shape[0]
    cell = max(2, int(round(rng.uniform(0.4, 0.55) * glyph)))
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((max(1, s // cell),) * 2, Image.BOX)
    return np.asarray(small.resize((s, s), Image.NEAREST), dtype=np.float32)


def render(
    digits: list[np.ndarray],
    *,
    size: int,
    style: Style,
    rng: np.random.Generator,
    problem: str = "none",
) -> tuple[np.ndarray, list[float]]:
    """Render one image: ``digits[0]`` is the labelled digit, any others are distractors.

    Args:
        digits: 8x8 digit images (values 0-16); more than one for ``multi_object``.
        size: Canvas side in pixels.
        style: The split's :class:`Style`.
        rng: The sample's own generator.
        problem: ``none``, ``minuscule``, ``bad_quality`` or ``multi_object`` change the rendering.

    Returns:
        ``(uint8 (size, size, 3) image, box of digits[0])``.
    """
    bg, fg = _colours(rng, style.dark)
    canvas = BACKGROUNDS[style.backgrounds[rng.integers(len(style.backgrounds))]](rng, size, bg).copy()
    if problem == "multi_object":
        heights = rng.uniform(0.22, 0.34, len(digits)) * size
    elif problem == "minuscule":
        heights = [rng.uniform(5, 9.99) * size / 64]
    else:
        heights = [rng.uniform(*style.scale) * size]
    taken: list[tuple[int, int, int, int]] = []
    box = None
    for k, (d, hgt) in enumerate(zip(digits, heights)):
        alpha = _fit(_glyph(d, hgt, style.rotation, rng), size)
        h, w = alpha.shape
        for _ in range(50):
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if all(x + w <= a or a + c <= x or y + h <= b or b + d_ <= y for a, b, c, d_ in taken):
                break
        taken.append((x, y, w, h))
        colour = fg if k == 0 else _colours(rng, style.dark)[1]
        b = _place(canvas, alpha, colour, x, y)
        box = box or b
    if problem == "bad_quality":
        canvas = _degrade(canvas, rng, heights[0])
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), box
