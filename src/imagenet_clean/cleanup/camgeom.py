"""Pixel geometry of timm's eval transform, and the box explainability score.

A CAM heatmap lives in the model's *input frame* (the resized and centre-cropped
tensor); a bounding box lives in the *original frame* (the image file's pixels).
This module maps between the two exactly as timm's ``transforms_imagenet_eval``
does (``crop_mode`` ``center``, ``squash`` or ``border``; any ``crop_pct``;
square or non-square ``input_size``) and scores a heatmap against boxes in the
original frame.

Conventions:
    * Continuous coordinates: pixel ``i`` spans ``[i, i + 1)``; a resize by a
      factor ``s`` maps ``x`` to ``x * s`` (pixel centres map onto pixel centres,
      as PIL and torchvision resize).
    * A box ``[xmin, ymin, xmax, ymax]`` covers the original pixels whose centre
      lies in ``[xmin, xmax) x [ymin, ymax)`` (for integer boxes: columns ``xmin ..
      xmax - 1``), clipped to the image.
    * Each original box pixel takes the heat of the input-frame pixel its centre
      falls on (nearest neighbour). Box pixels whose centre falls outside the crop
      (cut away by the centre crop) count as **not hot**: the model never saw them,
      so they cannot explain its prediction. Padding (``border`` mode) is never a
      box pixel, since boxes are clipped to the image first.

Pure numpy; no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

DEFAULT_CROP_PCT = 0.875  # timm.data.constants.DEFAULT_CROP_PCT


@dataclass(frozen=True)
class EvalGeometry:
    """Where an original image lands in the model input after resize and crop.

    Attributes:
        width: Original image width in pixels.
        height: Original image height in pixels.
        resized_w: Width after the resize step.
        resized_h: Height after the resize step.
        left: Crop offset in the resized frame (negative: padding on the left).
        top: Crop offset in the resized frame (negative: padding on top).
        input_w: Model input width (the crop).
        input_h: Model input height (the crop).
    """

    width: int
    height: int
    resized_w: int
    resized_h: int
    left: int
    top: int
    input_w: int
    input_h: int

    @property
    def scale_x(self) -> float:
        """Horizontal resize factor, original -> resized."""
        return self.resized_w / self.width

    @property
    def scale_y(self) -> float:
        """Vertical resize factor, original -> resized."""
        return self.resized_h / self.height


def _crop_offset(size: int, crop: int) -> int:
    # torchvision center_crop / timm center_crop_or_pad: pad (crop - size) // 2 first when too small
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def _resize_shorter(width: int, height: int, short: int) -> tuple[int, int]:
    # torchvision.transforms.Resize(int): shorter edge -> short, longer edge truncated
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _resize_keep_ratio(width: int, height: int, target_h: int, target_w: int, longest: float) -> tuple[int, int]:
    # timm.data.transforms.ResizeKeepRatio.get_params without random scale/aspect
    ratio_h, ratio_w = height / target_h, width / target_w
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(width / ratio), round(height / ratio)


def _resize_center(width, height, scale_h, scale_w):
    if scale_h == scale_w:
        return _resize_shorter(width, height, scale_h)
    return _resize_keep_ratio(width, height, scale_h, scale_w, 0.0)


# crop_mode -> (width, height, scale_h, scale_w) -> resized (w, h); timm's transforms_imagenet_eval
RESIZE_MODES = {
    "center": _resize_center,
    "squash": lambda width, height, scale_h, scale_w: (scale_w, scale_h),
    "border": lambda width, height, scale_h, scale_w: _resize_keep_ratio(width, height, scale_h, scale_w, 1.0),
}


def eval_geometry(data_cfg: Mapping, width: int, height: int) -> EvalGeometry:
    """The geometry of timm's eval transform for one image size.

    Args:
        data_cfg: timm data config (``resolve_data_config``): ``input_size``
            ``(C, H, W)``, ``crop_pct`` (default 0.875), ``crop_mode`` (default
            ``center``).
        width: Original image width.
        height: Original image height.

    Raises:
        ValueError: non-positive sizes, an unknown ``crop_mode``, a bad
            ``crop_pct`` or a ``crop_border_pixels`` (unsupported).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got width={width} height={height}")
    input_size = data_cfg.get("input_size")
    if input_size is None or len(input_size) not in (2, 3):
        raise ValueError(f"data_cfg input_size must be (C, H, W), got {input_size!r}")
    in_h, in_w = int(input_size[-2]), int(input_size[-1])
    crop_pct = data_cfg.get("crop_pct") or DEFAULT_CROP_PCT
    if not 0 < crop_pct <= 4:
        raise ValueError(f"data_cfg crop_pct must be in (0, 4], got {crop_pct!r}")
    mode = data_cfg.get("crop_mode") or "center"
    if mode not in RESIZE_MODES:
        raise ValueError(f"data_cfg crop_mode {mode!r} is not one of {sorted(RESIZE_MODES)}")
    if data_cfg.get("crop_border_pixels"):
        raise ValueError(f"data_cfg crop_border_pixels={data_cfg['crop_border_pixels']!r} is not supported")
    scale_h, scale_w = math.floor(in_h / crop_pct), math.floor(in_w / crop_pct)
    rw, rh = RESIZE_MODES[mode](width, height, scale_h, scale_w)
    return EvalGeometry(width=int(width), height=int(height), resized_w=int(rw), resized_h=int(rh),
                        left=_crop_offset(rw, in_w), top=_crop_offset(rh, in_h), input_w=in_w, input_h=in_h)


