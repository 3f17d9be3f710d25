"""Cleanup thresholds (paper section 3): their type, their check, and their resolution to numbers of models.

Shared by :mod:`imagenet_clean.config` (which validates params.yaml) and
:mod:`imagenet_clean.cleanup.rules` (which applies them); neither imports the
other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

from .constants import FN_SCOPES
from .errors import ConfigError

Threshold = Union[int, float, str]
"""An integer count of models, a fraction in (0, 1) of |M|, or ``"all"`` for |M|."""


def is_threshold(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    if isinstance(v, float):
        return 0.0 < v < 1.0
    return v == "all"


THRESHOLD_CHECK = {"check": is_threshold, "allowed": 'an integer >= 1 (a count of models), a float in (0, 1) (a fraction of |M|) or "all"'}
_FN = {"check": lambda v: 0.0 < float(v) <= 1.0, "allowed": "a number in (0, 1]"}
FN_SCOPE_CHECK = {"check": lambda v: v in FN_SCOPES, "allowed": " or ".join(map(repr, FN_SCOPES))}


@dataclass(frozen=True)
class Thresholds:
    """Cleanup thresholds (paper section 3); see :func:`imagenet_clean.cleanup.rules.resolve_threshold`."""

    fn: float = field(default=1.0, metadata=_FN)
    h1: Threshold = field(default=0.5, metadata=THRESHOLD_CHECK)
    h2: Threshold = field(default=3, metadata=THRESHOLD_CHECK)
    h3: Threshold = field(default=0.6666, metadata=THRESHOLD_CHECK)
    # the paper's ensemble size for this split when params threshold_floor is on (None: no floor)
    floor_size: int | None = None
    # where fn applies (constants.FN_SCOPES): cleanlab's per-cell arithmetic or the split's flags as a whole
    fn_scope: str = field(default="cell", metadata=FN_SCOPE_CHECK)


def check_resolved(thresholds: Thresholds, n_models: int, *, sources: dict[str, str] | None = None) -> dict[str, float]:
    """``{"fn", "h1", "h2", "h3"}`` with h1-h3 as real numbers of models, checked against |M|.

    A rule passes at ``count >= h``, so the number of models it needs is
    ``ceil(h)``; it must lie in 1..|M|. Below 1 a sample that no model flagged
    would pass; above |M| the rule could never fire (a silent no-op). Fractions
    in (0, 1) and ``"all"`` always resolve within range; an integer count above
    |M| (``h2: 3`` with two models) is refused.

    Args:
        thresholds: The split's thresholds.
        n_models: The ensemble size |M|.
        sources: Params key of each threshold, for the message (default: its name).

    Raises:
        ConfigError: a threshold needs fewer than 1 or more than |M| models; the
            message gives the resolved number, e.g. ``splits.val.h2 = 3 resolves
            to 3 models, more than the 2 models of the ensemble``.
    """
    if n_models < 1:
        raise ConfigError(f"the ensemble has {n_models} models; params.yaml models needs at least one")
    out = {"fn": float(thresholds.fn)}
    for k in ("h1", "h2", "h3"):
        h = getattr(thresholds, k)
        key = (sources or {}).get(k, k)
        key = k if key == "default" else key
        try:
            r = resolve_threshold(h, n_models, floor_size=thresholds.floor_size)
        except ConfigError as e:
            raise ConfigError(f"{key}: {e}") from None
        need = math.ceil(r - 1e-9)
        if need < 1 or need > n_models:
            side = "fewer than 1 model" if need < 1 else f"more than the {n_models} models of the ensemble"
            raise ConfigError(f"{key} = {h!r} resolves to {r:g} models, {side} (|M| = {n_models}); "
                              f"give a count in 1..{n_models}, a fraction in (0, 1) or \"all\"")
        out[k] = r
    return out


def resolve_threshold(h: Threshold, n_models: int, *, floor_size: int | None = None) -> float:
    """A threshold as a real number of models, to be compared as ``count >= h``.

    Args:
        h: An integer count, a fraction in (0, 1) of ``n_models``, or ``"all"``.
        n_models: The ensemble size |M|.
        floor_size: The paper's ensemble size for the split (``threshold_floor``):
            a fraction or ``"all"`` then needs at least the models it needed
            with that many, capped at ``n_models``. ``h2 = 0.5`` with 5 models
            and the paper's 8: max(2.5, min(5, 4)) = 4. Integers are counts
            already and stay as they are.
    """
    if h == "all":
        return float(n_models)
    if isinstance(h, bool) or not is_threshold(h):
        raise ConfigError(f"threshold {h!r} is not {THRESHOLD_CHECK['allowed']}")
    if isinstance(h, int):
        return float(h)
    r = float(h) * n_models
    return max(r, min(float(n_models), float(h) * floor_size)) if floor_size else r


def resolved(thresholds: Thresholds, n_models: int) -> dict[str, float]:
    """``{"h1": ..., "h2": ..., "h3": ...}`` as real numbers of models (plus ``fn``), floored by ``floor_size``."""
    return {
        "fn": float(thresholds.fn),
        **{h: resolve_threshold(getattr(thresholds, h), n_models, floor_size=thresholds.floor_size)
           for h in ("h1", "h2", "h3")},
    }
