"""Injected duplicates of the embedded mini-ImageNet: exact and near copies, within and across splits.

Each split receives ``round(generate.noise.exact_copies * n)`` exact copies (the
original's file, byte for byte) and ``round(generate.noise.near_copies * n)``
near copies: the original decoded and changed by one of :data:`NEAR_TRANSFORMS`
(re-encoded at another JPEG quality, resized, slightly cropped, recoloured) and
encoded again. The original of a copy is an original (not a copy) of the same
split or of an earlier one (:data:`COPY_SOURCES`): a copy in val of a train
image is train-val leakage. A copy keeps its original's labels and problem.

The truth rows of copies name the original (``duplicate_of_split``,
``duplicate_of``), the ``duplicate_kind`` (``exact`` or ``near``) and the
``duplicate_transform``; originals have nulls there. With both rates 0 nothing
is drawn and the generated files are those of a generator without copies.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

COPY_SOURCES = {"train": ("train",), "val": ("val", "train"), "v2": ("v2", "train", "val")}
"""Split of a copy -> the splits its original is drawn from (uniformly): itself, and the splits before it."""

TRUTH_COLUMNS = ("duplicate_of_split", "duplicate_of", "duplicate_kind", "duplicate_transform")
"""Columns truth.parquet gains when copies are injected."""

Box = list[float]
NEAR_TRANSFORMS: dict[str, Callable[[Image.Image, Box, np.random.Generator], tuple[Image.Image, Box, int]]] = {}
"""Near-copy transforms ``fn(image, box, rng) -> (image, box in its coordinates, JPEG quality)``."""


def register_transform(name: str):
    """Decorator adding a near-copy transform to :data:`NEAR_TRANSFORMS`."""

    def deco(fn):
        NEAR_TRANSFORMS[name] = fn
        return fn

    return deco


@register_transform("jpeg")
def _reencode(img, box, rng):
    return img, list(box), int(rng.integers(40, 76))


@register_transform("resize")
def _resize(img, box, rng):
    f = float(rng.choice([rng.uniform(0.75, 0.9), rng.uniform(1.15, 1.5)]))
    w, h = img.size
    nw, nh = max(8, round(w * f)), max(8, round(h * f))
    sx, sy = nw / w, nh / h
    return img.resize((nw, nh), Image.BICUBIC), [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy], 90


@register_transform("crop")
def _crop(img, box, rng):
    w, h = img.size
    left, top, right, bottom = (int(round(v)) for v in rng.uniform(0.02, 0.07, 4) * [w, h, w, h])
    out = img.crop((left, top, w - right, h - bottom))
    cw, ch = out.size
    b = [min(max(box[0] - left, 0), cw), min(max(box[1] - top, 0), ch), min(max(box[2] - left, 0), cw), min(max(box[3] - top, 0), ch)]
    return out, b, 90


@register_transform("recolour")
def _recolour(img, box, rng):
    x = np.asarray(img, np.float32)
    gain = rng.uniform(0.85, 1.15, 3)
    shift = rng.uniform(-12, 12)
    return Image.fromarray(np.clip(x * gain + shift + 0.5, 0, 255).astype(np.uint8)), list(box), 90


def copy_counts(cfg, n: int) -> tuple[int, int]:
    """``(exact, near)`` copies injected into a split of ``n`` originals."""
    return int(round(cfg.noise.exact_copies * n)), int(round(cfg.noise.near_copies * n))


def enabled(cfg) -> bool:
    """Whether any copy is injected (either rate above 0)."""
    return cfg.noise.exact_copies > 0 or cfg.noise.near_copies > 0


def inject_copies(split: str, rows: dict[str, list[dict]], *, cfg, seed: int, index: int, out: Path,
                  file_name: Callable[[str, int, int, int], str], wnid_of: Callable[[int], str]) -> list[dict]:
    """Write the exact and near copies of ``split`` into ``out/<split>`` and return their truth rows.

    Args:
        split: The split receiving the copies.
        rows: Split -> its originals' rows (``sample_id``, labels, ``problem``, ``_box``), for the
            splits already generated.
        cfg: The generate config (``noise.exact_copies``, ``noise.near_copies``, ``n_<split>``).
        seed: The pipeline seed.
        index: The split's index (seeds its generator apart from the originals').
        out: The tree being written.
        file_name: ``(split, i, given label, seed) -> sample_id``, as for originals.
        wnid_of: Label -> class id (for the copies' boxes in val's CSV).

    Returns:
        One truth row per copy, with the :data:`TRUTH_COLUMNS` and ``_box``.
    """
    n_exact, n_near = copy_counts(cfg, len(rows[split]))
    rng = np.random.default_rng([seed, index, 2_000_003])
    names = sorted(NEAR_TRANSFORMS)
    made = []
    start = len(rows[split])
    for j, kind in enumerate(["exact"] * n_exact + ["near"] * n_near):
        sources = [s for s in COPY_SOURCES[split] if rows.get(s)]
        src_split = sources[int(rng.integers(len(sources)))]
        src = rows[src_split][int(rng.integers(len(rows[src_split])))]
        sid = file_name(split, start + j, src["given_label"], seed)
        path = out / split / sid
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (out / src_split / src["sample_id"]).read_bytes()
        transform, box = "none", list(src["_box"])
        if kind == "exact":
            path.write_bytes(data)
        else:
            transform = names[int(rng.integers(len(names)))]
            img = Image.open(io.BytesIO(data)).convert("RGB")
            img, box, quality = NEAR_TRANSFORMS[transform](img, box, rng)
            img.save(path, format="JPEG", quality=quality)
        made.append({"split": split, "sample_id": sid, "true_label": src["true_label"], "given_label": src["given_label"],
                     "problem": src["problem"],
                     "true_labels": list(src["true_labels"]), "duplicate_of_split": src_split, "duplicate_of": src["sample_id"],
                     "duplicate_kind": kind, "duplicate_transform": transform, "_box": box})
    return made
