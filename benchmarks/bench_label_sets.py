"""The label-set rule's evidence reading at scale: :func:`class_windows` and :func:`apart` on synthetic windows.

The clean stage reads the windows file of a split and finds, per image, the
classes enough models vote for in one window, with the windows (then whether two
of them lie apart). On the embedded default that is 2,520 images; with the rule on
for a large dataset it is every image the gate lets through. This script builds a
seeded synthetic windows array of N images (M models, a 6 x 6 grid, top 3 per
window, K classes; every image a mixture of one or two confident classes and
noise), and prints the time and the peak memory added of the two steps, with
the chunk of :data:`FOUND_CHUNK` images against one chunk of everything (the
ratio is what the chunking buys), in one process, side by side.

    python benchmarks/bench_label_sets.py [--n 200000] [--models 3] [--classes 1000]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def synthetic(n: int, m: int, k: int, *, seed: int = 0, w: int = 36, t: int = 3):
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, k, (n, m, w, t), dtype=np.int16)
    prob = np.sort(rng.dirichlet(np.ones(8), (n, m, w))[..., :t].astype(np.float32), axis=-1)[..., ::-1].copy()
    # half the images hold one object in windows 0-8, a quarter a second one in windows 27-35
    obj = rng.integers(0, k, (n, 2))
    one, two = rng.random(n) < 0.5, rng.random(n) < 0.25
    for rows, c, wins in ((one, obj[:, 0], slice(0, 9)), (two, obj[:, 1], slice(27, 36))):
        cls[rows, :, wins, 0] = c[rows, None, None]
        prob[rows, :, wins, 0] = 0.9
    return cls, prob


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--classes", type=int, default=1000)
    args = ap.parse_args()

    from imagenet_clean.cleanup import labelsets
    from imagenet_clean.cleanup.labelsets import apart, class_windows

    cls, prob = synthetic(args.n, args.models, args.classes)
    need = max(1, args.models - 1)
    print(f"{args.n:,} images x {args.models} models x 36 windows x top 3, {args.classes} classes: "
          f"{(cls.nbytes + prob.nbytes) / 2**20:.0f} MiB of evidence")
    default = labelsets.FOUND_CHUNK
    results = {}
    for chunk in (default, args.n):
        labelsets.FOUND_CHUNK = chunk
        found, sec, peak = measure(lambda: class_windows(cls, prob, min_prob=0.55, min_models=need))
        results[chunk] = (found, sec, peak)
        print(f"class_windows, chunks of {chunk:>9,} images: {sec:7.2f} s, peak {peak / 2**20:8.0f} MiB added")
    labelsets.FOUND_CHUNK = default
    (a, ta, pa), (b, tb, pb) = results[default], results[args.n]
    same = all(list(x) == list(y) and all(np.array_equal(x[c], y[c]) for c in x) for x, y in zip(a, b))
    print(f"ratio one chunk / chunked: time {tb / ta:.2f}x, peak memory {pb / pa:.1f}x; same result: {same}")
    sizes = np.full((args.n, 2), 256)
    far, sec, peak = measure(lambda: apart(a, sizes, window=0.4375, stride=0.14, max_overlap=0.1))
    two = sum(len(f) >= 2 for f in a)
    print(f"apart on the {two:,} images with two classes or more: {sec:.2f} s, peak {peak / 2**20:.0f} MiB added; "
          f"{int(far.sum()):,} apart")


if __name__ == "__main__":
    main()
