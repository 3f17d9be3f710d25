"""Write synthetic out-of-fold prediction files (the predictions.py contract) for a manifest, streamed in row groups.

Usage::

    python benchmarks/make_predictions.py /work/bench18/proj/data/manifests/train.parquet \\
        /work/bench18/proj/data/predictions/train --models efficientnet_lite0 efficientnet_lite1 efficientnet_lite2

Per model: float16 softmax rows of standard-normal logits with one class
boosted by N(8, 2) (a peaked, ImageNet-like out-of-fold matrix: the top class
gets about 60 % on average), drawn from a pool of 4,096 such rows and rolled
so that the peak sits on the row's "true" class; the true class is the given label except for a
seeded 6 % of rows (label errors), and each model also errs on its own 4 %.
Folds 0-3 as in 4-fold cross-validation. Only one row group (65,536 rows) is
in memory at a time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 65_536


POOL = 4096


def probability_pool(k: int, *, rng: np.random.Generator) -> np.ndarray:
    """``POOL`` float16 softmax rows whose largest entry is in column 0 (boost N(8, 2) on standard-normal logits)."""
    logits = rng.standard_normal((POOL, k), dtype=np.float32)
    logits[:, 0] += rng.normal(8.0, 2.0, POOL).astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits.astype(np.float16)


def model_chunk(labels: np.ndarray, k: int, *, rng: np.random.Generator, true: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """One chunk's float16 probabilities: pool rows rolled so that their peak sits on each row's target class.

    Rolling a row keeps its values (so rows still sum to 1 in float16); drawing
    from a pool of a few thousand rows is what makes 1.28M x 1000 cheap to write.
    """
    n = len(labels)
    target = true.copy()
    own = rng.random(n) < 0.04
    target[own] = rng.integers(0, k, int(own.sum()))
    rows = rng.integers(0, len(pool), n)
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([pool, pool], axis=1), k, axis=1)
    return windows[rows, (k - target) % k], (POOL_TOP5[rows] + target[:, None]) % k


def pool_top5(pool: np.ndarray) -> np.ndarray:
    """Top-5 columns of each pool row, best first."""
    return np.argsort(-pool.astype(np.float32), axis=1, kind="stable")[:, :5].astype(np.int64)


POOL_TOP5 = np.zeros((0, 5), np.int64)


def top5(p: np.ndarray) -> np.ndarray:
    """Top-5 classes, best first (ties: smaller index first), as predictions.top5_of."""
    part = np.argpartition(-p, 5, axis=1)[:, :5]
    vals = np.take_along_axis(p, part, axis=1).astype(np.float32)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int32)


def write_model(path: Path, ids: np.ndarray, labels: np.ndarray, k: int, *, seed: int, model: str, split: str = "train") -> float:
    """Write one model's file; returns seconds (``fold`` -1 outside the training split, as a whole-split model writes)."""
    t0 = time.perf_counter()
    n = len(ids)
    truth_rng = np.random.default_rng([seed, 0])
    flip = truth_rng.random(n) < 0.06
    true = labels.copy()
    true[flip] = truth_rng.integers(0, k, int(flip.sum()))
    folds = np.random.default_rng([seed, 1]).integers(0, 4, n).astype(np.int32) if split == "train" else np.full(n, -1, np.int32)
    rng = np.random.default_rng([seed, 2, sum(map(ord, model))])
    pool = probability_pool(k, rng=rng)
    global POOL_TOP5
    POOL_TOP5 = pool_top5(pool)
    schema = pa.schema([("sample_id", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("fold", pa.int32()),
                        ("top5", pa.list_(pa.int32(), 5)), ("probs", pa.list_(pa.float16(), k))],
                       metadata={b"imagenet_clean.model": model.encode(), b"imagenet_clean.arch": model.encode(),
                                 b"imagenet_clean.split": split.encode(), b"imagenet_clean.num_classes": str(k).encode()})
    tmp = path.with_name(f".{path.name}.partial")
    with pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=1) as w:
        for s in range(0, n, ROWS):
            e = min(n, s + ROWS)
            p, best5 = model_chunk(labels[s:e], k, rng=rng, true=true[s:e], pool=pool)
            t = pa.table({
                "sample_id": pa.array(ids[s:e], pa.string()),
                "status": pa.array(["ok"] * (e - s), pa.string()),
                "reason": pa.array([""] * (e - s), pa.string()),
                "fold": pa.array(folds[s:e]),
                "top5": pa.FixedSizeListArray.from_arrays(pa.array(best5.astype(np.int32).ravel()), 5),
                "probs": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), k),
            }, schema=schema)
            w.write_table(t)
    tmp.replace(path)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifest", type=Path, help="a manifest parquet, or a make_imagenet_tree.py tree (1,281,167 images)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", help="the split named in the files' metadata (fold -1 unless train)")
    args = ap.parse_args()
    if args.manifest.is_dir():  # a make_imagenet_tree.py tree: the ids ingest will give, without waiting for it
        from make_imagenet_tree import class_counts

        from imagenet_clean.classes import imagenet_classes

        wnids = imagenet_classes().wnids
        counts = class_counts(1_281_167, len(wnids), seed=args.seed)
        ids = np.array(sorted(f"{w}/{w}_{i + 1}.JPEG" for w, c in zip(wnids, counts) for i in range(c)), dtype=object)
        index = {w: i for i, w in enumerate(wnids)}
        labels = np.array([index[s.split("/", 1)[0]] for s in ids], np.int64)
    else:
        m = pq.read_table(args.manifest, columns=["sample_id", "label"])
        ids = m["sample_id"].to_numpy(zero_copy_only=False)
        labels = m["label"].to_numpy().astype(np.int64)
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        if (args.out / f"{model}.parquet").is_file():
            print(f"{model}: exists, kept")
            continue
        sec = write_model(args.out / f"{model}.parquet", ids, labels, args.k, seed=args.seed, model=model, split=args.split)
        size = (args.out / f"{model}.parquet").stat().st_size
        print(f"{model}: {len(ids)} x {args.k} float16 in {sec:.0f} s, {size / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
