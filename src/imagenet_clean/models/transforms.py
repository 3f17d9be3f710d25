"""Evaluation preprocessing from a data config, and the JPEG draft size it allows.

:func:`eval_transform` is timm's ``create_transform(**data_cfg, is_training=False)``:
resize (aspect kept, shorter side to ``input / crop_pct``), center crop to the input
size, to tensor, normalise. Its geometry (model input <-> original pixels, for the
CAM exemption) lives in :mod:`imagenet_clean.cleanup.camgeom`.
"""
from __future__ import annotations

import math


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
