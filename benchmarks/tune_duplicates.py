"""Choose ``duplicates.features``, the models and ``max_distance`` from an existing run's injected copies.

Reads (never writes) a project whose ``generate`` injected copies
(``generate.noise.exact_copies`` / ``near_copies`` above 0) and whose full
models are trained (``fit``): its params.yaml, ``data/manifests``,
``data/models`` and the truth. No stage is rerun::

    PYTHONPATH=src python benchmarks/tune_duplicates.py --project /path/to/run \\
        [--features map,pooled] [--cache /tmp/feats] [--out /tmp/tune.json] [--goal 0.9]

For each feature kind it computes every model's features once (``--cache``
keeps them for a rerun on the same run), then for every subset of the models
searches once at the widest distance of a grid (0.001 to 0.2, 61 distances about
9 % apart, ``k`` neighbours as the stage does) and scores the kept pairs at each
distance against the truth: precision and recall overall, per kind (``exact``,
``near``), per scope (``within`` a split, ``across`` splits) and near pairs per
scope.

The rule (written before the figures were read, docs/duplicates.md):

1. a distance's *goal score* is the smallest of precision and recall over the
   groups the issue's goal names (exact, near, within, across): the goal is
   met when it is >= ``--goal``;
2. per feature choice, ``max_distance`` is the middle (geometric, snapped to
   the grid) of the run of grid distances around the best goal score whose
   goal score meets ``--goal`` (a margin on both sides for another seed's
   data); where none meets it, the middle of the run with the best score;
3. with every model (``duplicates.models: []``), the feature kind and
   thumbnail side (``duplicates.pixels``: 0 = off, 8, 16) of the highest goal
   score are shipped (a tie goes to the first in the order map, pooled and
   0, 8, 16); a subset of the models replaces all of them only if its goal
   score is at least ``--margin`` (0.03) higher *and* all of them miss the goal.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

GRID = [round(float(v), 5) for v in np.geomspace(0.001, 0.2, 61)]
GROUPS = ("exact", "near", "within", "across")
"""The groups whose precision and recall the issue's goal (>= 0.9) names."""


def scores_at(found: pd.DataFrame, truth: pd.DataFrame, d: float) -> dict:
    """score_pairs_detail of the pairs kept at ``d`` (exact pairs always): per kind, per scope, near pairs per scope."""
    from imagenet_clean.cleanup.duplicates import score_pairs_detail

    return score_pairs_detail(found[(found["kind"] == "exact") | (found["distance"] <= d)], truth)


def goal_score(s: dict) -> float:
    """The smallest precision or recall over :data:`GROUPS` (undefined counts as 0)."""
    return min(min(s[g]["precision"] or 0.0, s[g]["recall"] or 0.0) for g in GROUPS)


def pick_distance(curve: list[dict], goal: float) -> dict:
    """The grid distance in the middle of the run around the best goal score that meets ``goal`` (else of the best run)."""
    best = max(c["goal"] for c in curve)
    i = next(j for j, c in enumerate(curve) if c["goal"] == best)
    level = goal if best >= goal else best
    lo, hi = i, i
    while lo > 0 and curve[lo - 1]["goal"] >= level:
        lo -= 1
    while hi + 1 < len(curve) and curve[hi + 1]["goal"] >= level:
        hi += 1
    mid = float(np.sqrt(curve[lo]["max_distance"] * curve[hi]["max_distance"]))
    k = min(range(lo, hi + 1), key=lambda q: abs(np.log(curve[q]["max_distance"] / mid)))
    return {**curve[k], "band": [curve[lo]["max_distance"], curve[hi]["max_distance"]], "best_goal": best}


def removal_distance(curve: list[dict], max_distance: float) -> float | None:
    """``remove_max_distance``: the largest grid distance up to ``max_distance`` at which every found within-split pair is true."""
    ok = [c["max_distance"] for c in curve if c["max_distance"] <= max_distance and c["scores"]["within"]["precision"] == 1.0]
    return max(ok) if ok else None


