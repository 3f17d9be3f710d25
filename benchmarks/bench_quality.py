"""Cost of the quality stage per 1,000 images, side by side with ingest's on the same files (one process each).

Usage::

    PYTHONPATH=src python benchmarks/bench_quality.py [--n 1000] [--sizes 64 384]

For each image side, generates ``--n`` embedded images (data/generate.py) in a
temporary folder, ingests them once to warm the page cache, then times, in this
order and one process each: ingest (headers + content hash, what the embedded
default runs), the quality stage's measure_split (decode + measures), and the
decode alone (load_rgb in draft mode, as the quality stage decodes). Prints
seconds per 1,000 images and the ratio quality / ingest. The 384 px images stand
in for ImageNet's (about 400 x 350 on average).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 384])
    args = ap.parse_args()

    from imagenet_clean.config import GenerateConfig
    from imagenet_clean.constants import QUALITY_SIDE
    from imagenet_clean.data.generate import embedded_classes, generate
    from imagenet_clean.data.images import load_rgb
    from imagenet_clean.data.ingest import ingest_split
    from imagenet_clean.data.quality import measure_split

    print(f"CPU: {os.cpu_count()} cores visible; one process per measurement; n = {args.n}")
    rows = []
    print("side  ingest s/1k  quality s/1k  decode-only s/1k  quality/ingest")
    for side in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            generate(GenerateConfig(out=f"{tmp}/raw", image_size=side, n_train=args.n, n_val=10, n_v2=10), seed=0)
            root = Path(tmp) / "raw" / "train"
            classes = embedded_classes()
            ingest_split(root, layout="train", classes=classes, hash=True)  # warm the page cache
            t0 = time.perf_counter()
            manifest, _ = ingest_split(root, layout="train", classes=classes, hash=True, workers=1)
            t_ingest = time.perf_counter() - t0
            t0 = time.perf_counter()
            q = measure_split(manifest, root, max_pixels=10**9, workers=1)
            t_quality = time.perf_counter() - t0
            assert (q["status"] == "ok").all()
            t0 = time.perf_counter()
            for rel in manifest["path"]:
                load_rgb(root / rel, max_pixels=10**9, draft_size=(QUALITY_SIDE, QUALITY_SIDE), within=root)
            t_decode = time.perf_counter() - t0
            k = 1000 / len(manifest)
            print(f"{side:4d}  {t_ingest * k:11.2f}  {t_quality * k:12.2f}  {t_decode * k:16.2f}  {t_quality / t_ingest:14.1f}")
            rows.append({"side": side, "ingest_s_per_1k": round(t_ingest * k, 3), "quality_s_per_1k": round(t_quality * k, 3),
                         "decode_s_per_1k": round(t_decode * k, 3), "quality_over_ingest": round(t_quality / t_ingest, 2)})
    print(json.dumps({"n": args.n, "sizes": rows}))


if __name__ == "__main__":
    main()
