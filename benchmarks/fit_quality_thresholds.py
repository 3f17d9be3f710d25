"""Set the quality rule's bounds (params.yaml quality.thresholds) from the embedded truth, by a fixed procedure.

Usage (in a project whose ``quality`` stage has run on the embedded data)::

    PYTHONPATH=src python benchmarks/fit_quality_thresholds.py [PROJECT]

Procedure (docs/embedded.md, "Image quality"): the positives are the training
split's images the generator made ``bad_quality`` or ``minuscule``
(``data/raw/truth.parquet``); every other training image is a negative (flips,
multi-digit scenes and synonyms included). The rule fires when any measure
lies beyond a bound. Bounds are added greedily: at each step, of every
(measure, side) in :data:`SIDES` and every cut between two adjacent training
values, the one that raises the rule's F1 on train the most is taken; ties in
F1 between neighbouring cuts (a plateau) resolve to the plateau's middle, the
cut farthest from both classes. It stops when no bound raises F1. The bounds
are then checked on val and V2, which took no part in choosing them.

Only the sides that name a quality problem are searched: dark and overexposed
(brightness min, max), washed out (contrast min), blurry (blur min), little
information (entropy min), noisy (noise max), no grain at all (noise min: an
image blown up from a thumbnail or posterized), a small object (object_size
min). Prints each step and the F1, precision and recall per split, then the
YAML block for params.yaml.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SIDES = {"brightness": ("min", "max"), "contrast": ("min",), "blur": ("min",), "entropy": ("min",),
         "noise": ("min", "max"), "object_size": ("min",)}
POSITIVE = ("bad_quality", "minuscule")


def fires(df: pd.DataFrame, bounds: dict) -> np.ndarray:
    f = np.zeros(len(df), bool)
    for (m, side), t in bounds.items():
        v = df[m].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            f |= (v < t) if side == "min" else (v > t)
    return f


def scores(df: pd.DataFrame, bounds: dict) -> dict:
    pos = df["problem"].isin(POSITIVE).to_numpy()
    f = fires(df, bounds)
    tp = int((f & pos).sum())
    p = tp / f.sum() if f.sum() else 0.0
    r = tp / pos.sum() if pos.sum() else 0.0
    return {"f1": 2 * p * r / (p + r) if p + r else 0.0, "precision": p, "recall": r, "fired": int(f.sum()),
            "tp": tp, "positives": int(pos.sum())}


def best_cut(df: pd.DataFrame, bounds: dict, m: str, side: str) -> tuple[float, float]:
    """(F1, cut) of the best bound on (m, side) given the others; a plateau of equal F1 resolves to its middle."""
    v = np.unique(df[m].dropna().to_numpy(np.float64))
    if len(v) < 2:
        return -1.0, float("nan")
    cuts = (v[1:] + v[:-1]) / 2
    f1 = np.array([scores(df, {**bounds, (m, side): t})["f1"] for t in cuts])
    best = f1.max()
    i = int(np.flatnonzero(f1 >= best - 1e-12)[0])
    j = i
    while j + 1 < len(cuts) and f1[j + 1] >= best - 1e-12:
        j += 1
    lo, hi = v[i], v[j + 1]  # the plateau spans the values between these two data points
    return float(best), float((lo + hi) / 2)


def fit(train: pd.DataFrame) -> dict:
    bounds: dict = {}
    current = 0.0
    while True:
        step = None
        for m, sides in SIDES.items():
            for side in sides:
                f1, cut = best_cut(train, {k: t for k, t in bounds.items() if k != (m, side)}, m, side)
                if f1 > current + 1e-9 and (step is None or f1 > step[0]):
                    step = (f1, m, side, cut)
        if step is None:
            return bounds
        current, m, side, cut = step
        bounds[(m, side)] = cut
        s = scores(train, bounds)
        print(f"  + {m} {side} {cut:.6g}: train F1 {s['f1']:.3f} (precision {s['precision']:.3f}, recall {s['recall']:.3f})")


def main(project: Path) -> None:
    truth = pd.read_parquet(project / "data/raw/truth.parquet")[["sample_id", "problem"]]
    data = {s: pd.read_parquet(project / f"data/quality/{s}.parquet").merge(truth, on="sample_id") for s in ("train", "val", "v2")}
    print("greedy bounds on train (positives: bad_quality and minuscule):")
    bounds = fit(data["train"])
    print("\nsplit  positives  fired  tp   precision  recall  F1")
    for s, df in data.items():
        r = scores(df, bounds)
        print(f"{s:6s} {r['positives']:9d} {r['fired']:6d} {r['tp']:4d}   {r['precision']:.3f}      {r['recall']:.3f}   {r['f1']:.3f}")
    print("\nper problem, share of images beyond a bound:")
    for s, df in data.items():
        f = fires(df, bounds)
        shares = df.assign(f=f).groupby("problem")["f"].mean().round(3).to_dict()
        print(f"  {s}: {shares}")
    print("\nquality:\n  enabled: true\n  thresholds:")
    for m in SIDES:
        b = {side: t for (mm, side), t in bounds.items() if mm == m}
        if b:
            inner = ", ".join(f"{k}: {float(format(v, '.4g'))}" for k, v in sorted(b.items()))
            print(f"    {m}: {{{inner}}}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
