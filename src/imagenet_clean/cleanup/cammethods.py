"""CAM methods and target layers: which module to explain, and heatmaps from ``pytorch_grad_cam``.

The registries (:data:`CAM_METHODS`, :data:`TARGET_LAYERS`) are what
:mod:`imagenet_clean.cleanup.cam` runs; a new method or an architecture whose
last convolutional stage the automatic search misses is one registry entry.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CamMethod:
    """A CAM method of ``pytorch_grad_cam``: its class name and relative cost (lower runs first)."""

    cls: str
    cost: float
    gradients: bool = True


# name in params.yaml cam.methods -> method; costs are per image relative to Grad-CAM
CAM_METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod("GradCAM", 1.0),
    "gradcam++": CamMethod("GradCAMPlusPlus", 1.1),
    "scorecam": CamMethod("ScoreCAM", 300.0, gradients=False),
}

# timm architecture name (model.pretrained_cfg["architecture"]) -> CAM target module path; overrides the search
TARGET_LAYERS: dict[str, str] = {}


def register_target_layer(arch: str, module_path: str) -> None:
    """Pin the CAM target layer of a timm architecture (e.g. one the automatic search gets wrong)."""
    TARGET_LAYERS[arch] = module_path


def find_target_layer(model: torch.nn.Module, *, input_size: Sequence[int] = (3, 224, 224)) -> str:
    """The name of the module that outputs the model's last convolutional feature map.

    Uses :data:`TARGET_LAYERS` when the architecture is registered; otherwise runs a
    dummy input through ``forward_features`` (timm) and returns the outermost module
    that produced its 4-D output (e.g. ``layer4`` for a ResNet, ``bn2`` after
    EfficientNet's ``conv_head``, ``stages.3`` for ConvNeXt), i.e. the last map
    before global pooling; without ``forward_features``, the last module with a
    4-D output larger than 1x1.

    Raises:
        ValueError: no module outputs a 4-D map (e.g. a vision transformer).
    """
    import torch

    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    if arch in TARGET_LAYERS:
        return TARGET_LAYERS[arch]
    seen: list[tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, out)))
             for name, m in model.named_modules() if name]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            x = torch.zeros(1, *input_size)
            feats = model.forward_features(x) if hasattr(model, "forward_features") else None
            if feats is None:
                model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    maps = [(n, o) for n, o in seen if isinstance(o, torch.Tensor) and o.ndim == 4]
    if isinstance(feats, torch.Tensor) and feats.ndim == 4:
        same = [n for n, o in maps if o is feats] or [n for n, o in maps if o.shape == feats.shape]
        spatial = same[-1:]
    elif feats is not None:  # forward_features gives tokens, not a map: not a convolutional network
        spatial = []
    else:
        spatial = [n for n, o in maps if o.shape[-1] * o.shape[-2] > 1][-1:]
    if not spatial:
        raise ValueError(f"{arch or type(model).__name__}: no module outputs a 4-D feature map; "
                         "register its CAM layer with register_target_layer()")
    return spatial[-1]


@contextlib.contextmanager
def _quiet_scorecam():
    # ScoreCAM wraps its channel loop in a bare tqdm bar; silence it (stage logs stay readable)
    from types import SimpleNamespace

    import pytorch_grad_cam.score_cam as sc

    real = sc.tqdm
    sc.tqdm = SimpleNamespace(tqdm=lambda it, *a, **k: it)
    try:
        yield
    finally:
        sc.tqdm = real


def compute_heatmaps(model: torch.nn.Module, layer: str, images: torch.Tensor, labels: Sequence[int], *,
                     method: str, batch_size: int = 32, impl: str = "pytorch-grad-cam",
                     freeze: bool = False) -> np.ndarray:
    """Heatmaps ``(B, H, W)`` in [0, 1] of ``labels`` for a normalised input batch ``(B, 3, H, W)``.

    Args:
        model: The classifier (put in eval mode; its weights are not modified).
        layer: Target module name (:func:`find_target_layer`).
        images: Model inputs.
        labels: Class index per image.
        method: A key of :data:`CAM_METHODS`.
        batch_size: Score-CAM's channel batch (masked copies per forward pass);
            with ``impl="fast"`` also the Grad-CAMs' image batch.
        impl: ``pytorch-grad-cam`` (the library) or ``fast``
            (:mod:`imagenet_clean.cleanup.camfast`: the same definitions, batched).
        freeze: ``fast`` Score-CAM on a CPU: masked passes through a frozen trace.
    """
    if impl == "fast":
        from .camfast import fast_heatmaps

        return fast_heatmaps(model, layer, images, labels, method=method, batch_size=batch_size, freeze=freeze)
    if impl != "pytorch-grad-cam":
        raise ValueError(f"cam impl {impl!r} unknown; choose from ['fast', 'pytorch-grad-cam']")
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    spec = CAM_METHODS[method]
    model.eval()
    target = model.get_submodule(layer)
    cam = getattr(pytorch_grad_cam, spec.cls)(model=model, target_layers=[target])
    cam.batch_size = batch_size
    try:
        if spec.gradients:
            with torch.enable_grad():
                # an input that requires grad builds the graph even if the weights are frozen
                x = images.detach().clone().requires_grad_(True)
                out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in labels])
        else:  # one image at a time: its cost is per channel, and results do not depend on the batch
            with torch.no_grad(), _quiet_scorecam():
                out = np.concatenate([cam(input_tensor=images[i:i + 1], targets=[ClassifierOutputTarget(int(c))])
                                      for i, c in enumerate(labels)])
    finally:
        cam.activations_and_grads.release()
    return np.asarray(out, dtype=np.float32)


def model_fingerprint(model: torch.nn.Module, data_cfg: dict, layer: str) -> str:
    """Hash of the weights, the eval data config and the CAM layer (keys the score cache)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({k: data_cfg.get(k) for k in sorted(data_cfg)}, default=str).encode())
    h.update(layer.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
