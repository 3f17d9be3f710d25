"""Ingestion throughput: header-only ingestion vs a naive full decode, files/s per core.

Usage::

    python benchmarks/bench_ingest.py                   # generate a 20k-image train tree in a temp folder
    python benchmarks/bench_ingest.py --root data/raw/train --layout train --classes data/raw/classes.tsv

The files are read from the page cache after generation (warm cache), so the
figures measure the CPU cost per file, which is what the ``workers`` setting
scales; cold-cache figures on network storage are bounded by I/O instead.
Target: >= 2,000 files/s per core for headers.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def naive_decode(root: Path, rels: list[str]) -> float:
    """Files/s of opening and fully decoding every image with PIL (one process)."""
    from PIL import Image

    t0 = time.perf_counter()
    for rel in rels:
        with Image.open(root / rel) as im:
            im.convert("RGB").load()
    return len(rels) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, help="an existing split root (default: generate one)")
    ap.add_argument("--layout", default="train")
    ap.add_argument("--classes", default=None, help="class spec (default: the embedded classes)")
    ap.add_argument("--n", type=int, default=20_000, help="images to generate when --root is not given")
    ap.add_argument("--image-size", type=int, default=64, help="side of generated images (full decode cost grows with it)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import imagenet_clean.data.ingest as ingest_module
    from imagenet_clean.classes import load_classes
    from imagenet_clean.config import GenerateConfig
    from imagenet_clean.data.generate import embedded_classes, generate
    from imagenet_clean.data.ingest import ingest_split

    ingest_module._MIN_PARALLEL = 0  # measure the worker pool even on small trees

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            t0 = time.perf_counter()
            generate(GenerateConfig(out=f"{tmp}/raw", image_size=args.image_size, n_train=args.n, n_val=10, n_v2=10), seed=0)
            root = Path(tmp) / "raw" / "train"
            print(f"generated {args.n} images in {time.perf_counter() - t0:.1f} s")
        classes = load_classes(args.classes) if args.classes else embedded_classes()
        ingest_split(root, layout=args.layout, classes=classes, hash=False)  # warm the page cache
        results = {}
        for name, workers, hash in (("headers", 1, False), ("headers+hash", 1, True), ("headers", args.workers, False)):
            df, stats = ingest_split(root, layout=args.layout, classes=classes, workers=workers, hash=hash)
            results[(name, workers)] = stats["files_per_s"]
            print(f"ingest {name:13s} workers={workers}: {stats['n_files']} files, {stats['seconds']:.2f} s, "
                  f"{stats['files_per_s']:.0f} files/s, {stats['files_per_s'] / workers:.0f} files/s per core")
        rels = list(df["path"][df["status"] == "ok"])
        base = naive_decode(root, rels)
        print(f"naive full decode (PIL load) workers=1: {base:.0f} files/s per core")
        print(f"ratio headers / full decode (per core): {results[('headers', 1)] / base:.1f}x")


if __name__ == "__main__":
    main()
