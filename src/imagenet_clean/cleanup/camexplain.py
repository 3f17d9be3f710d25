"""One image's CAM explanation: heatmaps, explainability scores and a side-by-side picture.

The CAM stage's own steps (:mod:`imagenet_clean.cleanup.cam`): the image is
read and transformed by ``_load_input`` (same draft decode, same box rescaling),
the heatmaps come from :func:`~imagenet_clean.cleanup.cammethods.compute_heatmaps`
with the stage's ``cam.impl`` and ``cam.freeze``, and the scores from
:func:`~imagenet_clean.cleanup.camgeom.box_heat_score`. So ``imagenet-clean
explain`` and the review app show exactly the numbers the stage decided on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..config import CamConfig
from ..constants import MAX_IMAGE_PIXELS
from .cam import _load_input, _method_order, _Sample, _verdict
from .camgeom import EvalGeometry, box_heat_score, box_mask, heatmap_to_original
from .cammethods import compute_heatmaps, find_target_layer

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class Explanation:
    """What the CAMs say about one image.

    Attributes:
        label: The explained class index.
        layer: The target layer.
        scores: Method -> explainability score (fraction of box pixels with heat >= ``cfg.heat``).
        passed: Method -> score >= ``cfg.pass_score``.
        exempts: Whether ``cfg.min_methods`` methods pass (the stage's verdict for this model).
        heatmaps: Method -> heatmap in the model's input frame.
        geometry: The image's eval geometry (decoded image -> input frame).
        boxes: The boxes in the decoded image's pixels.
        image: The decoded image.
    """

    label: int
    layer: str
    scores: dict[str, float]
    passed: dict[str, bool]
    exempts: bool
    heatmaps: dict[str, np.ndarray] = field(repr=False)
    geometry: EvalGeometry = field(repr=False)
    boxes: np.ndarray = field(repr=False)
    image: "Image.Image" = field(repr=False)


def _image_size(path: Path, max_pixels: int) -> tuple[int, int]:
    from ..data.images import inspect_image

    info = inspect_image(path, max_pixels=max_pixels)
    if info.reason:
        raise ValueError(f"cannot read {path}: {info.reason}")
    return int(info.width), int(info.height)


def explain_image(path: str | Path, label: int, boxes: Sequence[Sequence[float]], *, model: torch.nn.Module,
                  data_cfg: dict, cfg: CamConfig = CamConfig(), methods: Sequence[str] | None = None,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> Explanation:
    """Heatmaps and explainability scores of ``label`` on one image, as the CAM stage computes them.

    Args:
        path: The image file.
        label: Class index to explain.
        boxes: Boxes ``[xmin, ymin, xmax, ymax]`` in the file's pixels (may be empty:
            no scores, heatmaps only).
        model: The classifier.
        data_cfg: Its timm data config.
        cfg: The CAM settings (``heat``, ``pass_score``, ``min_methods``, ``impl``, ...).
        methods: Methods to run (default ``cfg.methods``), all computed.
        max_pixels: Decompression-bomb limit.

    Raises:
        ValueError: an unreadable image, a box outside the image or malformed, a
            label out of the model's range, an unknown method, or a model without
            a 4-D feature layer.
    """
    import timm.data

    path = Path(path)
    methods = _method_order(CamConfig(methods=tuple(methods or cfg.methods), min_methods=1))
    k = getattr(model, "num_classes", None)
    if k and not 0 <= int(label) < k:
        raise ValueError(f"label {label} is out of range for the model's {k} classes")
    width, height = _image_size(path, max_pixels)
    b = np.asarray(boxes if len(boxes) else np.zeros((0, 4)), np.float64).reshape(-1, 4)
    for box in b:
        if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box {box.tolist()} is not [xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax")
        if not box_mask([box], width, height).any():
            raise ValueError(f"box {box.tolist()} lies outside the {width}x{height} image {path}")
    layer = find_target_layer(model, input_size=data_cfg["input_size"])
    keys_tf = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    transform = timm.data.create_transform(**{q: data_cfg[q] for q in keys_tf if q in data_cfg}, is_training=False)
    row = dict(path=path.name, boxes=b.tolist() if len(b) else [[0, 0, width, height]], width=width, height=height)
    x, geom, scaled = _load_input(_Sample(row=row, scores={}), path.parent, data_cfg, transform, max_pixels)
    scaled = scaled if len(b) else np.zeros((0, 4))
    heat, scores = {}, {}
    for m in methods:
        heat[m] = compute_heatmaps(model, layer, x[None], [int(label)], method=m, batch_size=cfg.batch_size,
                                   impl=getattr(cfg, "impl", "pytorch-grad-cam"), freeze=getattr(cfg, "freeze", False))[0]
        if len(b):
            scores[m] = box_heat_score(heat[m], scaled, geom, heat=cfg.heat)
    passed = {m: s >= cfg.pass_score for m, s in scores.items()}
    need = CamConfig(methods=tuple(methods), min_methods=min(cfg.min_methods, len(methods)), pass_score=cfg.pass_score)
    from ..data.images import load_rgb

    in_h, in_w = data_cfg["input_size"][-2:]
    crop = data_cfg.get("crop_pct") or 0.875
    image = load_rgb(path, max_pixels=max_pixels, within=path.parent,
                     draft_size=(math.floor(in_w / crop), math.floor(in_h / crop)))
    return Explanation(label=int(label), layer=layer, scores=scores, passed=passed,
                       exempts=bool(scores) and bool(_verdict(scores, methods, need)), heatmaps=heat,
                       geometry=geom, boxes=scaled, image=image)


def render_explanation(ex: Explanation, *, title: str = "") -> "Image.Image":
    """The image with its boxes, then each method's heatmap over it, side by side, captioned with the scores."""
    from PIL import Image, ImageDraw

    from ..drawing import draw_boxes, overlay, scaled_for_viewing

    panels = []
    base, s = scaled_for_viewing(ex.image.copy())
    draw_boxes(base, ex.boxes.tolist(), s)
    panels.append((base, title or f"label {ex.label}"))
    for m, h in ex.heatmaps.items():
        hm = heatmap_to_original(h, ex.geometry)
        cap = f"{m}: {ex.scores[m]:.3f} {'pass' if ex.passed[m] else 'fail'}" if m in ex.scores else m
        panels.append((overlay(ex.image, hm, ex.boxes.tolist()), cap))
    pad, band = 8, 18
    w = sum(p.width for p, _ in panels) + pad * (len(panels) + 1)
    h = max(p.height for p, _ in panels) + band + 2 * pad
    sheet = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    x = pad
    for p, cap in panels:
        sheet.paste(p, (x, pad + band))
        d.text((x, pad), cap, fill=(0, 0, 0))
        x += p.width + pad
    return sheet
