"""Pictures for the review app: an image with its boxes, and a CAM heatmap over it.

Every picture is a PNG at least :data:`MIN_SIDE` pixels on its shorter side
(small images are enlarged with nearest-neighbour sampling, so pixels stay
visible). CAM overlays are computed on demand with the model the cleanup used
for that sample (the out-of-fold model on the training split) and cached as
PNG files keyed by image content, model weights, fold, method and box.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from ..constants import MAX_IMAGE_PIXELS
from ..data.images import load_rgb
from ..drawing import MAX_SIDE, MIN_SIDE, draw_boxes, jet, overlay, scaled_for_viewing  # noqa: F401 (MAX_SIDE, MIN_SIDE, jet, overlay: re-exported)


def png(img: Image.Image) -> bytes:
    """PNG bytes of an image."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_with_boxes(path: str | Path, boxes: Sequence[Sequence[float]] | None, *, within: str | Path) -> bytes:
    """The image file (under ``within``) enlarged for viewing, with ``boxes`` (original pixels) drawn, as PNG.

    Raises:
        ValueError: the file cannot be decoded or lies outside ``within``.
    """
    img = load_rgb(path, max_pixels=MAX_IMAGE_PIXELS, within=within)
    out, s = scaled_for_viewing(img)
    draw_boxes(out, boxes or [], s)
    return png(out)


class CamRenderer:
    """CAM heatmaps over images, computed on demand with a small LRU of loaded models and a PNG cache.

    Args:
        load_model: ``(model name, fold) -> (module, timm data config)``.
        cache_dir: Folder for the PNG cache (None: no cache).
        max_models: How many (model, fold) pairs stay loaded.
        threads: Torch threads for a CAM (the server stays responsive meanwhile).
    """

    def __init__(self, load_model: Callable[[str, int], tuple], cache_dir: Path | None, *, max_models: int = 2,
                 threads: int = 1):
        self.load_model = load_model
        self.threads = threads
        self.cache_dir = cache_dir
        self.max_models = max_models
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _model(self, name: str, fold: int):
        key = (name, fold)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        from ..cleanup.cammethods import find_target_layer

        model, cfg = self.load_model(name, fold)
        model.eval()
        layer = find_target_layer(model, input_size=cfg["input_size"])
        self._models[key] = (model, cfg, layer)
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return self._models[key]

    def render(self, path: Path, *, root: Path, content: str, boxes: Sequence[Sequence[float]], label: int,
               model: str, fold: int, method: str) -> bytes:
        """PNG of ``method``'s heatmap of ``label`` by ``model`` (``fold``) over the image, with the boxes.

        Raises:
            ValueError: unknown method, or an image that cannot be read.
        """
        from ..cleanup.cammethods import CAM_METHODS

        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose from {sorted(CAM_METHODS)}")
        key = hashlib.blake2b(json.dumps([content, model, fold, method, label, boxes]).encode(), digest_size=16).hexdigest()
        cached = self.cache_dir / f"{key}.png" if self.cache_dir else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        with self._lock:  # one CAM at a time: they are CPU-heavy, and the models are shared
            import timm.data
            import torch

            from ..cleanup.camgeom import eval_geometry, heatmap_to_original
            from ..cleanup.cammethods import compute_heatmaps

            torch.set_num_threads(self.threads)  # leave the other cores to the pages and verdicts
            net, cfg, layer = self._model(model, fold)
            img = load_rgb(path, max_pixels=MAX_IMAGE_PIXELS, within=root)
            keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
            tf = timm.data.create_transform(**{k: cfg[k] for k in keys if k in cfg}, is_training=False)
            x = torch.stack([tf(img)])
            hm = compute_heatmaps(net, layer, x, [label], method=method)[0]
            heat = heatmap_to_original(hm, eval_geometry(cfg, *img.size))
            data = png(overlay(img, heat, boxes))
        if cached is not None:
            from ..io import atomic_path

            with atomic_path(cached) as tmp:
                tmp.write_bytes(data)
        return data
