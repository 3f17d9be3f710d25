"""The review app's data layer (review/data.py) on a folder dataset: class names as the user wrote them."""
from __future__ import annotations

import numpy as np
import pandas as pd

from folder_tree import make_tree
from imagenet_clean.classes import load_classes
from imagenet_clean.cleanup.ensemble import full_decisions
from imagenet_clean.data.ingest import ingest_split, write_manifest
from imagenet_clean.data.scan import scan_split
from imagenet_clean.io import write_json, write_table
from imagenet_clean.review.data import Filter, ReviewData


def test_folder_dataset_changes_show_class_names(tmp_path):
    root = tmp_path / "photos"
    make_tree(root)
    write_json(tmp_path / "data/scan/train.json", scan_split("train", root, layout="imagefolder", class_list=True))
    classes = load_classes(tmp_path / "data/scan/train.json")
    man, _ = ingest_split(root, layout="imagefolder", classes=classes)
    write_manifest(tmp_path / "data/manifests/train.parquet", man, root="photos", layout="imagefolder", split="train",
                   classes="data/scan/train.json", num_classes=len(classes))  # relative: the project's, as in params
    n = len(man)
    dec = pd.DataFrame({"action": ["keep"] * n, "new_label": man["label"].to_numpy(), "n_flagged": np.zeros(n, np.int64),
                        "c_s": np.zeros(n, np.int64), "cam_scores": ["{}"] * n, "exempted_by": [""] * n,
                        "rules": [[] for _ in range(n)], "flagged_models": [[] for _ in range(n)],
                        "candidates": [[] for _ in range(n)]})
    i = int(np.flatnonzero(man["sample_id"] == "bée/img0.png")[0])
    dec.loc[i, "action"], dec.loc[i, "new_label"] = "fix", classes.index("ant s")
    dec.at[i, "rules"] = ["cl_fix"]
    write_table(tmp_path / "data/decisions/train.parquet",
                full_decisions(man, dec, np.arange(n), np.full(n, "", dtype=object), classes),
                metadata={"models": "[]", "split": "train"})
    rows = ReviewData(tmp_path, "train").page(Filter())["rows"]
    assert [(r["sample_id"], r["label"]["name"], r["new"]["name"]) for r in rows] == [("bée/img0.png", "bée", "ant s")]