def thumbnails(params, ws, manifests: dict, side: int, cache: Path | None) -> dict:
    """``split -> (ids, thumbnails, bad)`` at ``side`` (the stage's pixel features), from ``cache`` when it holds them."""
    from imagenet_clean.stages.duplicates import _pixel_features

    f = cache / f"pixels{side}.npz" if cache else None
    if f is not None and f.is_file():
        z = np.load(f, allow_pickle=True)
        return {s: (list(z[f"{s}_ids"]), z[f"{s}_x"], dict(z[f"{s}_bad"].item())) for s in manifests}
    out = _pixel_features(replace(params, duplicates=replace(params.duplicates, pixels=side)), ws, manifests)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **{k: v for s, (ids, x, bad) in out.items()
                       for k, v in ((f"{s}_ids", np.array(ids, dtype=object)), (f"{s}_x", x), (f"{s}_bad", np.array(bad, dtype=object)))})
    return out


def model_features(params, ws, model: str, manifests: dict, kind: str, cache: Path | None) -> dict:
    """``split -> (ids, features, bad)`` of one model and kind, from ``cache`` when it holds them."""
    from imagenet_clean.stages.duplicates import _model_features

    f = cache / f"{kind}_{model}.npz" if cache else None
    if f is not None and f.is_file():
        z = np.load(f, allow_pickle=True)
        return {s: (list(z[f"{s}_ids"]), z[f"{s}_x"], dict(z[f"{s}_bad"].item())) for s in manifests}
    p = replace(params, duplicates=replace(params.duplicates, features=kind))
    out = _model_features(p, ws, model, manifests)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **{k: v for s, (ids, x, bad) in out.items()
                       for k, v in ((f"{s}_ids", np.array(ids, dtype=object)), (f"{s}_x", x), (f"{s}_bad", np.array(bad, dtype=object)))})
    return out


