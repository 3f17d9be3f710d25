"""The review app's project: :mod:`stage_project`'s synthetic split cleaned (fake CAMs), with image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


QUALITY_MEASURES = ("brightness", "contrast", "blur", "entropy", "noise", "object_size", "aspect_ratio", "grayscale")


def add_issue30_evidence(project: dict, *, seed: int = 1) -> dict:
    """Give a :func:`make_review_project` the evidence of issue 30, written directly (seeded, synthetic).

    * decisions with the ``labels`` column: two kept rows become ``relabel_set`` (rule ``label_set``), one kept
      row a removal by the rule ``quality`` (its ``reason`` the measures that fired);
    * ``data/quality/val.parquet``: every measure for every row (NaN for the unreadable one);
    * ``data/duplicates/``: ``val-val`` (one exact, one near pair), ``train-val`` (a leakage pair with a train
      image, with its manifest and file), ``val-v2`` empty, and the stage's two other files.

    Returns ``{"sets": [ids], "quality": id, "exact": (a, b), "near": (a, b), "leak": (train id, val id)}``.
    """
    import pyarrow as pa
    from PIL import Image

    from imagenet_clean.cleanup.duplicates import PAIR_COLUMNS
    from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
    from imagenet_clean.io import read_metadata, write_table

    tmp = project["tmp"]
    rng = np.random.default_rng(seed)
    path = tmp / "data/decisions/val.parquet"
    meta = read_metadata(path)
    dec = read_table(path)
    plain = dec.index[(dec["action"] == "keep") & dec["rules"].map(lambda r: len(r) == 0)].tolist()
    sets, quality = plain[:2], plain[2]
    labels = [[] for _ in range(len(dec))]
    for i, extra in zip(sets, (5, 6)):
        lab = int(dec.at[i, "label"])
        labels[i] = [lab, (lab + extra) % 8] if i == sets[0] else [(lab + extra) % 8, lab, (lab + 1) % 8]
        dec.at[i, "action"], dec.at[i, "new_label"], dec.at[i, "rules"] = "relabel_set", labels[i][0], ["label_set"]
    dec.at[quality, "action"], dec.at[quality, "rules"] = "remove", ["quality"]
    dec.at[quality, "reason"] = "image quality: contrast 0.0312 < min 0.06; entropy 2.1 < min 3"
    dec["labels"] = labels
    schema = pa.schema([*DECISIONS_SCHEMA, pa.field("labels", pa.list_(pa.int64()))])
    write_table(path, pa.Table.from_pandas(dec[schema.names], schema=schema, preserve_index=False), metadata=meta)

    man = read_table(tmp / "data/manifests/val.parquet")
    q = pd.DataFrame({"sample_id": man["sample_id"]})
    for m in QUALITY_MEASURES:
        q[m] = rng.uniform(4.0, 7.0, len(man)) if m == "entropy" else rng.uniform(0.1, 0.9, len(man))  # entropy: bits
    q.loc[q["sample_id"] == dec.at[quality, "sample_id"], ["contrast", "entropy"]] = [0.0312, 2.1]
    bad = man["status"] != "ok"
    q.loc[bad, list(QUALITY_MEASURES)] = np.nan
    q["status"] = man["status"].to_numpy()
    q["reason"] = np.where(bad, "truncated JPEG", "")
    write_table(tmp / "data/quality/val.parquet", q, metadata={"split": "val"})

    # the train split: a manifest and one image, a copy of a val image (leakage)
    ids = dec["sample_id"].tolist()
    changed = dec.loc[(dec["action"] != "keep") & (dec["sample_id"] != project["missing"])
                      & ~dec["rules"].map(lambda r: "unreadable" in list(r)), "sample_id"].tolist()
    leak_val = changed[0]
    train_id = "n90000000/train_0001.JPEG"
    (tmp / "raw/train/n90000000").mkdir(parents=True, exist_ok=True)
    Image.open(tmp / "raw/val" / leak_val).transpose(Image.FLIP_LEFT_RIGHT).save(tmp / "raw/train" / train_id)
    tm = man.iloc[:1].copy()
    tm["sample_id"], tm["path"], tm["content_hash"], tm["boxes"] = train_id, train_id, "t0001", [[]]
    write_table(tmp / "data/manifests/train.parquet", tm, metadata={"root": "raw/train", "split": "train", "classes": "classes.tsv"})

    exact, near = (changed[1], ids[60]), (ids[sets[0]], ids[61])

    def pairs(rows):
        return pd.DataFrame(rows, columns=list(PAIR_COLUMNS)).astype({"distance": np.float64})

    out = tmp / "data/duplicates"
    a, b = sorted(exact)
    c, d = sorted(near)
    write_table(out / "val-val.parquet", pairs([("val", a, "val", b, "exact", 0.0), ("val", c, "val", d, "near", 0.0123)]),
                metadata={"max_distance": 0.05, "k": 5})
    write_table(out / "train-val.parquet", pairs([("train", train_id, "val", leak_val, "near", 0.0071)]),
                metadata={"max_distance": 0.05, "k": 5})
    write_table(out / "val-v2.parquet", pairs([]), metadata={"max_distance": 0.05, "k": 5})
    write_table(out / "train-train.parquet", pairs([("train", train_id, "train", "n90000000/x.JPEG", "exact", 0.0)]),
                metadata={"max_distance": 0.05, "k": 5})  # no val image: not listed for val
    write_table(out / "no_features.parquet", pd.DataFrame({"split": ["val"], "sample_id": [ids[3]], "reason": ["x"]}))
    write_table(out / "removals.parquet", pd.DataFrame(columns=["split", "sample_id", "representative"], dtype=object))
    set_windows = _windows_file(tmp, meta, dec, {i: labels[i] for i in sets})
    return {"sets": [ids[i] for i in sets], "set_labels": [labels[i] for i in sets], "quality": ids[quality],
            "exact": exact, "near": near, "leak": (train_id, leak_val), "set_windows": set_windows}


SET_WINDOWS = [[0, 3], [0, 1, 3]]
"""Window of each class of the two sets in :func:`_windows_file`'s 2 x 2 grid (0 top left, 3 bottom right)."""


