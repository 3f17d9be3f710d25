"""``imagenet-clean report``: every computed table as Markdown, in the paper's layout.

Reads the metrics files of each cleaning round (``table1.json``, ``table2.json``,
``table3.json``, ``ablations.json``; a missing or skipped one is noted, not an
error) and writes ``metrics/report.md``, with the paper's own ImageNet figures
(:mod:`.paper`) under each table for reference. A table written as
``{"skipped": true, "why": ...}`` becomes a one-line note with the reason,
splits a table left out (``skipped_splits``) are listed under it, and a table
that cannot be rendered is noted with the error rather than failing the report.
Also writes the DVC plots data ``metrics/plots/changes_per_class.csv`` (split,
class, fixes, removals) from the decisions of the splits that were cleaned.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..cleanup.rules import ACTION_SET as SET_ACTION
from ..constants import SKIPPED_WHY
from ..io import read_metadata, read_table, write_text
from ..workspace import Workspace
from . import paper
from .accuracy import CLEAN_SUFFIX, SET_METRIC, SYMBOLS, symbol
from .splits import SKIPPED_SPLITS, primary_set, skip_reason_of, table_rows

log = logging.getLogger(__name__)

TABLE_FILES = ("table1.json", "table2.json", "table3.json", "ablations.json")


# ------------------------------------------------------------------ formatting


def _num(x, digits: int = 2, *, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _stat(s: Mapping | float | None) -> str:
    """``81.20`` for a plain value, ``81.20±0.50`` for a summary with a spread."""
    if isinstance(s, Mapping):
        if s.get("mean") is None:
            return "-"
        return _num(s["mean"]) + (f"±{_num(s['std'])}" if s.get("n", 1) > 1 else "")
    return _num(s)


def _pair(cell: Mapping | None) -> str:
    """``top1/top5`` of an accuracy cell (plain or summarised); ``top1/top5/set`` where the set has label sets."""
    if not cell:
        return "-"
    out = f"{_stat(cell.get('top1'))}/{_stat(cell.get('top5'))}"
    return out + f"/{_stat(cell[SET_METRIC])}" if SET_METRIC in cell else out


SET_NOTE = ("Set: the ReaL-style set accuracy on a cleaned split whose images may carry a label set "
            "(several plausible classes): a prediction counts when its top-1 is any class of the set (docs/label-sets.md).")
"""Caption sentence of a table holding set accuracies."""


def _has_set(cells) -> bool:
    return any(isinstance(c, Mapping) and SET_METRIC in c for c in cells)


def _paper_pair(p) -> str:
    return "-" if p is None else f"{p[0]:.2f}/{p[1]:.2f}"


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _split_order(name: str) -> tuple:
    known = list(SYMBOLS)
    return (known.index(name) if name in known else len(known), name)


def _splits_of(row: Mapping) -> list[str]:
    """Evaluated splits of a table row from its ``<split>`` / ``<split>_clean`` keys: val, v2, then the rest by name."""
    return sorted((k for k in row if not k.endswith(CLEAN_SUFFIX) and k + CLEAN_SUFFIX in row), key=_split_order)


def _skipped(obj) -> str | None:
    if obj is None:
        return "not computed"
    why = skip_reason_of(obj)
    if why:
        return f"skipped ({why})"
    if not isinstance(obj, Mapping) or not table_rows(obj):
        return "empty"
    return None


def _skipped_splits_note(obj) -> str:
    skipped = obj.get(SKIPPED_SPLITS) if isinstance(obj, Mapping) else None
    if not skipped:
        return ""
    return "Skipped splits: " + "; ".join(f"{s} ({why})" for s, why in sorted(skipped.items(), key=lambda kv: _split_order(kv[0]))) + ".\n"


def _diff(a: Mapping | None, b: Mapping | None) -> str:
    """``+d1/+d5``: cleaned minus original top-1/top-5 of two accuracy cells."""
    if not (a and b) or any(x.get(k) is None for x in (a, b) for k in ("top1", "top5")):
        return "-"
    return f"{_num(b['top1'] - a['top1'], sign=True)}/{_num(b['top5'] - a['top5'], sign=True)}"


# ------------------------------------------------------------------ tables


def render_table1(t1: Mapping) -> str:
    """Table 1: issues found by confident learning and accuracy on original vs cleaned splits."""
    t1 = table_rows(t1)
    first = next(iter(t1.values()))
    splits = _splits_of(first)
    header = ["Model"]
    with_set = {s: _has_set(row.get(s + CLEAN_SUFFIX) for row in t1.values()) for s in splits}
    for s in splits:
        clean_head = f"Top-1/Top-5{'/Set' if with_set[s] else ''} {symbol(s + CLEAN_SUFFIX)}"
        header += [f"Label errors ({symbol(s)})", f"Top-1/Top-5 {symbol(s)}", clean_head, "Gain top-1/top-5"]
    rows = []
    for model, row in t1.items():
        cells = [model if row.get("cleanup", True) else f"{model} (not used in the clean-up)"]
        for s in splits:
            a, b = row.get(s), row.get(s + CLEAN_SUFFIX)
            cells += [str(row.get("issues", {}).get(s, "-")), _pair(a), _pair(b), _diff(a, b)]
        rows.append(cells)
    n = {s: first.get(s, {}).get("n") for s in splits}
    nc = {s: first.get(s + CLEAN_SUFFIX, {}).get("n") for s in splits}
    sizes = "; ".join(f"{symbol(s)}: {n[s]} images, {symbol(s + CLEAN_SUFFIX)}: {nc[s]}" for s in splits)
    ref = _md(
        ["Model", "Label errors", "Top-1/Top-5 V", "Top-1/Top-5 V_c"],
        [[m, "-" if e is None else str(e), _paper_pair(v), _paper_pair(vc)] for m, e, v, vc in paper.PAPER_TABLE1],
    )
    return (
        "## Table 1: cleanup models on the original and cleaned splits\n\n"
        + _md(header, rows)
        + f"\nTop-1/top-5 in percent. {sizes}.{' ' + SET_NOTE if any(with_set.values()) else ''}\n\n"
        + f"<details><summary>Paper (ImageNet)</summary>\n\n{paper.PAPER_TABLE1_CAPTION}\n\n{ref}\n</details>\n"
    )


def _interval(g: Mapping) -> str:
    """``+0.95 [+0.31, +1.59] helps`` for a :func:`.table2.paired_gain` block; the reason when none was computed."""
    if not g or g.get("gain") is None:
        return "-"
    if g.get("ci95") is None:
        return f"{_num(g['gain'], sign=True)}, not computed ({g.get('pairs', 0)} pair(s))"
    lo, hi = g["ci95"]
    return f"{_num(g['gain'], sign=True)} [{_num(lo, sign=True)}, {_num(hi, sign=True)}] {g['verdict']}"


def render_table2(t2: Mapping) -> str:
    """Table 2: models trained on T and T_c, in the paper's columns, mean±std over seeds, and the paired verdict.

    Columns: (T, V), (T, V_c), (T_c, V_c) for the primary split, then (T, S), (T_c, S),
    (T, S_c), (T_c, S_c) for every other split S (the paper's V2 columns are its T_c
    models'), then the headline: T_c minus T on the primary cleaned set, paired by seed,
    with its 95 % interval and verdict. A second table gives that paired gain on every
    evaluated set.
    """
    t2 = table_rows(t2)
    first = next(iter(t2.values()))
    sets = list(first.get("T", {}))
    primary = (first.get("headline") or {}).get("set") or primary_set(sets)
    base = primary.removesuffix(CLEAN_SUFFIX) if primary else None
    cols = []
    for s in sorted({x.removesuffix(CLEAN_SUFFIX) for x in sets}, key=_split_order):
        c = s + CLEAN_SUFFIX
        if s == base:
            cols += [("T", s), ("T", c), ("T_c", c)]
        else:
            cols += [("T", s), ("T_c", s)] + ([("T", c), ("T_c", c)] if c in sets else [])
    header = ["Model", *(f"{t}, {symbol(s)}" for t, s in cols)]
    if primary:
        header += [f"T_c-T on {symbol(primary)} top-1 [95 % CI] verdict", "top-5"]
    ordered = sorted(sets, key=lambda s: (_split_order(s.removesuffix(CLEAN_SUFFIX)), s))
    rows, gains = [], []
    for arch, row in t2.items():
        cells = [arch] + [_pair(row.get(t, {}).get(s)) for t, s in cols]
        g = row.get("gain", {})
        if primary:
            cells += [_interval(g.get(primary, {}).get("top1", {})), _interval(g.get(primary, {}).get("top5", {}))]
        rows.append(cells)
        gains.append([arch] + [_interval(g.get(s, {}).get("top1", {})) for s in ordered])
    seeds = first.get("T", {}).get(sets[0] if sets else "", {}).get("top1", {}).get("n", "?")
    why = next((g["why"] for row in t2.values() for per in row.get("gain", {}).values() for g in per.values()
                if isinstance(g, Mapping) and g.get("why")), None)
    ref = _md(["Model", *paper.PAPER_TABLE2_COLUMNS], [[m, *(_paper_pair(c) for c in cells)] for m, cells in paper.PAPER_TABLE2])
    return (
        "## Table 2: models retrained on the original (T) and cleaned (T_c) training split\n\n"
        + _md(header, rows)
        + f"\nTop-1/top-5 in percent, mean±std over {seeds} seed(s). T and T_c are trained with the same seeds; "
        "each seed gives one paired difference T_c - T, and the gain is their mean with its 95 % Student-t "
        "interval. The verdict is \"helps\" or \"hurts\" when the interval excludes 0 (beyond seed noise), "
        "else \"not resolved\". The paper's two V2 columns (its models trained on T_c) correspond to T_c, V2 "
        "and T_c, V2_c here."
        + (" A third figure in a cell is the set accuracy. " + SET_NOTE
           if _has_set(cell for row in t2.values() for t in ("T", "T_c") for cell in row.get(t, {}).values()) else "")
        + "\n"
        + (f"\nVerdict not computed: {why}.\n" if why else "")
        + "\nPaired top-1 gain T_c - T on every evaluated set [95 % CI] and verdict:\n\n"
        + _md(["Model", *(symbol(s) for s in ordered)], gains)
        + f"\n<details><summary>Paper (ImageNet)</summary>\n\n{paper.PAPER_TABLE2_CAPTION}\n\n{ref}\n</details>\n"
    )


def render_table3(t3: Mapping) -> str:
    """Table 3: non-square input sizes as top-1/top-5 differences to the square model."""
    t3 = table_rows(t3)
    archs = list(t3)
    names = sorted((k for k in t3[archs[0]] if k != "square"), key=lambda k: (k[-2], t3[archs[0]][k]["pixels"]))
    set_name = next(k for k in t3[archs[0]]["square"] if k != "input_size")
    rows = [["square " + "x".join(str(v) for v in t3[archs[0]]["square"]["input_size"][:0:-1]) + " (absolute)"]
            + [_pair(t3[a]["square"][set_name]) for a in archs]]
    for n in names:
        rows.append([n] + [f"{_num(t3[a][n]['d_top1'], sign=True)}/{_num(t3[a][n]['d_top5'], sign=True)}" for a in archs])
    ref = _md(["Resolution", *(f"Top-1/Top-5 {m}" for m in paper.PAPER_TABLE3_MODELS)],
              [[r, *(f"{d1:+.2f}/{d5:+.2f}" for d1, d5 in cells)] for r, cells in paper.PAPER_TABLE3])
    return (
        f"## Table 3: non-square input sizes, trained on T_c, evaluated on {symbol(set_name)}\n\n"
        + _md(["Resolution (W x H)", *(f"Top-1/Top-5 {a}" for a in archs)], rows)
        + "\nDifferences to the square model in points (mean over seeds); L landscape, P portrait.\n\n"
        + f"<details><summary>Paper (ImageNet)</summary>\n\n{paper.PAPER_TABLE3_CAPTION}\n\n{ref}\n</details>\n"
    )


def render_ablations(ab: Mapping) -> str:
    """Ablations: training-set variants, accuracy on the primary cleaned set and difference to T."""
    from .ablations import VARIANTS

    ab = table_rows(ab)
    archs = list(ab)

    variants = sorted(ab[archs[0]], key=lambda v: (list(VARIANTS).index(v) if v in VARIANTS else len(VARIANTS), v))
    first = ab[archs[0]][variants[0]]
    sets = [k for k in first if k.endswith(CLEAN_SUFFIX)] or [k for k in first if isinstance(first[k], Mapping)]
    set_name = min(sets, key=lambda k: _split_order(k.removesuffix(CLEAN_SUFFIX)))
    header = ["Variant", "Training images"] + [f"{a}: {symbol(set_name)} top-1/top-5" for a in archs] + [f"{a}: Δ top-1" for a in archs]
    rows = []
    for v in variants:
        cells = [v, str(ab[archs[0]][v].get("n_train", "-"))]
        cells += [_pair(ab[a][v].get(set_name)) for a in archs]
        cells += [_num(ab[a][v].get("d_top1"), sign=True) + (" *" if ab[a][v].get("verdict") in ("helps", "hurts") else "")
                  for a in archs]
        rows.append(cells)
    return (
        "## Ablations: which cleanup step matters\n\n"
        + _md(header, rows)
        + "\nΔ top-1: the variant minus `none` (T), mean over seeds; * marks a paired difference whose 95 % interval excludes 0.\n"
    )


RENDERERS = {"table1.json": render_table1, "table2.json": render_table2, "table3.json": render_table3, "ablations.json": render_ablations}
"""Markdown renderer per metrics file."""


# ------------------------------------------------------------------ report


def load_round(paths: Workspace) -> dict[str, object]:
    """This round's metrics files by name; ``None`` for a missing file.

    Raises:
        ValueError: a file exists but is not JSON.
    """
    out = {}
    for name in TABLE_FILES:
        p = paths.metric(name)
        if not p.is_file():
            out[name] = None
            continue
        try:
            out[name] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
    out["cleanup"] = load_cleanup(paths)
    return out


def render_round(tables: Mapping[str, object]) -> str:
    """Markdown of one round's tables; missing, skipped or unrenderable tables become a one-line note.

    Splits a table left out (``skipped_splits``) are listed under it.
    """
    parts = [render_cleanup(tables["cleanup"])] if tables.get("cleanup") else []
    for name in TABLE_FILES:
        obj = tables.get(name)
        title = name.removesuffix(".json")
        why = _skipped(obj)
        if why:
            parts.append(f"*{title}: {why}.*\n" + _skipped_splits_note(obj))
            continue
        try:
            parts.append(RENDERERS[name](obj) + _skipped_splits_note(obj))
        except (KeyError, TypeError, ValueError, IndexError, StopIteration, AttributeError) as e:
            log.warning("report: %s could not be rendered: %r", name, e)
            parts.append(f"*{title}: could not be rendered ({type(e).__name__}: {e}); see metrics/{name}.*\n")
    return "\n".join(parts)


CLEANED = ("train", "val", "v2")
"""Splits whose cleanup metrics (``metrics/cleanup/<split>.json``) the report shows."""


def _count(n, rate) -> str:
    return "-" if n is None else f"{n} ({100 * rate:.2f} %)" if rate is not None else str(n)


def render_cleanup(cleanup: Mapping[str, Mapping | None]) -> str:
    """What the cleanup changed per split (fixes, removals, merges with their rates) beside the paper's counts.

    Args:
        cleanup: ``{split: metrics/cleanup/<split>.json content or None}``; a skipped or missing split is named.
    """
    rows, notes = [], []
    with_sets = any(isinstance(m, Mapping) and SET_ACTION in m for m in cleanup.values())  # label sets (issue 30): only then
    for split in sorted(cleanup, key=_split_order):
        m = cleanup[split]
        if not m:
            notes.append(f"{symbol(split)}: no cleanup metrics (metrics/cleanup/{split}.json missing)")
            continue
        if m.get("skipped"):
            notes.append(f"{symbol(split)}: not cleaned ({m.get(SKIPPED_WHY, 'skipped')})")
            continue
        n = m.get("samples") or 0
        rate = lambda k: (m.get(k, 0) / n) if n else None  # noqa: E731
        ref = paper.PAPER_CHANGES.get(split)
        thr = m.get("thresholds_resolved") or {}
        rows.append([
            symbol(split), str(n), _count(m.get("fix"), rate("fix")), _count(m.get("remove"), rate("remove")),
            _count(m.get("merged"), rate("merged")),
            *([_count(m.get(SET_ACTION), rate(SET_ACTION))] if with_sets else []),
            ", ".join(f"{k} {v:g}" for k, v in thr.items()) + (f" (\\|M\\| = {m['n_models']})" if "n_models" in m else ""),
            "-" if ref is None else f"{ref['fixes']} ({ref['fixes_pct']} %)",
            "-" if ref is None else f"{ref['removals']} ({ref['removals_pct']} %)",
        ])
    out = "## Cleanup: what changed per split\n\n"
    if rows:
        out += _md(["split", "images", "fixes", "removals", "merged", *(["label sets"] if with_sets else []), "thresholds (models)",
                    "paper fixes", "paper removals"], rows)
        out += ("\nPaper: ILSVRC12 validation (50 000 images, 10 models), training (1.28 M, 8 models, 4-fold), "
                "ImageNetV2 (10 000, 10 models); it gives no per-split merge counts.\n")
    if notes:
        out += "\n" + "\n".join(f"*{x}.*" for x in notes) + "\n"
    return out


def load_cleanup(paths: Workspace) -> dict[str, dict | None]:
    """This round's ``cleanup/<split>.json`` per cleaned split; None for a missing file.

    Raises:
        ValueError: a file exists but is not JSON.
    """
    out = {}
    for split in CLEANED:
        p = paths.metric(f"cleanup/{split}.json")
        try:
            out[split] = json.loads(p.read_text()) if p.is_file() else None
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
    return out


def render_report(rounds: Mapping[int, Mapping[str, object]]) -> str:
    """The whole report: one section per cleaning round (a single round has no round headings)."""
    head = (
        "# imagenet-clean report\n\n"
        "What the cleaning did, in the layout of the paper's tables 1-3; the paper's own ImageNet figures are "
        "given for reference under each table (real ImageNet, not comparable in size with the embedded data).\n\n"
    )
    if len(rounds) == 1:
        return head + render_round(next(iter(rounds.values())))
    body = [f"# Round {r}\n\n" + render_round(t) for r, t in sorted(rounds.items())]
    return head + "\n".join(body)


def changes_per_class(decisions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Fixes and removals per (split, original class), for the DVC plot.

    Args:
        decisions: Decisions table per split (``wnid`` and ``action`` columns).

    Returns:
        Rows ``split, class, fixes, removals`` for every class of each split's decisions,
        sorted by split then class.

    Raises:
        ValueError: a decisions table lacks ``wnid`` or ``action``.
    """
    frames = []
    for split, dec in decisions.items():
        missing = [c for c in ("wnid", "action") if c not in dec.columns]
        if missing:
            raise ValueError(f"decisions of split {split!r}: missing column(s) {missing}")
        g = dec.assign(fixes=dec["action"] == "fix",
                       removals=dec["action"] == "remove").groupby("wnid", sort=True)[["fixes", "removals"]].sum()
        frames.append(pd.DataFrame({"split": split, "class": g.index.astype(str), "fixes": g["fixes"].astype("int64").to_numpy(),
                                    "removals": g["removals"].astype("int64").to_numpy()}))
    if not frames:
        return pd.DataFrame({"split": pd.Series(dtype=str), "class": pd.Series(dtype=str), "fixes": pd.Series(dtype="int64"),
                             "removals": pd.Series(dtype="int64")})
    return pd.concat(frames, ignore_index=True)


def _cleaned(decisions: Path) -> bool:
    """Whether a decisions file exists and was not written for a skipped split."""
    return decisions.is_file() and read_metadata(decisions).get("skipped") != "true"


def write_report(splits: Sequence[str], *, rounds: int = 1, workspace: Workspace = Workspace()) -> Path:
    """Write ``metrics/report.md`` and ``metrics/plots/changes_per_class.csv``; returns the report path.

    Args:
        splits: Splits whose decisions feed the changes plot (missing decision files, and those
            written for a skipped split, are left out).
        rounds: Number of cleaning rounds to report (params.yaml ``rounds``).
        workspace: The project (round 1; later rounds are read from it).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    per_round = {r: load_round(workspace.at_round(r)) for r in range(1, rounds + 1)}
    out = workspace.report
    write_text(out, render_report(per_round))
    first = workspace.at_round(1)
    decisions = {s: read_table(first.decisions(s), columns=["wnid", "action"]) for s in splits if _cleaned(first.decisions(s))}
    csv = changes_per_class(decisions).to_csv(index=False, lineterminator="\n")
    write_text(workspace.plots / "changes_per_class.csv", csv)
    return out


__all__ = ["render_report", "render_round", "changes_per_class", "write_report", "load_round"]
