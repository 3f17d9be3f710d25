"""An ensemble's evidence -> decisions, clean manifest and cleanup metrics.

:class:`Ensemble` stacks each model's N-vectors
(:class:`~imagenet_clean.cleanup.confident.ModelEvidence`) and applies the rules;
:func:`clean_arrays` runs them on plain arrays (``imagenet-clean clean-arrays``);
the clean stage (:mod:`imagenet_clean.stages.clean`) feeds it one model at a time
from the prediction files. The contracts of the decisions and clean manifests
(:data:`DECISIONS_SCHEMA`, :data:`CLEAN_SCHEMA`) live here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ..classes import ClassList
from ..config import Thresholds
from ..io import write_table
from .confident import ModelEvidence, model_evidence
from .merges import apply_merges, placeholder_rows
from .rules import ACTION_SET, RULE_UNREADABLE, consensus_only, decide

DECISIONS_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("path", pa.string()),
    ("label", pa.int64()),
    ("wnid", pa.string()),
    ("action", pa.string()),
    ("new_label", pa.int64()),
    ("rules", pa.list_(pa.string())),
    ("n_flagged", pa.int64()),
    ("flagged_models", pa.list_(pa.string())),
    ("candidates", pa.list_(pa.int64())),
    ("c_s", pa.int64()),
    ("cam_scores", pa.string()),
    ("exempted_by", pa.string()),
    ("content_hash", pa.string()),
    ("reason", pa.string()),
])
"""The decisions contract (docs/architecture.md), plus ``reason`` (why a row is unreadable)."""

CLEAN_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("path", pa.string()),
    ("label", pa.int64()),
    ("wnid", pa.string()),
    ("orig_label", pa.int64()),
    ("orig_wnid", pa.string()),
    ("action", pa.string()),
    ("size", pa.int64()),
    ("content_hash", pa.string()),
])

LABELS_FIELD = pa.field("labels", pa.list_(pa.int64()))
"""The label-set column the decisions and the clean manifest gain when ``label_sets.enabled`` (cleanup/labelsets.py)."""

ARRAYS_SCHEMA = pa.schema([f for f in DECISIONS_SCHEMA if f.name in
                           ("label", "action", "new_label", "rules", "n_flagged", "flagged_models", "candidates", "c_s")])
ARRAYS_SCHEMA = ARRAYS_SCHEMA.insert(0, pa.field("sample_id", pa.int64()))

ExemptionFn = Callable[..., pd.DataFrame]
LoadModelFn = Callable[[str, int], tuple]


@dataclass
class Ensemble:
    """Per-model evidence stacked as (M, N) arrays over the usable rows."""

    names: list[str]
    flagged: np.ndarray
    candidates: np.ndarray
    cand_probs: np.ndarray
    top5_miss: np.ndarray
    label_probs: np.ndarray
    folds: np.ndarray
    issues: dict[str, int]
    absent_classes: list[int]
    top_probs: np.ndarray | None = None

    @classmethod
    def stack(cls, items: Iterable[tuple[str, ModelEvidence, np.ndarray | None]], n: int) -> "Ensemble":
        names, ev, folds = [], [], []
        for name, e, fold in items:
            names.append(name)
            ev.append(e)
            folds.append(np.full(n, -1, np.int32) if fold is None else np.asarray(fold, np.int32))
        if not names:
            raise ValueError("no models: the cleanup needs at least one model's predictions")
        return cls(
            names=names,
            flagged=np.stack([e.flagged for e in ev]),
            candidates=np.stack([e.candidates for e in ev]),
            cand_probs=np.stack([e.cand_probs for e in ev]),
            top5_miss=np.stack([e.top5_miss for e in ev]),
            label_probs=np.stack([e.label_probs for e in ev]),
            folds=np.stack(folds),
            issues={nm: e.n_issues for nm, e in zip(names, ev)},
            absent_classes=ev[0].absent_classes,
            top_probs=None if any(e.top_probs is None for e in ev) else np.stack([e.top_probs for e in ev]),
        )

    def decide(self, labels: np.ndarray, thresholds: Thresholds) -> pd.DataFrame:
        """:func:`~imagenet_clean.cleanup.rules.decide` on this evidence."""
        return decide(labels, self.flagged, self.candidates, self.cand_probs, self.top5_miss,
                      n_models=len(self.names), thresholds=thresholds, model_names=self.names)


# ------------------------------------------------------------------ arrays entry


def clean_arrays(labels, pred_probs: Sequence[np.ndarray | str | Path], *, thresholds: Thresholds = Thresholds(),
                 model_names: Sequence[str] | None = None, n_jobs: int | None = 1) -> tuple[pd.DataFrame, dict]:
    """The cleanup rules on plain arrays (no CAMs: consensus removals are not exempted).

    Args:
        labels: (N,) given labels, or a ``.npy`` path.
        pred_probs: One (N, K) probability matrix per model, or ``.npy`` paths
            (memory-mapped and processed one at a time).
        thresholds: ``fn``, ``h1``, ``h2``, ``h3``.
        model_names: Names of the models (default: file stems, or ``m0``, ``m1``, ...).
        n_jobs: cleanlab's worker processes.

    Returns:
        ``(decisions, counts)``: decisions with ``sample_id`` (row index),
        ``label``, ``action``, ``new_label``, ``rules`` and the evidence columns;
        counts of ``fix``, ``remove``, ``keep`` and issues per model.

    Raises:
        ValueError: bad labels or probabilities, naming the file, model and row.
    """
    if isinstance(labels, (str, Path)):
        labels = _load_npy(labels, "labels")
    labels = np.asarray(labels)
    if not len(pred_probs):
        raise ValueError("no prediction matrices given")
    if model_names is None:
        model_names = _unique_names([Path(p).stem if isinstance(p, (str, Path)) else f"m{i}" for i, p in enumerate(pred_probs)])
    if len(model_names) != len(pred_probs):
        raise ValueError(f"{len(model_names)} model names for {len(pred_probs)} prediction matrices")
    k_first: list[int] = []

    def items():
        for name, src in zip(model_names, pred_probs):
            source = str(src) if isinstance(src, (str, Path)) else ""
            probs = _load_npy(src, "pred_probs", mmap=True) if isinstance(src, (str, Path)) else np.asarray(src)
            if probs.ndim == 2 and k_first and probs.shape[1] != k_first[0]:
                raise ValueError(f"file {source or '<array>'}, model {name!r}: {probs.shape[1]} classes, "
                                 f"but the first model has {k_first[0]}")
            if probs.ndim == 2:
                k_first.append(probs.shape[1])
            ev = model_evidence(labels, probs, frac_noise=thresholds.fn, fn_scope=thresholds.fn_scope, n_jobs=n_jobs,
                                source=source, model=name)
            del probs
            yield name, ev, None

    ens = Ensemble.stack(items(), len(labels))
    dec = ens.decide(labels, thresholds)
    dec.insert(0, "sample_id", np.arange(len(labels), dtype=np.int64))
    counts = {
        "n": int(len(dec)),
        "fix": int((dec["action"] == "fix").sum()),
        "remove": int((dec["action"] == "remove").sum()),
        "keep": int((dec["action"] == "keep").sum()),
        "issues_per_model": ens.issues,
    }
    return dec, counts


def write_arrays_decisions(path: str | Path, decisions: pd.DataFrame, *, thresholds: Thresholds, models: Sequence[str]) -> None:
    """Write :func:`clean_arrays` output as parquet with its thresholds in the metadata."""
    table = pa.Table.from_pandas(decisions[ARRAYS_SCHEMA.names], schema=ARRAYS_SCHEMA, preserve_index=False)
    write_table(path, table, metadata={"thresholds": json.dumps(thresholds_dict(thresholds)), "models": json.dumps(list(models))})


def _load_npy(path, what: str, *, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"file {path}: not a readable .npy array ({e})") from None


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def thresholds_dict(t: Thresholds) -> dict:
    """The thresholds as given, plus ``floor_size`` (the paper's |M|) when ``threshold_floor`` is on
    and ``fn_scope`` when it is not cleanlab's own ``"cell"``."""
    out = {"fn": t.fn, "h1": t.h1, "h2": t.h2, "h3": t.h3}
    if t.floor_size is not None:
        out["floor_size"] = t.floor_size
    if t.fn_scope != "cell":
        out["fn_scope"] = t.fn_scope
    return out


def cam_candidate_mask(manifest: pd.DataFrame, decisions: pd.DataFrame, ens: Ensemble, valid_rows: np.ndarray) -> np.ndarray:
    """Which decisions rows (aligned with ``valid_rows``) the CAMs may exempt: consensus-only removals with a
    box and at least one model that has the label in its top-k."""
    sel = consensus_only(decisions)
    has_box = np.array([b is not None and len(b) > 0 for b in manifest["boxes"].to_numpy()[valid_rows]], bool)
    return sel & has_box & (~ens.top5_miss).any(axis=0)


def cam_candidates(manifest: pd.DataFrame, decisions: pd.DataFrame, ens: Ensemble, valid_rows: np.ndarray) -> pd.DataFrame:
    """Consensus-only removals with a box and at least one model that has the label in its top-5.

    ``models`` lists those models, most confident in the label first; ``folds``
    the fold model that held each sample out (-1: the full model).
    """
    cols = ["sample_id", "path", "label", "boxes", "width", "height", "content_hash", "models", "folds"]
    sel = cam_candidate_mask(manifest, decisions, ens, valid_rows)
    rows = []
    names = np.asarray(ens.names, dtype=object)
    for i in np.flatnonzero(sel):
        hit = np.flatnonzero(~ens.top5_miss[:, i])
        order = hit[np.argsort(-ens.label_probs[hit, i], kind="stable")]
        m = manifest.iloc[valid_rows[i]]
        rows.append({
            "sample_id": m["sample_id"], "path": m["path"], "label": int(m["label"]),
            "boxes": [list(map(float, b)) for b in m["boxes"]], "width": int(m["width"]), "height": int(m["height"]),
            "content_hash": m.get("content_hash"), "models": names[order].tolist(),
            "folds": ens.folds[order, i].astype(int).tolist(),
        })
    return pd.DataFrame(rows, columns=cols)


def row_to_sample(msg: str, sample_ids: np.ndarray) -> str:
    """Add the sample id to a 'row i' message (rows are positions among the usable rows)."""
    import re

    m = re.search(r"row (\d+)", msg)
    if m and int(m.group(1)) < len(sample_ids):
        return f"{msg} (sample {sample_ids[int(m.group(1))]!r})"
    return msg


def full_decisions(manifest: pd.DataFrame, dec: pd.DataFrame, valid_rows: np.ndarray, reason: np.ndarray,
                    classes: ClassList) -> pd.DataFrame:
    n = len(manifest)
    labels = manifest["label"].to_numpy(np.int64)
    out = pd.DataFrame({
        "sample_id": manifest["sample_id"].to_numpy(),
        "path": manifest["path"].to_numpy(),
        "label": labels,
        "wnid": manifest["wnid"].to_numpy(),
        "action": np.full(n, "remove", dtype=object),
        "new_label": labels.copy(),
        "rules": pd.Series([[RULE_UNREADABLE] for _ in range(n)], dtype=object),
        "n_flagged": np.zeros(n, np.int64),
        "flagged_models": pd.Series([[] for _ in range(n)], dtype=object),
        "candidates": pd.Series([[] for _ in range(n)], dtype=object),
        "c_s": np.zeros(n, np.int64),
        "cam_scores": np.full(n, "{}", dtype=object),
        "exempted_by": np.full(n, "", dtype=object),
        "content_hash": manifest["content_hash"].to_numpy(dtype=object) if "content_hash" in manifest else np.full(n, None, object),
        "reason": reason,
    })
    for col in ("action", "new_label", "n_flagged", "c_s", "cam_scores", "exempted_by"):
        vals = out[col].to_numpy().copy()
        vals[valid_rows] = dec[col].to_numpy()
        out[col] = vals
    for col in ("rules", "flagged_models", "candidates"):
        vals = out[col].tolist()
        for i, v in zip(valid_rows.tolist(), dec[col].tolist()):
            vals[i] = v
        out[col] = pd.Series(vals, dtype=object, index=out.index)
    return out


def clean_manifest(manifest: pd.DataFrame, decisions: pd.DataFrame, merges: dict[str, str], classes: ClassList) -> pd.DataFrame:
    """Kept and fixed rows after merges, plus a placeholder row per merged (emptied) class.

    Rows given a label set (action ``relabel_set``) are kept with that action and the
    first class of the set as ``label``; when the decisions have a ``labels`` column,
    so does the result: the set after merges (repeats dropped, order kept), ``[label]``
    on every other row.
    """
    keep = (decisions["action"] != "remove").to_numpy()
    fixed = (decisions["action"] == "fix").to_numpy()[keep]
    is_set = (decisions["action"] == ACTION_SET).to_numpy()[keep]
    new = decisions["new_label"].to_numpy(np.int64)[keep]
    final, moved = apply_merges(new, merges, classes)
    action = np.where(fixed, np.where(moved, "fix+merge", "fix"), np.where(moved, "merge", "keep")).astype(object)
    action[is_set] = ACTION_SET
    wnids = np.asarray(classes.wnids, dtype=object)
    m = manifest[keep]
    rows = pd.DataFrame({
        "sample_id": m["sample_id"].to_numpy(),
        "path": m["path"].to_numpy(),
        "label": final,
        "wnid": wnids[final],
        "orig_label": m["label"].to_numpy(np.int64),
        "orig_wnid": m["wnid"].to_numpy(),
        "action": action,
        "size": m["size"].to_numpy(np.int64) if "size" in m else np.zeros(len(m), np.int64),
        "content_hash": m["content_hash"].to_numpy() if "content_hash" in m else None,
    })
    places = placeholder_rows(merges, classes)
    if "labels" in decisions:
        rows["labels"] = pd.Series([merged_set(s, merges, classes) if a else [int(v)] for s, a, v in
                                    zip(decisions["labels"].to_numpy()[keep], is_set, final)], dtype=object)
        places["labels"] = pd.Series([[int(v)] for v in places["label"]], dtype=object)
    return pd.concat([rows, places], ignore_index=True)


def merged_set(labels, merges: dict[str, str], classes: ClassList) -> list[int]:
    """A label set after the category merges: each class mapped, repeats dropped, order kept."""
    out: list[int] = []
    if len(labels):
        mapped, _ = apply_merges(np.asarray(labels, np.int64), merges, classes)
        for v in mapped.tolist():
            if v not in out:
                out.append(int(v))
    return out


def cleanup_metrics(split, decisions, clean, ens: Ensemble, thresholds: Thresholds, res: dict, use_cam: bool,
             cands: pd.DataFrame, n: int) -> dict:
    act = decisions["action"]
    rules = decisions["rules"]
    has = lambda r: int(sum(r in x for x in rules))  # noqa: E731
    return {
        "split": split,
        "samples": int(n),
        "models": ens.names,
        "n_models": len(ens.names),
        "thresholds": thresholds_dict(thresholds),
        "thresholds_resolved": res,
        "issues_per_model": ens.issues,
        "keep": int((act == "keep").sum()),
        "fix": int((act == "fix").sum()),
        "remove": int((act == "remove").sum()),
        "remove_cl": has("cl_remove"),
        "remove_consensus": int(sum(("consensus" in r and "cam_exempt" not in r) for r in rules)),
        "unreadable": has("unreadable"),
        "consensus_only": int(sum(r == ["consensus"] for r in rules)) + has("cam_exempt"),
        "cam": use_cam,
        "cam_candidates": int(len(cands)),
        "cam_exempted": has("cam_exempt"),
        "merged": int(clean["action"].isin(["merge", "fix+merge"]).sum()),
        "placeholders": int((clean["action"] == "placeholder").sum()),
        "clean_samples": int(len(clean)),
        "classes_without_samples": len(ens.absent_classes),
        "fix_rate": float((act == "fix").mean()) if n else 0.0,
        "remove_rate": float((act == "remove").mean()) if n else 0.0,
    }