def fmt(v) -> str:
    return f"{v:.3f}" if v is not None else "  -  "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="a run's project folder (read only)")
    ap.add_argument("--params", type=Path, default=None, help="params.yaml (default: the project's)")
    ap.add_argument("--features", default="map,pooled", help="feature kinds to compare (comma list)")
    ap.add_argument("--models", default="", help="comma list (default: every model in params)")
    ap.add_argument("--goal", type=float, default=0.9)
    ap.add_argument("--margin", type=float, default=0.03)
    ap.add_argument("--pixels", default="0,8,16", help="thumbnail sides to compare (comma list; 0: none)")
    ap.add_argument("--k", type=int, default=0, help="neighbours per sample (default: the params' duplicates.k)")
    ap.add_argument("--cache", type=Path, default=None, help="folder for per-model features (npz), reused when present")
    ap.add_argument("--out", type=Path, default=None, help="write the curves and choices as JSON here")
    args = ap.parse_args()

    from imagenet_clean.cleanup.duplicates import exact_duplicates, merge_pairs, near_duplicates, pool_models, truth_pairs
    from imagenet_clean.config import load_params
    from imagenet_clean.io import read_table
    from imagenet_clean.stages.duplicates import _splits
    from imagenet_clean.workspace import Workspace

    ws = Workspace(args.project)
    params = load_params(args.params or args.project / "params.yaml")
    k = args.k or params.duplicates.k
    splits = _splits(params, ws)
    manifests = {s: read_table(ws.manifest(s), columns=["sample_id", "path", "status", "reason", "content_hash"]) for s in splits}
    exact = exact_duplicates({s: pd.Series(m["content_hash"].to_numpy(), index=m["sample_id"].astype(str)) for s, m in manifests.items()})
    truth = read_table(ws.resolve(params.dataset.truth))
    tp = truth_pairs(truth[truth["split"].isin(splits)])
    n_within = int((tp["split_a"] == tp["split_b"]).sum())
    print(f"{sum(len(m) for m in manifests.values())} images in {splits}; true pairs {len(tp)} "
          f"(exact {int((tp['kind'] == 'exact').sum())}, near {int((tp['kind'] == 'near').sum())}; "
          f"within {n_within}, across {len(tp) - n_within}); k {k}")
    models = [m for m in args.models.split(",") if m] or list(params.models)
    report: dict = {"project": str(args.project), "k": k, "grid": GRID, "true_pairs": len(tp), "choices": {}}
    sides = [int(x) for x in args.pixels.split(",") if x]
    thumbs = {side: thumbnails(params, ws, manifests, side, args.cache) for side in sides if side}
    for kind in [x for x in args.features.split(",") if x]:
        per_model, secs = {}, {}
        for m in models:
            t0 = time.perf_counter()
            per_model[m] = model_features(params, ws, m, manifests, kind, args.cache)
            secs[m] = round(time.perf_counter() - t0, 1)
        print(f"\n== features {kind}: seconds per model {secs}")
        for side in sides:
            for r in range(len(models), 0, -1):
                for choice in itertools.combinations(models, r):
                    feats = {s: pool_models([per_model[m][s][:2] for m in choice]) for s in manifests}
                    if side:
                        feats = {s: pool_models([feats[s], thumbs[side][s][:2]]) for s in manifests}
                    near = near_duplicates(feats, max_distance=max(GRID), k=k)
                    found = merge_pairs(exact, near)
                    curve = []
                    for d in GRID:
                        s = scores_at(found, tp, d)
                        curve.append({"max_distance": d, "goal": round(goal_score(s), 4), "scores": s})
                    pick = pick_distance(curve, args.goal)
                    name = f"{kind}:pixels{side}:{'+'.join(choice)}"
                    report["choices"][name] = {"kind": kind, "pixels": side, "models": list(choice), "pick": pick, "curve": curve,
                                               "dim": int(next(iter(feats.values()))[1].shape[1])}
                    s = pick["scores"]
                    print(f"{name:50s} goal {pick['goal']:.3f} at {pick['max_distance']:.4f} "
                          f"(band {pick['band']}, best {pick['best_goal']:.3f}) "
                          + " ".join(f"{g} {fmt(s[g]['precision'])}/{fmt(s[g]['recall'])}" for g in ("all", *GROUPS)), flush=True)
    every = [n for n, c in report["choices"].items() if len(c["models"]) == len(models)]  # in order: kind, then side
    default = max(every, key=lambda n: report["choices"][n]["pick"]["goal"])  # max keeps the first of equal scores
    best_name = max(report["choices"], key=lambda n: report["choices"][n]["pick"]["goal"])
    d_goal, b_goal = report["choices"][default]["pick"]["goal"], report["choices"][best_name]["pick"]["goal"]
    chosen = best_name if (d_goal < args.goal and b_goal >= d_goal + args.margin) else default
    report["chosen"] = chosen
    c = report["choices"][chosen]
    print(f"\nbest with every model: {default} (goal {d_goal}); best of all: {best_name} (goal {b_goal})")
    report["remove_max_distance"] = removal_distance(c["curve"], c["pick"]["max_distance"])
    print(f"chosen (rule): {chosen}, max_distance {c['pick']['max_distance']}, remove_max_distance {report['remove_max_distance']}")
    print(f"  {'max_distance':>12} {'goal':>6} " + " ".join(f"{g + ' P/R':>15}" for g in ("all", *GROUPS, "near_within", "near_across")))
    for row in c["curve"]:
        s = row["scores"]
        print(f"  {row['max_distance']:>12} {row['goal']:>6.3f} " + " ".join(
            f"{fmt(s[g]['precision']) + '/' + fmt(s[g]['recall']):>15}" for g in ("all", *GROUPS, "near_within", "near_across")))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
