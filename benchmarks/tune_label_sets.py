"""Choose the label-set settings on the embedded truth: window grids x vote thresholds x the gate x regions apart.

Reads one or more finished embedded runs (their manifests, full models,
prediction files and ``data/raw/truth.parquet``; say, the same commit under two
CPU families' numerics), computes the window evidence of every split for each
grid with the stage's own code (:func:`imagenet_clean.models.windows.window_topk`),
then scores every setting with the score stage's own function
(:func:`imagenet_clean.evaluate.score_sets.score_label_sets`) on decisions where
only the label-set rule acts (every other row is kept with its label).

Rule (``--rule margin``, the default since 2026-12-07): the setting with the
largest smallest margin over the two goals on train, min(P - 0.8, R - 0.7),
taken over every run given (the worst run's margin); ties go to the coarser
grid. Val and V2 are the check. The earlier rule (``--rule precision``: the
largest train recall among settings whose train precision is >= --min-precision,
0.85) picks settings at the edge of its precision bar, and a figure at an edge
moves across with the numerics (docs/label-sets.md).

    python benchmarks/tune_label_sets.py --project RUN [RUN ...] [--grids 0.4375:0.14] [--max-overlap 1 0 0.05 0.1]
"""
from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "v2")


def window_evidence(params, ws, split: str, window: float, stride: float):
    from imagenet_clean.io import read_metadata, read_table
    from imagenet_clean.models.factory import load_trained
    from imagenet_clean.models.windows import window_topk
    from imagenet_clean.stages.common import project_classes, split_root

    man = read_table(ws.manifest(split))
    meta = read_metadata(ws.manifest(split))
    k = len(project_classes(meta, params, ws))
    models = [load_trained(m, params.models[m], num_classes=k, fold=-1, models_dir=ws.models) for m in params.models]
    ok = man["status"] == "ok"
    cls, prob, _, sizes = window_topk(models, split_root(meta, params, split, ws), man.loc[ok, "path"].tolist(),
                                      window=window, stride=stride, batch_size=64, max_pixels=params.ingest.max_pixels,
                                      desc=f"{split} {window}:{stride}")
    return man.loc[ok, ["sample_id", "label"]].reset_index(drop=True), cls, prob, sizes


def whole_image_confidence(params, ws, split: str, ids, lut) -> np.ndarray:
    from imagenet_clean.cleanup.confident import top_probability
    from imagenet_clean.io import read_table

    out = []
    for m in params.models:
        t = read_table(ws.predictions(split, m), columns=["sample_id", "probs"]).set_index("sample_id").loc[ids]
        out.append(top_probability(np.stack(t["probs"].to_numpy()).astype(np.float32), merge_lut=lut))
    return np.stack(out)


def run_evidence(project: str, grids: list[str]):
    """One run's ``(lut, truth, {grid: ({split: (rows, classes, probs, sizes, whole-image confidence)}, seconds)})``."""
    from imagenet_clean.cleanup.merges import load_merges, merge_index
    from imagenet_clean.config import load_params
    from imagenet_clean.io import read_table
    from imagenet_clean.stages.common import merge_spec, project_classes
    from imagenet_clean.workspace import Workspace

    old = os.getcwd()
    os.chdir(project)
    try:
        params = load_params("params.yaml")
        ws = Workspace()
        classes = project_classes({}, params, ws)
        lut = merge_index(load_merges(merge_spec(params, ws), classes), classes)
        truth = read_table(params.dataset.truth)
        out = {}
        for grid in grids:
            window, stride = (float(v) for v in grid.split(":"))
            t0 = time.perf_counter()
            ev = {}
            for split in SPLITS:
                man, cls, prob, sizes = window_evidence(params, ws, split, window, stride)
                ev[split] = (man, cls, prob, sizes, whole_image_confidence(params, ws, split, man["sample_id"], lut))
            out[grid] = (ev, time.perf_counter() - t0)
        return lut, truth, out
    finally:
        os.chdir(old)