def as_geometry(geometry: EvalGeometry | Mapping) -> EvalGeometry:
    """Accept an :class:`EvalGeometry` or a plain dict of it (e.g. read back from JSON).

    The dict has ``width``, ``height``, ``resize`` ``(rh, rw)``, ``crop`` ``(top,
    left)`` and ``input_size`` ``(th, tw)``.
    """
    if isinstance(geometry, EvalGeometry):
        return geometry
    try:
        (rh, rw), (top, left), (th, tw) = geometry["resize"], geometry["crop"], geometry["input_size"]
        return EvalGeometry(width=int(geometry["width"]), height=int(geometry["height"]), resized_w=int(rw),
                            resized_h=int(rh), left=int(left), top=int(top), input_w=int(tw), input_h=int(th))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not an eval geometry: {geometry!r} ({e})") from None


def original_to_input(xy: np.ndarray, geometry: EvalGeometry | Mapping) -> np.ndarray:
    """Map continuous original-frame points ``(..., 2)`` (x, y) into the input frame."""
    xy = np.asarray(xy, dtype=np.float64)
    g = as_geometry(geometry)
    return np.stack([xy[..., 0] * g.scale_x - g.left, xy[..., 1] * g.scale_y - g.top], axis=-1)


def input_to_original(uv: np.ndarray, geometry: EvalGeometry | Mapping) -> np.ndarray:
    """Map continuous input-frame points ``(..., 2)`` (u, v) back into the original frame."""
    uv = np.asarray(uv, dtype=np.float64)
    g = as_geometry(geometry)
    return np.stack([(uv[..., 0] + g.left) / g.scale_x, (uv[..., 1] + g.top) / g.scale_y], axis=-1)


def boxes_to_input(boxes: Sequence[Sequence[float]], geometry: EvalGeometry | Mapping) -> np.ndarray:
    """Boxes ``(N, 4)`` in original pixels -> the same boxes in the input frame (unclipped)."""
    b = _as_boxes(boxes)
    lo = original_to_input(b[:, :2], geometry)
    hi = original_to_input(b[:, 2:], geometry)
    return np.concatenate([lo, hi], axis=1)


