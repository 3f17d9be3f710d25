"""The pieces of ``imagenet-clean tune`` that need no project: threshold grids, what agrees with a verdict,
Wilson intervals (:mod:`imagenet_clean.review.tune` uses them)."""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..cleanup.rules import check_resolved, resolved
from ..config import ConfigError, Thresholds, is_threshold
from ..constants import WILSON_Z

TUNABLE = ("h1", "h2", "h3")
"""The thresholds ``tune`` varies (``fn`` changes confident learning itself: an experiment, not a replay)."""

# What the reviewer says a sample should become: keep it with its label, give it class ``cls``, remove it,
# or give it a label set (issue 30: the machine's set accepted, or the reviewer's own set).
KEEP, RELABEL, REMOVE, SET = 0, 1, 2, 3

AGREES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "keep": lambda new, want, cls: want == KEEP,
    "fix": lambda new, want, cls: (want == RELABEL) & (new == cls),
    "remove": lambda new, want, cls: want != KEEP,
    "relabel_set": lambda new, want, cls: want == SET,
}
"""Per machine action: does a decision (its new label, after merges) agree with what the reviewer wants
(``want``, ``cls`` after merges)? The one place that knows the actions. A label set agrees with a reviewer
who wants a set (an accepted set, or one the reviewer edited: the image shows several classes, whichever
they are); a removal agrees with every wish but keeping the label (as the paper scores it, an image with
several classes is one a single label does not fit)."""


class TuneError(ValueError):
    """Inputs ``tune`` refuses (no or too few verdicts, stale verdicts, a bad grid); one line."""


# ------------------------------------------------------------------ statistics


def wilson_interval(k: int, n: int, *, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (``(0, 1)`` for ``n = 0``)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


# ------------------------------------------------------------------ grid


def parse_value(text: str) -> int | float | str:
    """A threshold value as params.yaml spells it: ``3``, ``0.5`` or ``all``."""
    t = text.strip()
    if t == "all":
        return t
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise TuneError(f"grid value {t!r} is not a number or \"all\"") from None


def parse_grid(params_text: str, grid: Sequence[str], *, current: Thresholds, n_models: int) -> dict[str, list]:
    """The values to try per threshold: ``--param h1,h2,h3`` (each: every count 1..|M|) and ``--grid h3=2,3,4``.

    Raises:
        TuneError: an unknown threshold, or a value outside its valid range (the message gives the range).
    """
    names = [p.strip() for p in params_text.split(",") if p.strip()]
    out: dict[str, list] = {}
    for item in grid:
        key, sep, vals = item.partition("=")
        key = key.strip()
        if not sep or not vals.strip():
            raise TuneError(f"--grid {item!r}: expected NAME=V1,V2,... (e.g. h3=2,3,4)")
        if key not in TUNABLE:
            raise TuneError(f"--grid {item!r}: {key!r} is not a threshold tune varies ({', '.join(TUNABLE)})")
        out[key] = [parse_value(v) for v in vals.split(",") if v.strip()]
    for p in names:
        if p not in TUNABLE:
            raise TuneError(f"--param {p!r} is not a threshold tune varies ({', '.join(TUNABLE)})")
        out.setdefault(p, list(range(1, n_models + 1)))
    for key, vals in out.items():
        for v in vals:
            if not is_threshold(v) and v != "all":
                raise TuneError(f"--grid {key}={v!r} is outside the valid range: a count in 1..{n_models}, "
                                f"a fraction in (0, 1) or \"all\"")
            try:
                check_resolved(dataclasses.replace(current, **{key: v}), n_models)
            except ConfigError as e:
                raise TuneError(f"--grid {e}") from None
        out[key] = list(dict.fromkeys(vals))
    if not out:
        raise TuneError(f"nothing to vary: give --param (some of {', '.join(TUNABLE)}) or --grid NAME=V1,V2,...")
    return out


def settings(grid: Mapping[str, list], current: Thresholds, n_models: int) -> list[Thresholds]:
    """Every combination of the grid's values, the other thresholds at their current values; the current first.

    Settings that need the same numbers of models as an earlier one are left out.
    """
    keys = list(grid)
    out = [current]
    seen = {_resolved_key(current, n_models)}
    now = _resolved_key(current, n_models)
    for combo in itertools.product(*(grid[k] for k in keys)):
        t = dataclasses.replace(current, **dict(zip(keys, combo)))
        key = _resolved_key(t, n_models)
        # a value that needs the current number of models keeps the current spelling ("all", not 5)
        t = dataclasses.replace(t, **{k: getattr(current, k) for k, a, b in zip(TUNABLE, key, now) if a == b})
        if key not in seen:  # "all" and |M|, or 0.5 and a count it resolves to, are one setting
            seen.add(key)
            out.append(t)
    return out


def _resolved_key(t: Thresholds, n_models: int) -> tuple:
    r = resolved(t, n_models)
    return tuple(math.ceil(r[k] - 1e-9) for k in TUNABLE)


def setting_key(t: Thresholds) -> dict:
    return {k: getattr(t, k) for k in TUNABLE}


def agrees(decisions: pd.DataFrame, pos: np.ndarray, want: np.ndarray, cls: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Whether each reviewed sample's decision agrees with the reviewer (:data:`AGREES`)."""
    act = decisions["action"].to_numpy()[pos]
    new = lut[decisions["new_label"].to_numpy(np.int64)[pos]]
    label = lut[decisions["label"].to_numpy(np.int64)[pos]]
    act = np.where((act == "fix") & (new == label), "keep", act)  # a fix to a merge partner changes nothing
    out = np.zeros(len(pos), bool)
    for a in np.unique(act):
        if a not in AGREES:
            raise TuneError(f"tune does not know how to score the action {a!r} (review/agreement.py AGREES)")
        m = act == a
        out[m] = AGREES[a](new[m], want[m], cls[m])
    return out
