"""Decision stage vs bare cleanlab: time and peak memory on synthetic probabilities.

Usage::

    python benchmarks/bench_cleanup.py                     # N=200k, K=1000, M=3 (about 0.8 GB per model)
    python benchmarks/bench_cleanup.py --n 20000 --m 2     # a quick look

For each model the synthetic (N, K) float32 matrix is made (not timed), then
timed twice: the bare ``cleanlab.filter.find_label_issues`` call, and the whole
per-model step of the clean stage (input checks, the same cleanlab call,
candidates, top-5 misses from the stored top-5 as in a prediction file); the rules run once at the end over the stacked
N-vectors. Only one model's matrix exists at a time, as in the stage. Peak
memory is measured with tracemalloc (numpy reports its buffers) above the
matrix itself. Times are CPU seconds of this process (``--jobs 1``), which a
shared machine disturbs far less than wall time (also printed); each model is
timed ``--repeat`` times and the fastest run kept. Target: whole stage within
1.2x of cleanlab's own time.
The last line extrapolates linearly to ImageNet train (1.28M x 1000, 8 models).
"""
from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc

import numpy as np

IMAGENET_N, IMAGENET_K, IMAGENET_M = 1_281_167, 1000, 8


def synthetic_labels(n: int, k: int, *, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """True labels and given labels with a ``noise`` fraction re-drawn at random."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, k, flip.sum())
    return true, labels


def synthetic_probs(true: np.ndarray, k: int, *, seed: int, chunk: int = 20_000) -> np.ndarray:
    """One model's float32 softmax matrix favouring the true class, built in chunks (no float64 N x K)."""
    rng = np.random.default_rng(seed)
    n = len(true)
    p = np.empty((n, k), np.float32)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        logits = rng.standard_normal((e - s, k), dtype=np.float32)
        logits[np.arange(e - s), true[s:e]] += 4.0
        logits = np.exp(logits, out=logits)
        p[s:e] = logits / logits.sum(axis=1, keepdims=True)
    return p


def fast_top5(p: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """Top-5 classes per row (unordered), as a prediction file stores them; not timed."""
    out = np.empty((len(p), 5), np.int32)
    for s in range(0, len(p), chunk):
        out[s:s + chunk] = np.argpartition(-p[s:s + chunk], 5, axis=1)[:, :5]
    return out


def timed(fn, *args, **kw):
    """(result, CPU seconds of this process, wall seconds, peak traced bytes above the start)."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*args, **kw)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return out, cpu, wall, tracemalloc.get_traced_memory()[1] - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--m", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="cleanlab worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="timings per model; the fastest is kept")
    args = ap.parse_args()

    from imagenet_clean.cleanup.confident import cleanlab_issues, model_evidence
    from imagenet_clean.cleanup.ensemble import Ensemble
    from imagenet_clean.config import Thresholds

    warm_true, warm_labels = synthetic_labels(2000, 10, seed=1)  # imports and first-call costs, not timed
    model_evidence(warm_labels, synthetic_probs(warm_true, 10, seed=1), n_jobs=args.jobs)
    tracemalloc.start()
    matrix_mb = args.n * args.k * 4 / 2**20
    t_cl = t_stage = w_cl = w_stage = 0.0
    peak_cl = peak_stage = 0
    items = []
    true, labels = synthetic_labels(args.n, args.k, seed=args.seed)
    for i in range(args.m):
        p = synthetic_probs(true, args.k, seed=args.seed + 1 + i)
        top5 = fast_top5(p)  # the stage reads top-5 from the prediction file
        best_cl = best_st = (np.inf, np.inf)
        for _ in range(args.repeat):  # interleaved, so that load on the machine hits both alike
            (mask, _), cpu, wall, peak = timed(cleanlab_issues, labels, p, n_jobs=args.jobs)
            best_cl, peak_cl = min(best_cl, (cpu, wall)), max(peak_cl, peak)
            ev, cpu2, wall2, peak2 = timed(model_evidence, labels, p, top5=top5, n_jobs=args.jobs, model=f"m{i}")
            best_st, peak_stage = min(best_st, (cpu2, wall2)), max(peak_stage, peak2)
        assert np.array_equal(ev.flagged, mask)
        t_cl, w_cl = t_cl + best_cl[0], w_cl + best_cl[1]
        t_stage, w_stage = t_stage + best_st[0], w_stage + best_st[1]
        print(f"model {i}: cleanlab {best_cl[0]:.2f} s CPU / {best_cl[1]:.2f} s wall (+{peak_cl / 2**20:.0f} MB), "
              f"per-model stage step {best_st[0]:.2f} s CPU / {best_st[1]:.2f} s wall (+{peak2 / 2**20:.0f} MB), "
              f"{ev.n_issues} issues", flush=True)
        items.append((f"m{i}", ev, None))
        del p
    ens, c_stack, w_stack, _ = timed(Ensemble.stack, items, args.n)
    dec, c_rules, w_rules, peak_rules = timed(ens.decide, labels, Thresholds(h1="all", h2=0.5, h3="all"))
    dt_rules = c_rules + c_stack
    t_stage += dt_rules
    w_stage += w_stack + w_rules
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = t_stage / t_cl
    scale = IMAGENET_N / args.n * IMAGENET_M / args.m
    res = {
        "n": args.n, "k": args.k, "models": args.m,
        "matrix_mb": round(matrix_mb, 1),
        "cleanlab_cpu_s": round(t_cl, 2), "stage_cpu_s": round(t_stage, 2), "rules_cpu_s": round(dt_rules, 2),
        "cleanlab_wall_s": round(w_cl, 2), "stage_wall_s": round(w_stage, 2),
        "ratio": round(ratio, 3),
        "peak_above_matrix_mb": {"cleanlab": round(peak_cl / 2**20), "stage": round(max(peak_stage, peak_rules) / 2**20)},
        "max_rss_mb": round(rss_mb),
        "fix": int((dec["action"] == "fix").sum()), "remove": int((dec["action"] == "remove").sum()),
        "imagenet_train_estimate": {
            "stage_h": round(t_stage * scale / 3600, 2),
            "cleanlab_h": round(t_cl * scale / 3600, 2),
            # one model's float32 matrix + the largest temporaries seen (cleanlab's own), scaled with N
            "peak_gb": round((IMAGENET_N * IMAGENET_K * 4 + max(peak_cl, peak_stage, peak_rules) * IMAGENET_N / args.n) / 2**30, 1),
        },
    }
    print(f"whole stage {t_stage:.1f} s vs bare cleanlab {t_cl:.1f} s CPU: {ratio:.2f}x (target <= 1.2x); "
          f"rules {dt_rules:.2f} s; max RSS {rss_mb:.0f} MB with a {matrix_mb:.0f} MB matrix")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