def _as_boxes(boxes) -> np.ndarray:
    b = np.asarray(boxes if len(boxes) else np.zeros((0, 4)), dtype=np.float64)
    if b.ndim == 1:
        b = b[None, :]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be [xmin, ymin, xmax, ymax] or a list of them, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"boxes contain non-finite values: {b.tolist()}")
    return b


def _source_index(n: int, scale: float, offset: int, size: int) -> np.ndarray:
    # input-frame index hit by each original pixel centre, -1 where outside the crop
    j = np.floor((np.arange(n) + 0.5) * scale - offset).astype(np.int64)
    return np.where((j >= 0) & (j < size), j, -1)


def box_mask(boxes: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the union of the boxes' pixels, clipped to the image."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in _as_boxes(boxes):
        c0, c1 = max(0, math.ceil(x0 - 0.5)), min(width, math.ceil(x1 - 0.5))
        r0, r1 = max(0, math.ceil(y0 - 0.5)), min(height, math.ceil(y1 - 0.5))
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def heatmap_to_original(heatmap: np.ndarray, geometry: EvalGeometry | Mapping, *, fill: float = 0.0) -> np.ndarray:
    """Resample an input-frame heatmap onto the original pixel grid (nearest); ``fill`` outside the crop."""
    g = as_geometry(geometry)
    _check_heatmap(heatmap, g)
    ix = _source_index(g.width, g.scale_x, g.left, g.input_w)
    iy = _source_index(g.height, g.scale_y, g.top, g.input_h)
    out = np.asarray(heatmap)[np.maximum(iy, 0)][:, np.maximum(ix, 0)].astype(np.float32)
    out[iy < 0, :] = fill
    out[:, ix < 0] = fill
    return out


def _check_heatmap(heatmap, g: EvalGeometry) -> None:
    if np.ndim(heatmap) != 2 or np.shape(heatmap) != (g.input_h, g.input_w):
        raise ValueError(f"heatmap shape {np.shape(heatmap)} is not the input frame ({g.input_h}, {g.input_w})")


def box_heat_score(heatmap: np.ndarray, boxes: Sequence[Sequence[float]], geometry: EvalGeometry | Mapping, *,
                   heat: float = 0.75) -> float:
    """Explainability score: the fraction of box pixels whose heat is ``>= heat``.

    Args:
        heatmap: ``(input_h, input_w)`` heatmap in [0, 1], in the model's input frame.
        boxes: One box or a list of boxes ``[xmin, ymin, xmax, ymax]`` in original
            pixels; their union is scored, clipped to the image.
        geometry: The image's :func:`eval_geometry` (or the dict of
            plain dict accepted by :func:`as_geometry`).
        heat: Heat threshold.

    Returns:
        The score in [0, 1]; 0.0 when no box pixel lies inside the image. Box
        pixels cut away by the centre crop count as not hot.
    """
    g = as_geometry(geometry)
    _check_heatmap(heatmap, g)
    b = _as_boxes(boxes)
    if not len(b):
        return 0.0
    # work on the union's bounding region only: cost is the box area, not the image area
    c0 = max(0, math.floor(b[:, 0].min()))
    r0 = max(0, math.floor(b[:, 1].min()))
    c1 = min(g.width, math.ceil(b[:, 2].max()))
    r1 = min(g.height, math.ceil(b[:, 3].max()))
    if c1 <= c0 or r1 <= r0:
        return 0.0
    mask = box_mask(b - [c0, r0, c0, r0], c1 - c0, r1 - r0)
    n = int(mask.sum())
    if n == 0:
        return 0.0
    ix = _source_index(g.width, g.scale_x, g.left, g.input_w)[c0:c1]
    iy = _source_index(g.height, g.scale_y, g.top, g.input_h)[r0:r1]
    hot = np.asarray(heatmap) >= heat
    sampled = hot[np.maximum(iy, 0)][:, np.maximum(ix, 0)]
    sampled &= (iy >= 0)[:, None] & (ix >= 0)[None, :]
    return float((sampled & mask).sum() / n)
