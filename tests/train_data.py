"""A tiny ImageNet train-layout folder for training and cross-validation tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_dataset(root: Path, *, n_per_class: int = 12, classes: int = 3, size: int = 32, seed: int = 0) -> pd.DataFrame:
    """An ImageNet train-layout folder of coloured-square images; returns its manifest rows."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for c in range(classes):
        wnid = f"n{c:08d}"
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            lo = int(rng.integers(2, size // 2))
            img[lo : lo + size // 3, lo : lo + size // 3, c] = 255
            rel = f"{wnid}/{wnid}_{i}.JPEG"
            Image.fromarray(img).save(root / rel, quality=90)
            rows.append({"sample_id": rel, "path": rel, "label": c, "wnid": wnid, "status": "ok", "reason": ""})
    return pd.DataFrame(rows)
