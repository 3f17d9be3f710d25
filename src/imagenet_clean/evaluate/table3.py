"""Table 3: training on T_c at non-square input sizes, as differences to the square model on V_c.

The sizes are ``tables.sizes`` (``[[width, height], ...]``; ``init imagenet``
writes the paper's section-5 sizes 320x180, 384x216, 180x320, 216x384). When it
is null (the embedded default), four sizes are derived from the square side:
landscape and portrait at 16:9, one with about the square's pixel count and one
with about 1.65x, each side a multiple of 8 (at the paper's 224 this would give
296x168, not the paper's 320x180, which has 1.15x the pixels). The square
reference is the table-2 T_c model of the same seeds (shared through the run cache).

``metrics/table3.json``::

    {"<arch>": {"square": {"input_size": [3, h, w], "val_clean": {"top1": summary, "top5": summary}},
                "384x216 (L)": {"input_size": [3, 216, 384], "pixels": 1.65, "val_clean": {...},
                                "d_top1": 0.9, "d_top5": 0.4, "ci95_top1": [0.2, 1.6], "verdict": "helps"}, ...}}

Sizes are named width x height, as in the paper; ``d_*`` are mean differences
to the square model in points, paired by seed (the square model of each seed);
``ci95_top1`` and ``verdict`` are table 2's paired t-interval and verdict on
``d_top1`` (:func:`.table2.paired_gain`). ``skipped_splits`` and the skipped-file format
are table 2's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..io import read_table, write_json
from ..workspace import Workspace
from .accuracy import TRAIN_SPLIT
from .splits import primary_set, write_skipped
from .table2 import (
    InputSize,
    RetrainBackend,
    RetrainContext,
    aggregate,
    cleaned_train,
    paired_gain,
    per_metric,
    runs_json,
    seed_runs,
    seeds_of,
    square_size,
    stage_context,
    stage_skip_reason,
    with_skipped,
)

ASPECT = (16, 9)
"""Width:height of the landscape sizes (portrait swaps them); the paper's widescreen ratio."""

PIXEL_RATIOS = (1.0, 1.65)
"""Pixel counts of the non-square sizes relative to the square size (paper: ~1x and 1.65x)."""

MULTIPLE = 8
"""Every side is rounded to a multiple of this (network strides)."""


def nonsquare_sizes(side: int, *, aspect: tuple[int, int] = ASPECT, ratios: Sequence[float] = PIXEL_RATIOS,
                    multiple: int = MULTIPLE) -> dict[str, InputSize]:
    """Landscape and portrait input sizes with about ``ratio * side**2`` pixels each.

    Args:
        side: The square size's side in pixels.
        aspect: Width:height of the landscape sizes.
        ratios: Pixel-count ratios to the square size.
        multiple: Sides are rounded to a multiple of this (at least one multiple).

    Returns:
        ``{"<W>x<H> (L|P)": (3, H, W)}``: landscape sizes first, by ratio, then portrait.

    Raises:
        ValueError: ``side``, ``aspect``, ``ratios`` or ``multiple`` is not positive.
    """
    if side < 1 or multiple < 1 or min(aspect) <= 0 or not ratios or min(ratios) <= 0:
        raise ValueError(f"bad non-square size spec: side={side}, aspect={aspect}, ratios={list(ratios)}, multiple={multiple}")
    aw, ah = aspect
    landscape = []
    for r in ratios:
        pixels = r * side * side
        h = math.sqrt(pixels * ah / aw)
        w = h * aw / ah
        rw, rh = (max(multiple, multiple * round(x / multiple)) for x in (w, h))
        landscape.append((rw, rh))
    out = {f"{w}x{h} (L)": (3, h, w) for w, h in landscape}
    out.update({f"{h}x{w} (P)": (3, w, h) for w, h in landscape})
    return out


def named_sizes(sizes: Sequence[Sequence[int]]) -> dict[str, InputSize]:
    """``[[w, h], ...]`` (``tables.sizes``) -> ``{"<W>x<H> (L|P)": (3, H, W)}``, landscape (w > h) as L, else P.

    Raises:
        ValueError: a size is not two positive integers, or repeats.
    """
    out: dict[str, InputSize] = {}
    for s in sizes:
        if len(s) != 2 or min(s) < 1:
            raise ValueError(f"table 3 size {list(s)!r} is not [width, height] in pixels")
        w, h = (int(x) for x in s)
        name = f"{w}x{h} ({'L' if w > h else 'P'})"
        if name in out:
            raise ValueError(f"table 3 size {w}x{h} is given twice")
        out[name] = (3, h, w)
    return out


