"""Shared pytest fixtures: tiny class lists and image files written on demand."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_clean.classes import ClassList

# Stages append wall-clock figures to logs/timing.jsonl of the project they run in; tests keep no such log
# (stage calls made in-process would otherwise write into the repository's own logs/).
os.environ["IMAGENET_CLEAN_TIMING_LOG"] = ""


@pytest.fixture
def classes3() -> ClassList:
    """Three ImageNet-format classes."""
    return ClassList(("n00000001", "n00000002", "n00000003"), ("one", "two", "three"))


@pytest.fixture
def write_image():
    """``write_image(path, size=(w, h), mode="RGB", format="JPEG", seed=0) -> Path``: a small seeded image file."""

    def write(path, size=(24, 16), mode="RGB", format="JPEG", seed=0, **save_kw) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(arr).convert(mode)
        im.save(path, format=format, **save_kw)
        return path

    return write
