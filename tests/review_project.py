"""The review app's project: :mod:`stage_project`'s synthetic split cleaned (fake CAMs), with image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imagenet_clean.io import read_table
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import FakeCam, make_project


def make_review_project(tmp: Path) -> dict:
    """:func:`stage_project.make_project` cleaned (fake CAMs), with an image for every row but the last change."""
    params, manifest, _ = make_project(tmp)
    clean_stage.run(params, Workspace(tmp), "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    dec = read_table(tmp / "data/decisions/val.parquet")
    from PIL import Image

    rng = np.random.default_rng(0)
    changed = dec.loc[dec["action"] != "keep", "sample_id"].tolist()
    missing = changed[-1]
    for sid in manifest["sample_id"]:
        if sid == missing:
            continue
        p = tmp / "raw/val" / sid
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    return {"tmp": tmp, "params": params, "dec": dec, "missing": missing}
