"""Choose ``duplicates.max_distance`` (and the models whose features are pooled) from injected copies' truth.

Run in a project generated with copies (``generate.noise.exact_copies`` /
``near_copies`` above 0) whose full models are trained (``fit``)::

    PYTHONPATH=src python benchmarks/tune_duplicates.py --project DIR [--models vgg,resnet] [--goal 0.9]

For each feature choice (every model alone, then all pooled) it searches once at
a wide distance, then prints precision and recall of the found pairs against the
truth at each distance of a grid, and the largest distance whose precision still
meets ``--goal`` (the widest net that stays precise) and the distance of the best F1. Nothing is hand-picked.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def f1_score(c: dict) -> float:
    p, r = c["precision"] or 0.0, c["recall"] or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def f(v) -> str:
    return f"{v:.3f}" if v is not None else "  -  "


GRID = [round(float(v), 5) for v in np.geomspace(0.0005, 0.2, 27)]  # 0.0005 .. 0.2, about 26 % apart


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--models", default="", help="comma list (default: every model in the project's params.yaml)")
    ap.add_argument("--goal", type=float, default=0.9)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--features", default="", help="map or pooled (default: the project's duplicates.features)")
    args = ap.parse_args()

    from imagenet_clean.cleanup.duplicates import distance_curve, exact_duplicates, merge_pairs, near_duplicates, pool_models, truth_pairs
    from imagenet_clean.config import load_params
    from imagenet_clean.io import read_table
    from imagenet_clean.stages.duplicates import _model_features, _splits
    from imagenet_clean.workspace import Workspace

    os.chdir(args.project)
    params = load_params("params.yaml")
    if args.features:
        from dataclasses import replace

        params = replace(params, duplicates=replace(params.duplicates, features=args.features))
    ws = Workspace(Path("."))
    splits = _splits(params, ws)
    manifests = {s: read_table(ws.manifest(s), columns=["sample_id", "path", "status", "reason", "content_hash"]) for s in splits}
    import pandas as pd

    exact = exact_duplicates({s: pd.Series(m["content_hash"].to_numpy(), index=m["sample_id"].astype(str)) for s, m in manifests.items()})
    truth = read_table(ws.resolve(params.dataset.truth))
    tp = truth_pairs(truth[truth["split"].isin(splits)])
    models = [m for m in args.models.split(",") if m] or list(params.models)
    choices = [[m] for m in models] + ([models] if len(models) > 1 else [])
    report = {}
    per_model, seconds = {}, {}
    for m in models:  # each model's features once; the choices pool them
        t0 = time.perf_counter()
        per_model[m] = _model_features(params, ws, m, manifests)
        seconds[m] = time.perf_counter() - t0
    for choice in choices:
        feats = {s: pool_models([per_model[m][s][:2] for m in choice]) for s in manifests}
        t_feat = sum(seconds[m] for m in choice)
        t0 = time.perf_counter()
        near = near_duplicates(feats, max_distance=max(GRID), k=args.k)
        t_nn = time.perf_counter() - t0
        curve = distance_curve(merge_pairs(exact, near), tp, GRID)
        ok = [c for c in curve if c["precision"] is not None and c["precision"] >= args.goal]
        best = max(ok, key=lambda c: c["max_distance"]) if ok else None
        f1 = max(curve, key=f1_score)
        name = "+".join(choice)
        report[name] = {"curve": curve, "chosen": best, "best_f1": f1, "features_s": round(t_feat, 1), "search_s": round(t_nn, 2),
                        "n": int(sum(len(ids) for ids, _ in feats.values())), "dim": int(next(iter(feats.values()))[1].shape[1])}
        print(f"\n{name}: {report[name]['n']} vectors x {report[name]['dim']}, features {t_feat:.1f} s, search {t_nn:.2f} s")
        print(f"  {'max_distance':>12} {'found':>6} {'true':>5} {'P':>6} {'R':>6} {'near P':>7} {'near R':>7}")
        for c in curve:
            print(f"  {c['max_distance']:>12} {c['found']:>6} {c['true']:>5} {f(c['precision']):>6} {f(c['recall']):>6} "
                  f"{f(c['near_precision']):>7} {f(c['near_recall']):>7}")
        print(f"  largest max_distance with precision >= {args.goal}: {best and best['max_distance']} "
              f"(recall {best and best['recall']}); best F1 at {f1['max_distance']} (P {f1['precision']}, R {f1['recall']})")
    Path(f"tune_duplicates_{params.duplicates.features}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
