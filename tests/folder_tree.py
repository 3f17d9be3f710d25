"""A small seeded ImageFolder tree for the folder-dataset tests (class names with spaces and unicode, nested folders)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("ant s", "bée", "cat")


def write_image(path: Path, seed: int, *, suffix: str = ".png") -> Path:
    """A 24x20 seeded RGB image at ``path`` (its format from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def make_tree(root: Path, *, per_class: int = 4, classes=CLASSES, seed: int = 0) -> list[str]:
    """``<class>/img<i>.png`` and ``<class>/sub/img<i>.JPG`` files; their relative paths, sorted."""
    rels = []
    for c, cls in enumerate(classes):
        for i in range(per_class):
            rel = f"{cls}/sub/img{i}.JPG" if i % 2 else f"{cls}/img{i}.png"
            write_image(root / rel, seed * 1000 + c * 100 + i)
            rels.append(rel)
    return sorted(rels)
