"""Progress bars: counts and rates on a terminal, silent otherwise (CI, DVC logs)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """True when stderr is a terminal and ``IMAGENET_CLEAN_PROGRESS`` is not ``0``."""
    env = os.environ.get("IMAGENET_CLEAN_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar with count and rate, disabled when not on a terminal."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(), dynamic_ncols=True)
