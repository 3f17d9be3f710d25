"""A tiny test model entry and seeded images with their manifest, for the predict tests and the kill loops."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from imagenet_clean.config import ModelConfig

TINY = ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32))


def make_images(root, n=7, seed=0):
    """n small seeded images (JPEG and PNG, varied sizes) and their manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        h, w = int(rng.integers(24, 60)), int(rng.integers(24, 60))
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        name = f"c{i % 3}/img{i}.{'JPEG' if i % 2 == 0 else 'png'}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / name)
        rows.append((name, name, i % 3, "ok", ""))
    return pd.DataFrame(rows, columns=["sample_id", "path", "label", "status", "reason"])
