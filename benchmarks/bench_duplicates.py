"""Near-duplicate search: faiss (inverted-file index) against scikit-learn's exact search, and faiss alone at ImageNet size.

Usage::

    python benchmarks/bench_duplicates.py                       # side by side at 20k, then faiss at 1,281,167 x 256
    python benchmarks/bench_duplicates.py --n 200000 --side 0   # faiss only, a smaller full run

Synthetic unit vectors (``--dim`` wide, float32) stand in for pooled features;
``--copies`` of them get a noisy twin (the features of a re-encoded or
recoloured photo move a little), so the recall of the injected pairs is
measured too. Part 1 times both backends of ``cleanup/duplicates.py`` on the
same ``--side`` vectors and prints the ratio and faiss's pair recall against
the exact search. Part 2 builds and queries the faiss index over ``--n``
vectors (the whole ``near_duplicates`` call, pairs included) and prints wall
time, CPU time and the peak resident memory of this process (ru_maxrss).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from imagenet_clean.cleanup.duplicates import near_duplicates  # noqa: E402

IMAGENET_N = 1_281_167


def vectors(n: int, dim: int, copies: int, seed: int = 0) -> tuple[list[str], np.ndarray, set]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    src = rng.choice(n - copies, copies, replace=False)
    dst = np.arange(n - copies, n)
    x[dst] = x[src] + 0.02 * rng.standard_normal((copies, dim), dtype=np.float32)
    ids = [f"s{i:07d}" for i in range(n)]
    want = {(min(ids[a], ids[b]), max(ids[a], ids[b])) for a, b in zip(src, dst)}
    return ids, x, want


def found(pairs, want: set) -> float:
    got = set(zip(pairs["sample_id_a"], pairs["sample_id_b"]))
    return len(got & want) / max(len(want), 1)


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=IMAGENET_N, help="vectors for the full faiss run (0: skip it)")
    ap.add_argument("--side", type=int, default=20_000, help="vectors for the side-by-side run (0: skip it)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--copies", type=int, default=1000)
    ap.add_argument("--max-distance", type=float, default=0.01)
    a = ap.parse_args()
    print(f"cpu: {os.cpu_count()} cores; dim {a.dim}; max cosine distance {a.max_distance}")
    if a.side:
        ids, x, want = vectors(a.side, a.dim, min(a.copies, a.side // 10))
        feats = {"train": (ids, x)}
        (exact, t_sk, c_sk) = timed(lambda: near_duplicates(feats, max_distance=a.max_distance, backend="sklearn"))
        (approx, t_fa, c_fa) = timed(lambda: near_duplicates(feats, max_distance=a.max_distance, backend="faiss"))
        agree = len(set(zip(approx["sample_id_a"], approx["sample_id_b"])) & set(zip(exact["sample_id_a"], exact["sample_id_b"])))
        print(f"side by side, {a.side:,} vectors: sklearn {t_sk:.1f} s wall / {c_sk:.1f} s cpu, faiss {t_fa:.1f} s / {c_fa:.1f} s; "
              f"sklearn/faiss wall ratio {t_sk / t_fa:.2f}x; faiss finds {agree}/{len(exact)} of the exact pairs; "
              f"injected pairs found: sklearn {found(exact, want):.3f}, faiss {found(approx, want):.3f}")
    if a.n:
        t0 = time.perf_counter()
        ids, x, want = vectors(a.n, a.dim, a.copies)
        made = time.perf_counter() - t0
        (pairs, t, c) = timed(lambda: near_duplicates({"train": (ids, x)}, max_distance=a.max_distance, backend="faiss"))
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        print(f"faiss IVF, {a.n:,} x {a.dim} vectors ({x.nbytes / 1024 ** 3:.2f} GB float32, made in {made:.0f} s): "
              f"build + query + pairs {t:.0f} s wall / {c:.0f} s cpu; {len(pairs):,} pairs; injected pairs found "
              f"{found(pairs, want):.3f}; peak resident memory {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
