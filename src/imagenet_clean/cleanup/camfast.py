"""Fast CAMs with ``pytorch_grad_cam``'s exact definitions: batched Grad-CAM/Grad-CAM++ and a lean Score-CAM.

The heatmaps equal ``pytorch_grad_cam``'s ``GradCAM``, ``GradCAMPlusPlus`` and
``ScoreCAM`` (one target layer, ``ClassifierOutputTarget``, no smoothing) up to
float rounding: the channel weights come from the library's own
``get_cam_weights`` (Grad-CAMs) or from the same masked-input scores (Score-CAM),
and the weighted sum, ReLU, ``scale_cam_image`` resize and normalisation are the
library's. What changes is how the forward passes are run:

* **Grad-CAM / Grad-CAM++:** a batch of candidates in one pass; the weights
  and everything before the target layer run without autograd (a forward hook
  makes the layer's output the graph's only leaf), so the backward pass covers
  only the head after the target layer, not the whole network and its weights.
* **Score-CAM:** a channel whose upsampled, min-max normalised activation map
  is all zero (a dead or saturated channel: about 30-60 % of
  efficientnet_lite0's 1,280 at 224 px) has the all-zero image as its masked
  input, so its score is ``model(0)[label]``, computed once per call instead of
  once per channel. The other masked inputs of all images are pooled and run
  in batches of ``batch_size`` (large batches on a GPU), channels-last, under
  ``inference_mode``. Nothing is approximated: the same masks, the same
  softmax over the same scores.

On a CPU the masked passes can also run through a frozen TorchScript trace
(``freeze``, params ``cam.freeze``: BatchNorm folded into the convolutions,
oneDNN kernels; about 1.5x, logits within about 2e-5 of eager). bfloat16
autocast and ``torch.compile`` are not used: bf16 changes the scores and is
about 10x slower than float32 on CPUs without AVX-512 bf16; compiling costs
about 30 s per model and shape.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import weakref

    import torch

GPU_SCORECAM_BATCH = 256
"""Masked inputs per forward pass on a GPU (on a CPU: the caller's ``batch_size``)."""

MASK_BUDGET = 256 * 2**20
"""Upsampled mask elements held at once (float32: 1 GiB), bounding Score-CAM's memory."""


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    import torch

    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    # no weight gradients: autograd then records only what follows the leaf the hook makes
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@contextlib.contextmanager
def _capture(module: torch.nn.Module, *, leaf: bool) -> Iterator[list]:
    """Record the module's outputs; ``leaf``: make each output a fresh autograd leaf (returned as a clone)."""
    seen: list = []

    def hook(mod, inp, out):
        if not leaf:
            seen.append(out.detach())
            return None
        x = out.detach().requires_grad_(True)
        seen.append(x)
        return x.clone()  # in-place ops downstream must not touch the leaf

    h = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        h.remove()


_FROZEN: "weakref.WeakKeyDictionary" = None  # model -> its frozen trace (or None: not traceable)


def frozen_logits(model: torch.nn.Module, example: torch.Tensor):
    """A frozen, inference-optimised TorchScript trace of ``model`` (conv+BN folded), or None if it fails.

    One trace per model object, reused across calls; logits within about 2e-5 of
    eager float32 on efficientnet_lite0. Only the logits are traced: the target
    layer's activations always come from the eager model.
    """
    global _FROZEN
    import warnings
    import weakref

    import torch

    if _FROZEN is None:
        _FROZEN = weakref.WeakKeyDictionary()
    if model in _FROZEN:
        return _FROZEN[model]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example).eval()))
                traced(example)
    except Exception:  # noqa: BLE001  any model TorchScript cannot handle runs eagerly
        traced = None
    _FROZEN[model] = traced
    return traced


def _prepare(model: torch.nn.Module, channels_last: bool) -> None:
    # eval mode; channels-last weights (values, hence the model fingerprint, are unchanged)
    import torch

    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)


