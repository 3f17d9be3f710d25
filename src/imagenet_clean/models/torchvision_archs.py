"""torchvision classification architectures by name: ``torchvision:squeezenet1_1``, ``torchvision:shufflenet_v2_x1_5``.

The paper retrained SqueezeNet 1.1 and ShuffleNetV2 x1.5 (table 2) besides
EfficientNet-B0; timm has neither, torchvision (already a dependency) has both.
An architecture written ``torchvision:<name>`` (``tables.archs``, a model's
``arch``) is built here from scratch (``weights: train``; no pretrained
torchvision weights are downloaded) and carries a timm-style
``pretrained_cfg`` (224 px, bilinear, ImageNet mean/std, crop 0.875: torchvision's
own reference evaluation) so that timm's ``resolve_data_config`` and the rest of
the pipeline treat it like a timm model.

Example:
    >>> model = create("torchvision:squeezenet1_1", num_classes=1000)
"""
from __future__ import annotations

import difflib

PREFIX = "torchvision:"
"""Architecture names that start with this are torchvision models."""

PRETRAINED_CFG = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
    "num_classes": 1000,
    "classifier": None,
}
"""The data config of every torchvision model (torchvision's ImageNet reference transforms)."""


def is_torchvision(arch: str) -> bool:
    """Whether ``arch`` names a torchvision model (``torchvision:<name>``)."""
    return isinstance(arch, str) and arch.startswith(PREFIX)


def names() -> list[str]:
    """Every torchvision classification architecture, prefixed (``torchvision:resnet18``, ...)."""
    from torchvision import models

    return [PREFIX + n for n in models.list_models(module=models)]


def check(arch: str) -> str | None:
    """None when ``arch`` is a torchvision classification model, else why not (with close names)."""
    if arch in names():
        return None
    close = difflib.get_close_matches(arch, names(), n=3, cutoff=0.6)
    return f"unknown architecture {arch!r} (not a torchvision classification model)" + (
        f"; did you mean {', '.join(close)}?" if close else "")


def create(arch: str, *, num_classes: int, **kwargs):
    """A randomly initialised torchvision model with ``num_classes`` outputs and a timm-style ``pretrained_cfg``.

    Args:
        arch: ``torchvision:<name>``.
        num_classes: Width of the classifier.
        **kwargs: Passed to the torchvision constructor (timm-only keys such as
            ``pretrained_cfg_overlay`` update the data config instead).

    Raises:
        ValueError: ``arch`` is not a torchvision classification model.
    """
    from torchvision import models

    why = check(arch)
    if why:
        raise ValueError(why)
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    kwargs.pop("in_chans", None)
    model = models.get_model(arch[len(PREFIX):], weights=None, num_classes=num_classes, **kwargs)
    cfg = {**PRETRAINED_CFG, **overlay, "num_classes": num_classes, "architecture": arch}
    model.pretrained_cfg = cfg
    model.default_cfg = cfg
    model.num_classes = num_classes  # what timm models expose and predict_samples reads
    return model