def table3(
    ctx: RetrainContext,
    archs: Sequence[str],
    *,
    seeds: Sequence[int],
    samples,
    square: InputSize | None,
    set_name: str,
    sizes: Sequence[Sequence[int]] | None = None,
) -> tuple[dict, dict]:
    """Train each arch on ``samples`` (T_c) at the square and the non-square sizes; returns (table, runs).

    Args:
        ctx: Shared data and cache.
        archs: timm architecture names.
        seeds: Training seeds (the table-2 seeds, so the square runs are cached).
        samples: T_c training rows (``path``, ``label``).
        square: The square size ``(3, s, s)`` the table-2 models use, ``None`` for the backend's default.
        set_name: The evaluation set compared (``val_clean``).
        sizes: ``[[width, height], ...]`` (``tables.sizes``; the paper's 320x180, 384x216, 180x320,
            216x384), or ``None`` for :func:`nonsquare_sizes` of the square side.

    Raises:
        ValueError: ``square`` is not square, ``set_name`` is not evaluated, or no archs/seeds.
    """
    if square is not None and (len(square) != 3 or square[1] != square[2]):
        raise ValueError(f"square input size must be (3, s, s), got {tuple(square)}")
    if set_name not in ctx.eval_sets:
        raise ValueError(f"evaluation set {set_name!r} not evaluated; have {sorted(ctx.eval_sets)}")
    if not archs or not seeds:
        raise ValueError(f"table 3 needs archs and seeds, got archs={list(archs)}, seeds={list(seeds)}")
    table, runs = {}, {}
    for arch in archs:
        side = (square or ctx_default(ctx, arch))[1]
        named = named_sizes(sizes) if sizes else nonsquare_sizes(side)
        base = seed_runs(ctx, samples, arch=arch, seeds=seeds, input_size=square, label="T_c")
        row = {"square": {"input_size": [3, side, side], set_name: aggregate(base)[set_name]}}
        arch_runs = {"square": runs_json(base)}
        for name, size in named.items():
            r = seed_runs(ctx, samples, arch=arch, seeds=seeds, input_size=size, label=f"T_c {name}")
            c1 = paired_gain(per_metric(base, set_name, "top1"), per_metric(r, set_name, "top1"))
            c5 = paired_gain(per_metric(base, set_name, "top5"), per_metric(r, set_name, "top5"))
            row[name] = {
                "input_size": list(size),
                "pixels": round(size[1] * size[2] / (side * side), 3),
                set_name: aggregate(r)[set_name],
                "d_top1": c1["gain"],
                "d_top5": c5["gain"],
                "ci95_top1": c1["ci95"],
                "verdict": c1["verdict"],
            }
            arch_runs[name] = runs_json(r)
        table[arch] = row
        runs[arch] = arch_runs
    return table, runs


def ctx_default(ctx: RetrainContext, arch: str) -> InputSize:
    """The backend's default square size for ``arch`` (what table 2 trains at when ``tables.input_size`` is null)."""
    return tuple(ctx.backend.default_input_size(arch, num_classes=ctx.num_classes))


def write_table3(params, *, paths: Workspace, backend: RetrainBackend | None = None) -> Path:
    """Write ``table3.json`` and ``runs/table3.json`` of this round.

    Both are ``{"skipped": true, "why": ...}`` when ``tables.resolutions`` is off, when
    :func:`.table2.stage_skip_reason` says so, or when no evaluated split has a cleaned version.
    """
    names = ["table3.json", "runs/table3.json"]
    if not params.tables.resolutions:
        return write_skipped(paths, names, "tables.resolutions is false")
    why, splits, skipped = stage_skip_reason(params, paths=paths)
    if why:
        return write_skipped(paths, names, why, skipped_splits=skipped)
    ctx = stage_context(params, paths=paths, backend=backend, splits=splits)
    set_name = primary_set(list(ctx.eval_sets))
    if set_name is None:
        return write_skipped(paths, names, f"no evaluated split has a cleaned version (evaluated: {', '.join(splits)})",
                             skipped_splits=skipped)
    samples = cleaned_train(read_table(paths.clean(TRAIN_SPLIT)))
    tables, runs = table3(ctx, list(params.tables.archs), seeds=seeds_of(params), samples=samples, square=square_size(params),
                          set_name=set_name, sizes=params.tables.sizes)
    out = paths.metric(names[0])
    write_json(out, with_skipped(tables, skipped))
    write_json(paths.metric(names[1]), runs)
    return out