def _finish(weights: np.ndarray, activations: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pytorch_grad_cam``'s ``get_cam_image`` + ``compute_cam_per_layer`` + ``aggregate_multi_layers``."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    cam = (weights[:, :, None, None] * activations).sum(axis=1)
    cam = np.maximum(cam, 0)
    scaled = scale_cam_image(cam, (size[1], size[0]))[:, None, :]  # (width, height) as cv2 wants it
    return scale_cam_image(np.mean(np.maximum(scaled, 0), axis=1)).astype(np.float32)


def _as_input(images: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    import torch

    x = images.detach().to(device=device, dtype=torch.float32)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x.contiguous()


def _check(images, labels, method: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    if len(labels) != images.shape[0]:
        raise ValueError(f"{len(labels)} labels for {images.shape[0]} images")
    if method not in FAST_METHODS:
        raise ValueError(f"method {method!r} unknown; choose from {sorted(FAST_METHODS)}")


def gradcam_batch(model: torch.nn.Module, layer: str, images: torch.Tensor, labels: Sequence[int], *,
                  method: str = "gradcam", batch_size: int = 32, channels_last: bool = True) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ heatmaps ``(B, H, W)`` in [0, 1], ``batch_size`` images per pass.

    Args:
        model: The classifier (eval mode; weights untouched, their ``requires_grad``
            restored).
        layer: Target module name.
        images: Normalised model inputs ``(B, 3, H, W)``.
        labels: Class index per image.
        method: ``gradcam`` or ``gradcam++``.
        batch_size: Images per forward/backward pass.
        channels_last: Run in channels-last memory format (the fast CPU layout).
    """
    import pytorch_grad_cam
    import torch

    _check(images, labels, method)
    weights_fn = {"gradcam": pytorch_grad_cam.GradCAM, "gradcam++": pytorch_grad_cam.GradCAMPlusPlus}[method]
    _prepare(model, channels_last)
    dev = model_device(model)
    target = model.get_submodule(layer)
    out = []
    with _frozen(model), torch.enable_grad():
        for b0 in range(0, len(labels), batch_size):
            x = _as_input(images[b0:b0 + batch_size], dev, channels_last)
            idx = torch.as_tensor([int(c) for c in labels[b0:b0 + batch_size]], device=dev)
            with _capture(target, leaf=True) as seen:
                logits = model(x)
            if not seen:
                raise ValueError(f"target layer {layer!r} did not run in the forward pass")
            act = seen[-1]
            (grad,) = torch.autograd.grad(logits.gather(1, idx[:, None]).sum(), act)
            a = act.detach().float().cpu().contiguous().numpy()
            g = grad.detach().float().cpu().contiguous().numpy()
            w = weights_fn.get_cam_weights(None, x, None, None, a, g)
            out.append(_finish(np.asarray(w, np.float32), a, tuple(x.shape[-2:])))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)


def _normalised_masks(act: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """ScoreCAM's masks: bilinear (align_corners) upsampling, then per-channel min-max to [0, 1]."""
    import torch

    up = torch.nn.UpsamplingBilinear2d(size=tuple(size))(act)
    flat = up.view(up.size(0), up.size(1), -1)
    maxs, mins = flat.max(dim=-1)[0][:, :, None, None], flat.min(dim=-1)[0][:, :, None, None]
    return (up - mins) / (maxs - mins + 1e-8)


def scorecam_batch(model: torch.nn.Module, layer: str, images: torch.Tensor, labels: Sequence[int], *,
                   batch_size: int = 32, channels_last: bool = True, skip_constant: bool = True,
                   freeze: bool = False) -> np.ndarray:
    """Score-CAM heatmaps ``(B, H, W)`` in [0, 1], as ``pytorch_grad_cam.ScoreCAM`` computes them.

    Args:
        model: The classifier (eval mode).
        layer: Target module name.
        images: Normalised model inputs ``(B, 3, H, W)``.
        labels: Class index per image.
        batch_size: Masked inputs per forward pass (all images' channels pooled);
            on a GPU at least :data:`GPU_SCORECAM_BATCH`.
        channels_last: Run in channels-last memory format.
        skip_constant: Score every all-zero mask with one forward pass of the
            zero image (exact; ``False`` runs one pass per channel, as the library).
        freeze: On a CPU, run the masked passes through :func:`frozen_logits`
            (about 1.5x faster; float rounding differs from eager).
    """
    import torch

    _check(images, labels, "scorecam")
    _prepare(model, channels_last)
    dev = model_device(model)
    if dev.type == "cuda":
        batch_size = max(batch_size, GPU_SCORECAM_BATCH)
    target = model.get_submodule(layer)
    size = tuple(images.shape[-2:])
    out = []
    zero = None
    run = model
    if freeze and dev.type == "cpu":
        example = _as_input(images[:1], dev, channels_last).expand(min(batch_size, 8), -1, -1, -1).contiguous()
        run = frozen_logits(model, example) or model
    with torch.inference_mode():
        for b0 in range(0, len(labels), max(1, batch_size)):
            x = _as_input(images[b0:b0 + batch_size], dev, channels_last)
            lab = torch.as_tensor([int(c) for c in labels[b0:b0 + batch_size]], device=dev)
            with _capture(target, leaf=False) as seen:
                model(x)
            if not seen:
                raise ValueError(f"target layer {layer!r} did not run in the forward pass")
            act = seen[-1].float().contiguous()
            per = max(1, MASK_BUDGET // max(1, act.shape[1] * size[0] * size[1]))
            scores = torch.empty(act.shape[:2], dtype=torch.float32, device=dev)
            for g0 in range(0, len(x), per):  # the masks of `per` images at a time (memory)
                masks = _normalised_masks(act[g0:g0 + per], size)  # (g, C, H, W)
                live = masks.flatten(2).amax(dim=-1) > 0
                if not skip_constant:
                    live = torch.ones_like(live)
                if not bool(live.all()):
                    if zero is None:
                        zero = run(_as_input(torch.zeros(1, *x.shape[1:]), dev, channels_last))[0].float()
                    scores[g0:g0 + len(masks)] = zero[lab[g0:g0 + len(masks)]][:, None]
                pairs = live.nonzero()  # (image, channel), image-major as the library's loop
                for p0 in range(0, len(pairs), batch_size):
                    gi, ki = pairs[p0:p0 + batch_size, 0], pairs[p0:p0 + batch_size, 1]
                    masked = x[g0 + gi] * masks[gi, ki][:, None]
                    if channels_last:
                        masked = masked.contiguous(memory_format=torch.channels_last)
                    logits = run(masked)
                    scores[g0 + gi, ki] = logits.gather(1, lab[g0 + gi][:, None])[:, 0].float()
                del masks
            w = torch.nn.Softmax(dim=-1)(scores.cpu()).numpy()
            out.append(_finish(w, act.cpu().numpy(), size))
    return np.concatenate(out) if out else np.zeros((0, *size), np.float32)


FAST_METHODS = {"gradcam": gradcam_batch, "gradcam++": gradcam_batch, "scorecam": scorecam_batch}


def fast_heatmaps(model: torch.nn.Module, layer: str, images: torch.Tensor, labels: Sequence[int], *,
                  method: str, batch_size: int = 32, channels_last: bool = True, freeze: bool = False) -> np.ndarray:
    """Heatmaps ``(B, H, W)`` in [0, 1] of ``labels``: the fast twin of ``cammethods.compute_heatmaps``.

    ``freeze`` applies to Score-CAM only (:func:`scorecam_batch`).
    """
    _check(images, labels, method)
    if method == "scorecam":
        return scorecam_batch(model, layer, images, labels, batch_size=batch_size, channels_last=channels_last,
                              freeze=freeze)
    return gradcam_batch(model, layer, images, labels, method=method, batch_size=batch_size,
                         channels_last=channels_last)
