"""Evaluation preprocessing from a data config, and its geometry (model input <-> original pixels).

:func:`eval_transform` is timm's ``create_transform(**data_cfg, is_training=False)``:
resize (aspect kept, shorter side to ``input / crop_pct``), center crop to the input
size, to tensor, normalise. :func:`eval_geometry` describes the resize and crop
numerically for one image size, so that a CAM heatmap computed on the model input
can be mapped back onto the original image (:func:`heatmap_to_original`) or a
bounding box onto the model input (:func:`boxes_to_input`).
"""
from __future__ import annotations

import math

import numpy as np


def eval_transform(data_cfg: dict):
    """The deterministic evaluation transform (PIL RGB image -> normalised CHW float tensor).

    Args:
        data_cfg: A data config from :func:`imagenet_clean.models.factory.build_model`
            (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``).
    """
    from timm.data import create_transform

    c, h, w = data_cfg["input_size"]
    return create_transform(
        input_size=(c, h, w),
        is_training=False,
        interpolation=data_cfg.get("interpolation", "bicubic"),
        mean=tuple(data_cfg["mean"]),
        std=tuple(data_cfg["std"]),
        crop_pct=data_cfg.get("crop_pct", 0.875),
        crop_mode=data_cfg.get("crop_mode", "center"),
    )


def _scale_size(data_cfg: dict) -> tuple[int, int]:
    _, th, tw = data_cfg["input_size"]
    pct = data_cfg.get("crop_pct") or 0.875
    return math.floor(th / pct), math.floor(tw / pct)


def decode_size(data_cfg: dict) -> tuple[int, int]:
    """Smallest ``(width, height)`` a JPEG may be draft-decoded to without losing resolution.

    The eval resize brings the shorter image side to ``input / crop_pct``; decoding
    at least that size on both sides (DCT scaling keeps the aspect ratio) leaves the
    result of the resize unchanged up to resampling noise, whatever the orientation.
    """
    sh, sw = _scale_size(data_cfg)
    if data_cfg.get("crop_mode", "center") == "center":
        m = min(sh, sw) if sh == sw else max(sh, sw)
    else:
        m = max(sh, sw)
    return m, m


def eval_geometry(data_cfg: dict, width: int, height: int) -> dict:
    """How :func:`eval_transform` maps an image of ``width`` x ``height`` onto the model input.

    The transform first resizes the image to ``resize`` = ``(rh, rw)`` pixels
    (``scale`` = ``(rh / height, rw / width)``), then crops the model input
    ``input_size`` = ``(th, tw)`` whose top-left corner lies at ``crop`` =
    ``(top, left)`` in resized pixels (negative when the crop pads). So an
    original pixel ``(x, y)`` lands at model-input pixel
    ``(x * scale[1] - left, y * scale[0] - top)`` (continuous coordinates, pixel
    edges at integers).

    Args:
        data_cfg: The model's data config.
        width: Original image width in pixels.
        height: Original image height in pixels.

    Returns:
        ``{"width", "height", "resize", "scale", "crop", "input_size"}`` as plain
        Python numbers / tuples.

    Raises:
        ValueError: a non-positive size or an unsupported ``crop_mode``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} is not positive")
    _, th, tw = (int(v) for v in data_cfg["input_size"])
    sh, sw = _scale_size(data_cfg)
    mode = data_cfg.get("crop_mode") or "center"
    if mode == "squash":
        rh, rw = sh, sw
    elif mode in ("center", "border"):
        if mode == "center" and sh == sw:  # torchvision Resize(int): shorter side -> s, longer side truncated
            if width <= height:
                rw, rh = sh, int(sh * height / width)
            else:
                rh, rw = sh, int(sh * width / height)
        else:  # timm ResizeKeepRatio
            rh_, rw_ = height / sh, width / sw
            ratio = max(rh_, rw_) if mode == "border" else min(rh_, rw_)
            rh, rw = round(height / ratio), round(width / ratio)
    else:
        raise ValueError(f"crop_mode {mode!r} is not one of center, squash, border")
    top = _crop_offset(rh, th)
    left = _crop_offset(rw, tw)
    return {
        "width": int(width),
        "height": int(height),
        "resize": (int(rh), int(rw)),
        "scale": (rh / height, rw / width),
        "crop": (top, left),
        "input_size": (th, tw),
    }


def _crop_offset(size: int, crop: int) -> int:
    """torchvision center_crop's offset; pads (negative offset) when the crop is larger."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def boxes_to_input(boxes, geometry: dict) -> np.ndarray:
    """Map boxes ``(xmin, ymin, xmax, ymax)`` in original pixels onto the model input, clipped to it.

    Returns:
        A float64 array (N, 4); a box entirely outside the crop has zero area.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sy, sx = geometry["scale"]
    top, left = geometry["crop"]
    th, tw = geometry["input_size"]
    out = np.empty_like(b)
    out[:, [0, 2]] = np.clip(b[:, [0, 2]] * sx - left, 0, tw)
    out[:, [1, 3]] = np.clip(b[:, [1, 3]] * sy - top, 0, th)
    return out


def heatmap_to_original(heatmap: np.ndarray, geometry: dict, *, fill: float = 0.0) -> np.ndarray:
    """Map a heatmap on the model input (``input_size``) back onto the original image.

    The heatmap is placed at the crop position in the resized frame (``fill``
    outside the crop, where the model saw nothing) and resized bilinearly to the
    original ``(height, width)``.

    Args:
        heatmap: (th, tw) array, or any size (it is first resized to the input size).
        geometry: From :func:`eval_geometry`.
        fill: Value for original pixels the crop cut away.

    Returns:
        float32 array (height, width).
    """
    from PIL import Image

    th, tw = geometry["input_size"]
    rh, rw = geometry["resize"]
    top, left = geometry["crop"]
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape != (th, tw):
        hm = np.asarray(Image.fromarray(hm, mode="F").resize((tw, th), Image.BILINEAR))
    canvas = np.full((rh, rw), fill, np.float32)
    # intersection of the crop window [top, top+th) x [left, left+tw) with the resized frame
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + th, rh), min(left + tw, rw)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = hm[y0 - top : y1 - top, x0 - left : x1 - left]
    out = Image.fromarray(canvas, mode="F").resize((geometry["width"], geometry["height"]), Image.BILINEAR)
    return np.asarray(out, dtype=np.float32)
