"""How to run a backbone's forward passes fast on this machine: a small registry of numerics, picked once.

Each entry of :data:`NUMERICS` is one way to run inference on CPU or GPU
(float32 eager, ``torch.compile``, bfloat16 autocast). :func:`choose_numerics`
picks one from the detected CPU and the workload, and says why; the features
stage records the choice in its output's metadata.

Measured on this project's machines (benchmarks/README.md, "Feature extraction"):
bfloat16 autocast is about 3x faster than float32 on CPUs with AMX or
AVX-512-BF16 and about 10x slower on AVX2-only CPUs; ``torch.compile`` is about
1.4-2.3x faster than eager float32 once compiled, at about 30 s of compiling per
model, so it pays only past :data:`~imagenet_clean.constants.COMPILE_MIN_IMAGES`.
"""
from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass

from ..constants import COMPILE_MIN_IMAGES

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Numerics:
    """One way of running forward passes.

    Attributes:
        name: Registry key (the value of ``features.speed``).
        bf16: bfloat16 autocast on CPU.
        compile: ``torch.compile`` the model.
    """

    name: str
    bf16: bool = False
    compile: bool = False


NUMERICS: dict[str, Numerics] = {n.name: n for n in (
    Numerics("eager"),
    Numerics("compile", compile=True),
    Numerics("bf16", bf16=True),
    Numerics("bf16-compile", bf16=True, compile=True),
)}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (from /proc/cpuinfo; empty where it is not readable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_fast_bf16(flags=None) -> bool:
    """True on CPUs with native bfloat16 arithmetic (AMX-BF16 or AVX-512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return bool({"amx_bf16", "avx512_bf16"} & set(flags))


def choose_numerics(speed: str, *, n_images: int, device_type: str = "cpu", flags=None,
                    compiler: bool | None = None) -> tuple[Numerics, str]:
    """The numerics to run with, and why.

    Args:
        speed: ``features.speed``: ``auto`` or a key of :data:`NUMERICS`.
        n_images: Images the model will see (one view).
        device_type: ``cpu`` or ``cuda``.
        flags: CPU flags (default: this machine's).
        compiler: A C++ compiler is on PATH (``torch.compile`` needs one on CPU); default: detected.

    Raises:
        ValueError: ``speed`` is neither ``auto`` nor a registered numerics.
    """
    if speed != "auto":
        if speed not in NUMERICS:
            raise ValueError(f"features.speed {speed!r} is not one of auto, {', '.join(NUMERICS)}")
        return NUMERICS[speed], "set in params.yaml (features.speed)"
    if device_type != "cpu":
        return NUMERICS["eager"], f"{device_type}: float16 autocast already"
    bf16 = has_fast_bf16(flags)
    compiler = bool(shutil.which("c++") or shutil.which("g++")) if compiler is None else compiler
    big = n_images >= COMPILE_MIN_IMAGES and compiler
    name = ("bf16-compile" if big else "bf16") if bf16 else ("compile" if big else "eager")
    why = ("CPU has AMX/AVX-512-BF16" if bf16 else "CPU lacks native bfloat16 (float32)") + (
        f"; {n_images} images >= {COMPILE_MIN_IMAGES}: torch.compile pays" if big else
        f"; {n_images} images: torch.compile would not pay (< {COMPILE_MIN_IMAGES} or no C++ compiler)")
    return NUMERICS[name], why


def compile_blocked(device_type: str) -> str | None:
    """Why ``torch.compile`` must not run here (None: it may).

    On CPU with ``ATEN_CPU_CAPABILITY`` set (the instruction-set switch of docs/reliability.md),
    inductor's generated code and ATen's pinned kernels disagree: EfficientNet-Lite0 predicted
    the same wrong top-5 for every photo under ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU
    (torch 2.14.1, 2026-12-06), and right ones eagerly.
    """
    import os

    cap = os.environ.get("ATEN_CPU_CAPABILITY", "")
    if device_type == "cpu" and cap:
        return f"ATEN_CPU_CAPABILITY={cap} is set, and compiled CPU code gave wrong predictions under it"
    return None


def maybe_compile(model, *, want: bool, device_type: str, what: str):
    """``torch.compile(model)`` when ``want`` and :func:`compile_blocked` allows it, else ``model`` (with a warning
    naming ``what`` runs eagerly and why)."""
    if not want:
        return model
    blocked = compile_blocked(device_type)
    if blocked:
        _log.warning("%s without torch.compile: %s", what, blocked)
        return model
    import torch

    return torch.compile(model, dynamic=False)

