"""Write a synthetic ILSVRC2012-train-layout tree of real (tiny) JPEGs, fast, for the full-size benchmarks.

Usage::

    python benchmarks/make_imagenet_tree.py /work/bench18/tree              # 1,281,167 images
    python benchmarks/make_imagenet_tree.py /tmp/tree --n 20000 --workers 2

Layout (what ``imagenet-clean init imagenet --train ... --train-boxes ...`` reads):
``train/<wnid>/<wnid>_<n>.JPEG`` for the 1000 ImageNet classes (timm's order),
ImageNet's per-class counts (1,281,167 in all: 1,300 per class, fewer for some),
and VOC XML boxes ``train_boxes/<wnid>/<wnid>_<n>.xml`` for 544,546 / 1,281,167
of the images (42.5 %, the share of the ILSVRC2012 box archive).

Speed: a few hundred small JPEGs (24-64 px, seeded noise) are encoded once and
every file is one of them (every file is a complete, decodable JPEG whose header
gives its true size); writes are spread over ``--workers`` processes by class.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

N_TRAIN = 1_281_167
N_BOXED = 544_546
N_VARIANTS = 256


def class_counts(n: int, k: int = 1000, *, seed: int = 0) -> np.ndarray:
    """Images per class summing to ``n``: 1,300 for most, fewer for a seeded share (ImageNet's shape)."""
    full = min(1300, -(-n // k))
    counts = np.full(k, full, dtype=np.int64)
    rng = np.random.default_rng(seed)
    excess = counts.sum() - n
    while excess > 0:
        i = int(rng.integers(k))
        take = int(min(excess, counts[i] - 732 if full == 1300 else 1, rng.integers(1, 600)))
        if take <= 0:
            continue
        counts[i] -= take
        excess -= take
    return counts


def jpeg_variants(seed: int = 0) -> list[tuple[bytes, int, int]]:
    """``N_VARIANTS`` encoded JPEGs (bytes, width, height) of seeded noise, 24-64 px a side."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_VARIANTS):
        w, h = (int(v) for v in rng.integers(24, 65, size=2))
        pix = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pix).save(buf, format="JPEG", quality=75)
        out.append((buf.getvalue(), w, h))
    return out


def voc_xml(stem: str, wnid: str, w: int, h: int, box: tuple[int, int, int, int]) -> str:
    """An ILSVRC-style VOC annotation with one object of class ``wnid``."""
    xmin, ymin, xmax, ymax = box
    return (
        f"<annotation>\n\t<folder>{wnid}</folder>\n\t<filename>{stem}</filename>\n"
        "\t<source>\n\t\t<database>ILSVRC_2012</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n\t<object>\n\t\t<name>{wnid}</name>\n\t\t<pose>Unspecified</pose>\n"
        "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
        f"\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
        f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n</annotation>\n"
    )


_VARIANTS: list[tuple[bytes, int, int]] = []


def _init(seed: int) -> None:
    _VARIANTS.extend(jpeg_variants(seed))


def write_class(job: tuple[str, str, int, int, float]) -> tuple[int, int, int]:
    """Write one class folder (and its boxes); returns (images, boxes, bytes)."""
    out, wnid, count, seed, box_share = job
    rng = np.random.default_rng([seed, int(wnid[1:])])
    img_dir = Path(out) / "train" / wnid
    box_dir = Path(out) / "train_boxes" / wnid
    img_dir.mkdir(parents=True, exist_ok=True)
    box_dir.mkdir(parents=True, exist_ok=True)
    picks = rng.integers(N_VARIANTS, size=count)
    boxed = rng.random(count) < box_share
    nbytes = nbox = 0
    for n in range(count):
        data, w, h = _VARIANTS[picks[n]]
        stem = f"{wnid}_{n + 1}"
        with open(img_dir / f"{stem}.JPEG", "wb") as f:
            f.write(data)
        nbytes += len(data)
        if boxed[n]:
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            box = (x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1)))
            (box_dir / f"{stem}.xml").write_text(voc_xml(stem, wnid, w, h, box))
            nbox += 1
    return count, nbox, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=N_TRAIN)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from imagenet_clean.classes import imagenet_classes

    wnids = imagenet_classes().wnids
    counts = class_counts(args.n, len(wnids), seed=args.seed)
    share = N_BOXED / N_TRAIN
    jobs = [(str(args.out), w, int(c), args.seed, share) for w, c in zip(wnids, counts)]
    t0 = time.perf_counter()
    n_img = n_box = n_bytes = 0
    with Pool(args.workers, initializer=_init, initargs=(args.seed,)) as pool:
        for i, (a, b, c) in enumerate(pool.imap_unordered(write_class, jobs, chunksize=4), 1):
            n_img, n_box, n_bytes = n_img + a, n_box + b, n_bytes + c
            if i % 50 == 0:
                el = time.perf_counter() - t0
                print(f"{i}/{len(jobs)} classes, {n_img} images, {n_img / el:.0f} files/s", flush=True)
    el = time.perf_counter() - t0
    summary = {"images": n_img, "boxes": n_box, "jpeg_bytes": n_bytes, "seconds": round(el, 1),
               "files_per_s": round(n_img / el), "workers": args.workers}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
