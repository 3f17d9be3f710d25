"""A tiny synthetic split for the clean stage: manifest, three models' predictions, params, a fake CAM.

:func:`make_project` writes ``classes.tsv``, ``data/manifests/val.parquet``,
``data/predictions/val/{a,b,c}.parquet`` and ``params.yaml`` under a folder;
rows :data:`CONS_EXEMPT`, :data:`CONS_REMOVE` and :data:`CONS_NOBOX` carry
hand-made consensus evidence, :data:`BAD_ROW` and :data:`BAD_PRED_ROW` are
unreadable. :class:`FakeCam` stands in for the CAM exemption.
"""
import json

import numpy as np
import pandas as pd
import yaml

from imagenet_clean.classes import ClassList, write_classes
from imagenet_clean.config import parse_params
from imagenet_clean.io import write_table
from imagenet_clean.predictions import predictions_table, write_predictions

K = 8
WNIDS = tuple(f"n9000000{i}" for i in range(7)) + ("n90000010",)
MODELS = ("a", "b", "c")
CONS_EXEMPT, CONS_REMOVE, CONS_NOBOX = 0, 1, 2  # rows with hand-made consensus evidence
BAD_ROW, BAD_PRED_ROW = 3, 4


def _probs(rng, true, strength):
    n = len(true)
    logits = rng.normal(size=(n, K))
    logits[np.arange(n), true] += strength
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def make_project(tmp, *, n=160, seed=0, **over):
    """Write the split under ``tmp`` (params.yaml entries overridden by ``over``); returns ``(params, manifest, true labels)``."""
    rng = np.random.default_rng(seed)
    classes = ClassList(WNIDS, tuple(f"class {i}" for i in range(K)))
    write_classes(tmp / "classes.tsv", classes)
    true = np.arange(n) % K
    labels = true.copy()
    flip = rng.choice(np.arange(10, n), 16, replace=False)
    labels[flip] = (labels[flip] + 1 + rng.integers(0, K - 1, len(flip))) % K
    ids = [f"{WNIDS[t]}/img_{i:04d}.JPEG" for i, t in enumerate(true)]
    boxes = [[[1.0, 1.0, 30.0, 30.0]] if i % 2 == 0 or i == CONS_EXEMPT or i == CONS_REMOVE else [] for i in range(n)]
    boxes[CONS_NOBOX] = []
    status = np.array(["ok"] * n, object)
    status[BAD_ROW] = "error"
    manifest = pd.DataFrame({
        "sample_id": ids, "path": ids, "label": labels.astype(np.int64), "wnid": [WNIDS[lab] for lab in labels],
        "boxes": boxes, "width": np.full(n, 64, np.int32), "height": np.full(n, 64, np.int32),
        "size": np.full(n, 1000, np.int64), "mtime_ns": np.zeros(n, np.int64),
        "content_hash": [f"h{i:04d}" for i in range(n)], "status": status,
        "reason": ["" if s == "ok" else "truncated JPEG" for s in status],
    })
    write_table(tmp / "data/manifests/val.parquet", manifest,
                metadata={"root": "raw/val", "layout": "val", "split": "val", "classes": "classes.tsv", "num_classes": K})
    for mi, m in enumerate(MODELS):
        p = _probs(rng, true, 4.0)
        for r in (CONS_EXEMPT, CONS_REMOVE, CONS_NOBOX):
            lab = labels[r]
            if mi < 2:  # models a, b: the label is the least likely class -> top-5 miss
                q = np.full(K, 1.0)
                q[(lab + 1) % K] = 20.0
                q[lab] = 0.01
            else:       # model c: the label on top
                q = np.full(K, 1.0)
                q[lab] = 20.0
            p[r] = q / q.sum()
        st = np.array(["ok"] * n, object)
        if m == "b":
            st[BAD_PRED_ROW] = "error"
        fold = np.arange(n) % 4 if m == "c" else None
        order = rng.permutation(n) if m == "a" else np.arange(n)  # row order of a file may differ
        t = predictions_table(np.asarray(ids, object)[order], p[order], status=st[order],
                              reason=np.where(st == "ok", "", "decode failed")[order],
                              fold=None if fold is None else fold[order])
        write_predictions(tmp / f"data/predictions/val/{m}.parquet", t, model=m, arch="x", split="val", num_classes=K)
    raw = {
        "h1": "all", "h2": 3, "h3": 2,
        "dataset": {"classes": "classes.tsv", "merges": "embedded"},
        "splits": {"val": {"root": "raw/val", "layout": "val"}},
        "models": {m: {"arch": "resnet10t"} for m in MODELS},
    }
    raw.update(over)
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))  # for the `imagenet-clean clean` command
    return parse_params(raw), manifest, true


class FakeCam:
    """Exempts CONS_EXEMPT by its first model; records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, candidates, *, root, load_model, cfg, cache_dir):
        self.calls.append(dict(candidates=candidates.copy(), root=root, cfg=cfg, cache_dir=cache_dir))
        ex = [m[0] if sid.endswith(f"img_{CONS_EXEMPT:04d}.JPEG") else "" for sid, m in zip(candidates["sample_id"], candidates["models"])]
        scores = [json.dumps({m[0]: {"gradcam": 0.5 if e else 0.0}}) for e, m in zip(ex, candidates["models"])]
        return pd.DataFrame({"sample_id": candidates["sample_id"], "exempted_by": ex, "cam_scores": scores})


CLEAN_OUTPUTS = ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv", "metrics/cleanup/val.json")
"""What ``imagenet-clean clean --split val`` writes in a :func:`clean_project`."""


def clean_project(folder):
    """:func:`make_project`'s synthetic split (160 samples, three models' predictions), CAMs off: a seconds-long clean."""
    folder.mkdir(parents=True, exist_ok=True)
    make_project(folder, cam={"enabled": False})
    return folder