def _windows_file(tmp, meta: dict, dec: pd.DataFrame, sets: dict[int, list[int]]) -> dict[str, dict[int, list[int]]]:
    """The windows stage's file for val: every model finds each class of a set in its own window of a 2 x 2 grid;
    the decisions record the label-set settings. Returns ``{sample_id: {class: [window]}}``."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from imagenet_clean.io import read_metadata, write_table
    from imagenet_clean.stages.windows import WINDOWS_SCHEMA

    models = json.loads(meta["models"])
    man = read_table(tmp / "data/manifests/val.parquet").set_index("sample_id").loc[dec["sample_id"]]
    n, m, w, t = len(dec), len(models), 4, 3
    cls, prob = np.full((n, m, w, t), -1, np.int16), np.zeros((n, m, w, t), np.float32)
    status = np.full(n, "gated", dtype=object)
    where: dict[str, dict[int, list[int]]] = {}
    for (row, labels), wins in zip(sets.items(), SET_WINDOWS):
        status[row] = "ok"
        for c, win in zip(labels, wins):
            cls[row, :, win, 0], prob[row, :, win, 0] = c, 0.9
        where[dec.at[row, "sample_id"]] = {c: [win] for c, win in zip(labels, wins)}
    ok = status == "ok"
    df = pd.DataFrame({"sample_id": dec["sample_id"], "status": status, "reason": np.where(ok, "", "gated"),
                       "width": np.where(ok, man["width"], 0), "height": np.where(ok, man["height"], 0),
                       "classes": list(cls.reshape(n, -1)), "probs": list(prob.reshape(n, -1))})
    write_table(tmp / "data/windows/val.parquet", pa.Table.from_pandas(df, schema=WINDOWS_SCHEMA, preserve_index=False),
                metadata={"split": "val", "shape": f"{m},{w},{t}", "models": json.dumps(models), "window": "0.5", "stride": "0.5"})
    path = tmp / "data/decisions/val.parquet"
    write_table(path, pq.read_table(path), metadata={**read_metadata(path), "label_sets": json.dumps(
        {"window": 0.5, "stride": 0.5, "min_prob": 0.55, "min_models": 0.8, "max_confidence": 0.5, "extend_prob": 0.5,
         "max_overlap": 0.1})})
    return where
