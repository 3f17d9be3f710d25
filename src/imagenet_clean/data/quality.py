"""Image-quality measures per image, cleanvision-style (stage ``quality@<split>``).

Each pixel measure is a registered function of the image's luma (float32, 0-255)
and RGB pixels (:func:`register_measure`); ``object_size`` and ``aspect_ratio``
come from the manifest's boxes and header size. The measures and their ranges
(``constants.QUALITY_RANGES``):

* ``brightness``: mean luma in [0, 1] (low: dark, high: overexposed);
* ``contrast``: standard deviation of the luma in [0, 0.5] (low: washed out,
  or an object too small to vary the image);
* ``blur``: variance of the 4-neighbour Laplacian of the luma (low: blurry);
* ``entropy``: Shannon entropy of the 256-level luma histogram, bits (low: little information);
* ``noise``: Immerkaer's fast noise estimate (J. Immerkaer, "Fast Noise
  Variance Estimation", CVIU 1996): the mean absolute response to the
  difference of two Laplacians, times sqrt(pi/2)/6 (high: noisy; near 0: no
  grain at all, e.g. a thumbnail blown up or a posterized image);
* ``object_size``: the largest box's area over the image's (none without boxes);
* ``aspect_ratio``: width / height;
* ``grayscale``: 1.0 when the colour channels agree (``constants.QUALITY_GRAY_CHROMA``), else 0.0.

Images are read at a comparable scale (longer side at most
``constants.QUALITY_SIDE``) through :func:`~imagenet_clean.data.images.load_rgb`
(safe decoding, ``within=root``). An image the manifest lists as unreadable, or
that fails to decode, gets no figures (NaN), status ``error`` and the reason.
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from ..constants import QUALITY_GRAY_CHROMA, QUALITY_RANGES, QUALITY_SIDE
from .images import load_rgb

PixelMeasure = Callable[[np.ndarray, np.ndarray], float]
PIXEL_MEASURES: dict[str, PixelMeasure] = {}
"""name -> ``fn(luma float32 (H, W), rgb uint8 (H, W, 3)) -> float``, in column order."""
BOX_MEASURES = ("object_size", "aspect_ratio")
"""Measures read from the manifest (boxes, header size), not from the pixels."""

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Images per task sent to a worker process, and the fewest images worth a pool (as ingest's).
_CHUNK = 256
_MIN_PARALLEL = 2048


def register_measure(name: str):
    """Decorator adding a pixel measure ``fn(luma, rgb) -> float`` under ``name`` (a key of ``QUALITY_RANGES``)."""
    if name not in QUALITY_RANGES:
        raise ValueError(f"quality measure {name!r} has no range in constants.QUALITY_RANGES")

    def deco(fn: PixelMeasure) -> PixelMeasure:
        PIXEL_MEASURES[name] = fn
        return fn

    return deco


@register_measure("brightness")
def brightness(luma: np.ndarray, rgb: np.ndarray) -> float:
    return float(luma.mean(dtype=np.float64) / 255.0)


@register_measure("contrast")
def contrast(luma: np.ndarray, rgb: np.ndarray) -> float:
    return float(luma.std(dtype=np.float64) / 255.0)


@register_measure("blur")
def blur(luma: np.ndarray, rgb: np.ndarray) -> float:
    if min(luma.shape) < 3:
        return 0.0
    c = luma[1:-1, 1:-1]
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * c
    return float(lap.var(dtype=np.float64))


@register_measure("entropy")
def entropy(luma: np.ndarray, rgb: np.ndarray) -> float:
    levels = (luma + 0.5).astype(np.uint8)  # luma of uint8 RGB lies in [0, 255]
    p = np.bincount(levels.ravel(), minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a flat image gives 0.0, not -0.0


@register_measure("noise")
def noise(luma: np.ndarray, rgb: np.ndarray) -> float:
    if min(luma.shape) < 3:
        return 0.0
    y = luma
    k = (y[:-2, :-2] + y[:-2, 2:] + y[2:, :-2] + y[2:, 2:]
         - 2.0 * (y[:-2, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] + y[2:, 1:-1]) + 4.0 * y[1:-1, 1:-1])
    return float(math.sqrt(math.pi / 2) * np.abs(k).mean(dtype=np.float64) / 6.0)


@register_measure("grayscale")
def grayscale(luma: np.ndarray, rgb: np.ndarray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # channel by channel: a reduction over the last axis is 20x slower
    chroma = np.maximum(np.maximum(r, g), b).astype(np.int16) - np.minimum(np.minimum(r, g), b)
    return 1.0 if float(chroma.mean(dtype=np.float64)) < QUALITY_GRAY_CHROMA else 0.0


MEASURES = tuple(PIXEL_MEASURES) + BOX_MEASURES
"""Every measure, in the column order of the quality file."""

QUALITY_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("status", pa.string()), ("reason", pa.string())]
    + [(m, pa.float64()) for m in MEASURES]
)
"""Columns of ``data/quality/<split>.parquet``: one row per manifest row, in its order (docs/architecture.md)."""


def pixel_measures(img) -> dict[str, float]:
    """Every pixel measure of one RGB image (a ``PIL.Image`` or a uint8 (H, W, 3) array), at ``QUALITY_SIDE``."""
    from PIL import Image

    if isinstance(img, np.ndarray):
        img = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    img = img.convert("RGB")
    if max(img.size) > QUALITY_SIDE:
        scale = QUALITY_SIDE / max(img.size)
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BOX)
    rgb = np.asarray(img, dtype=np.uint8)
    luma = rgb.astype(np.float32) @ _LUMA
    return {name: fn(luma, rgb) for name, fn in PIXEL_MEASURES.items()}


def box_measures(boxes, width: int, height: int) -> dict[str, float]:
    """``object_size`` (largest box area / image area, clipped to the image; NaN without boxes) and ``aspect_ratio``."""
    if width <= 0 or height <= 0:
        return {"object_size": math.nan, "aspect_ratio": math.nan}
    areas = [max(0.0, min(b[2], width) - max(b[0], 0.0)) * max(0.0, min(b[3], height) - max(b[1], 0.0))
             for b in (boxes if boxes is not None else [])]
    size = max(areas) / (width * height) if areas else math.nan
    return {"object_size": float(size), "aspect_ratio": float(width / height)}


def _measure_chunk(root: str, rows: list[tuple[str, int, int, list]], max_pixels: int) -> list[tuple[str, dict]]:
    out = []
    for rel, w, h, boxes in rows:
        try:
            img = load_rgb(Path(root) / rel, max_pixels=max_pixels, draft_size=(QUALITY_SIDE, QUALITY_SIDE), within=root)
            figures = pixel_measures(img)
        except ValueError as e:
            out.append((str(e), {}))
            continue
        out.append(("", {**figures, **box_measures(boxes, w, h)}))
    return out


def measure_split(manifest: pd.DataFrame, root: str | Path, *, max_pixels: int, workers: int = 1) -> pd.DataFrame:
    """The quality measures of every manifest row, in manifest order (:data:`QUALITY_SCHEMA`).

    Images are read chunk by chunk (in ``workers`` processes for large splits);
    only their figures are kept, so memory grows with the row count, not the pixels.
    A row the manifest marks as an error keeps its reason; an image that fails
    to decode gets ``cannot decode ...``; both have no figures (NaN).
    """
    from ..progress import progress

    root = str(root)
    ok = (manifest["status"].to_numpy() == "ok") if len(manifest) else np.zeros(0, bool)
    idx = np.flatnonzero(ok)
    boxes = manifest["boxes"].to_numpy() if "boxes" in manifest else np.full(len(manifest), None, object)
    rows = [(manifest["path"].iat[i], int(manifest["width"].iat[i]), int(manifest["height"].iat[i]),
             [list(b) for b in boxes[i]] if boxes[i] is not None else []) for i in idx]
    chunks = [rows[i: i + _CHUNK] for i in range(0, len(rows), _CHUNK)]
    results: list[tuple[str, dict]] = []
    with progress(total=len(rows), desc="quality", unit="img") as bar:
        if workers <= 1 or len(rows) < _MIN_PARALLEL:
            for c in chunks:
                results += _measure_chunk(root, c, max_pixels)
                bar.update(len(c))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                for c, res in zip(chunks, pool.map(_measure_chunk, [root] * len(chunks), chunks, [max_pixels] * len(chunks))):
                    results += res
                    bar.update(len(c))
    n = len(manifest)
    status = np.where(ok, "ok", "error").astype(object)
    reason = np.where(ok, "", manifest["reason"].fillna("").astype(str).to_numpy() if n else []).astype(object)
    cols = {m: np.full(n, np.nan) for m in MEASURES}
    for i, (why, figures) in zip(idx, results):
        if why:
            status[i], reason[i] = "error", why
            continue
        for m, v in figures.items():
            cols[m][i] = v
    return pd.DataFrame({"sample_id": manifest["sample_id"].to_numpy(dtype=object) if n else [], "status": status,
                         "reason": reason, **cols})


def quality_table(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table of :data:`QUALITY_SCHEMA`."""
    return pa.Table.from_pandas(df[QUALITY_SCHEMA.names], schema=QUALITY_SCHEMA, preserve_index=False)