def score_setting(ev, lut, truth, *, window: float, stride: float, min_prob: float, min_models: int, gate: float,
                  extend: float, max_overlap: float) -> dict:
    """Label precision and recall per split of one setting, only the label-set rule acting."""
    from imagenet_clean.cleanup.labelsets import ambiguous, apart, class_windows, extend_sets, found_classes
    from imagenet_clean.evaluate.score_sets import score_label_sets

    row = {}
    for split in SPLITS:
        man, cls, prob, sizes, conf = ev[split]
        found = class_windows(cls, prob, min_prob=min_prob, min_models=min_models, merge_lut=lut)
        far = apart(found, sizes, window=window, stride=stride, max_overlap=max_overlap)
        sets = [list(f) if ok else [] for f, ok in zip(found, far)]
        if extend < min_prob:
            sets = extend_sets(sets, found_classes(cls, prob, min_prob=extend, min_models=min_models, merge_lut=lut))
        emit = np.array([len(s) >= 2 for s in sets], bool) & ambiguous(conf, max_confidence=gate)
        dec = pd.DataFrame({"sample_id": man["sample_id"], "action": np.where(emit, "relabel_set", "keep"),
                            "new_label": [s[0] if e else lab for s, e, lab in zip(sets, emit, man["label"])],
                            "rules": [[] for _ in range(len(man))],
                            "labels": [list(s) if e else [] for s, e in zip(sets, emit)]})
        sc = score_label_sets(dec, truth[truth["split"] == split], merge_lut=lut)
        row[f"{split}_p"], row[f"{split}_r"] = sc["labels"]["precision"], sc["labels"]["recall"]
        row[f"{split}_sets"] = sc["sets"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, nargs="+", help="one or more finished embedded runs")
    ap.add_argument("--grids", nargs="+", default=["0.4375:0.1875", "0.4375:0.14", "0.375:0.156", "0.5:0.125"])
    ap.add_argument("--min-prob", nargs="+", type=float, default=[0.5, 0.55, 0.6, 0.7])
    ap.add_argument("--min-models", nargs="+", type=int, default=[3, 4, 5])
    ap.add_argument("--max-confidence", nargs="+", type=float, default=[0.4, 0.5, 0.6, 0.7, 1.0])
    ap.add_argument("--extend-prob", nargs="+", type=float, default=[0.5, 1.0], help="the set's looser level (>= min_prob: none)")
    ap.add_argument("--max-overlap", nargs="+", type=float, default=[1.0, 0.0, 0.05, 0.1], help="IoU of windows apart (1: no check)")
    ap.add_argument("--rule", choices=("margin", "precision"), default="margin")
    ap.add_argument("--min-precision", type=float, default=0.85, help="--rule precision's bar")
    ap.add_argument("--out", help="write every setting's figures here (csv)")
    args = ap.parse_args()

    runs = [run_evidence(p, args.grids) for p in args.project]
    rows = []
    for grid in args.grids:
        window, stride = (float(v) for v in grid.split(":"))
        for pmin, mmin, gate, ext, over in itertools.product(args.min_prob, args.min_models, args.max_confidence,
                                                             args.extend_prob, args.max_overlap):
            if ext > pmin and ext != max(args.extend_prob):
                continue  # the looser level must be looser; the largest value stands for "no extension"
            setting = {"window": window, "stride": stride, "windows": runs[0][2][grid][0]["train"][1].shape[2],
                       "min_prob": pmin, "min_models": mmin, "max_confidence": gate,
                       "extend_prob": ext if ext < pmin else None, "max_overlap": over}
            for r, (lut, truth, evidence) in enumerate(runs):
                ev, seconds = evidence[grid]
                row = score_setting(ev, lut, truth, window=window, stride=stride, min_prob=pmin, min_models=mmin,
                                    gate=gate, extend=ext, max_overlap=over)
                rows.append({**setting, "run": r, **row, "evidence_s": round(seconds, 1),
                             "margin": min(row["train_p"] - 0.8, row["train_r"] - 0.7)})
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    keys = ["window", "stride", "windows", "min_prob", "min_models", "max_confidence", "extend_prob", "max_overlap"]
    worst = df.fillna({"extend_prob": -1}).groupby(keys, sort=False).agg(
        margin=("margin", "min"), train_p=("train_p", "min"), train_r=("train_r", "min")).reset_index()
    pd.set_option("display.width", 250)
    if args.rule == "margin":
        best = worst.sort_values(["margin", "windows"], ascending=[False, True]).iloc[0]
        print("chosen (largest smallest train margin min(P - 0.8, R - 0.7) over the runs):")
    else:
        ok = worst[worst["train_p"] >= args.min_precision]
        if not len(ok):
            print(f"no setting reaches train precision {args.min_precision} on every run")
            return
        best = ok.sort_values(["train_r", "train_p", "windows"], ascending=[False, False, True]).iloc[0]
        print(f"chosen (largest train recall with train precision >= {args.min_precision} on every run):")
    pick = (df.fillna({"extend_prob": -1})[keys] == best[keys]).all(axis=1)
    print(df[pick].drop(columns=keys[:3]).to_string(index=False))
    print(worst.sort_values("margin", ascending=False).head(15).to_string(index=False))


if __name__ == "__main__":
    main()
