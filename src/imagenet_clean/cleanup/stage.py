"""The clean stage: predictions of an ensemble -> decisions, clean manifest, change list, metrics.

``clean_split`` is the DVC stage ``imagenet-clean clean --split S``; ``clean_arrays``
runs the same rules on plain arrays (``imagenet-clean clean-arrays``).

Memory: the models are read one at a time (two passes: first only their
``sample_id``/``status`` columns to settle which rows are usable by every model,
then each model's probabilities, reduced at once to the N-vectors of
:class:`~imagenet_clean.cleanup.confident.ModelEvidence`), so the peak is about
one model's float32 matrix plus cleanlab's own temporaries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..classes import ClassList, load_classes
from ..config import Params, Thresholds
from ..io import read_metadata, read_table, write_json, write_table, write_text
from ..predictions import read_predictions
from .changes import change_list
from .confident import ModelEvidence, model_evidence
from .merges import apply_merges, load_merges, placeholder_rows
from .rules import RULE_UNREADABLE, apply_exemptions, consensus_only, decide, resolved
from .verdicts import review_split

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

ARRAYS_SCHEMA = pa.schema([f for f in DECISIONS_SCHEMA if f.name in
                           ("label", "action", "new_label", "rules", "n_flagged", "flagged_models", "candidates", "c_s")])
ARRAYS_SCHEMA = ARRAYS_SCHEMA.insert(0, pa.field("sample_id", pa.int64()))

ExemptionFn = Callable[..., pd.DataFrame]
LoadModelFn = Callable[[str, int], tuple]


@dataclass(frozen=True)
class SplitPaths:
    """Where the clean stage reads and writes, relative to the project folder."""

    manifest: Path
    predictions: Path
    decisions: Path
    clean: Path
    changes: Path
    metrics: Path
    cam_cache: Path
    reviews: Path | None = None  # the split's human verdicts (None: not reviewed)

    @classmethod
    def of(cls, split: str, workdir: str | Path = ".") -> "SplitPaths":
        w = Path(workdir)
        return cls(
            manifest=w / "data" / "manifests" / f"{split}.parquet",
            predictions=w / "data" / "predictions" / split,
            decisions=w / "data" / "decisions" / f"{split}.parquet",
            clean=w / "data" / "clean" / f"{split}.parquet",
            changes=w / "data" / "changes" / f"{split}.csv",
            metrics=w / "metrics" / "cleanup" / f"{split}.json",
            cam_cache=w / "data" / "cache" / "cams" / split,
            reviews=w / "reviews" / f"{split}.csv",
        )


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
            ev = model_evidence(labels, probs, frac_noise=thresholds.fn, n_jobs=n_jobs, source=source, model=name)
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
    write_table(path, table, metadata={"thresholds": json.dumps(_thr_dict(thresholds)), "models": json.dumps(list(models))})


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


def _thr_dict(t: Thresholds) -> dict:
    return {"fn": t.fn, "h1": t.h1, "h2": t.h2, "h3": t.h3}


# ------------------------------------------------------------------ the DVC stage


def _prediction_index(path: Path, manifest_ids: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the manifest's samples in a prediction file, and that file's status/reason per manifest row."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prediction file (has `imagenet-clean predict-split` run for this model?)")
    t = pq.read_table(path, columns=["sample_id", "status", "reason"])
    ids = pd.Index(t["sample_id"].to_numpy(zero_copy_only=False))
    if ids.has_duplicates:
        raise ValueError(f"file {path}: duplicate sample_id {ids[ids.duplicated()][0]!r}")
    pos = ids.get_indexer(manifest_ids)
    if (pos < 0).any():
        miss = manifest_ids[pos < 0]
        raise ValueError(f"file {path}: {len(miss)} manifest samples have no prediction, e.g. {miss[0]!r} "
                         "(re-run the predict stage for this split)")
    if len(ids) != len(manifest_ids):
        extra = ids[~ids.isin(manifest_ids)]
        raise ValueError(f"file {path}: {len(extra)} predictions for samples not in the manifest, e.g. {extra[0]!r}")
    status = t["status"].to_numpy(zero_copy_only=False)[pos]
    reason = t["reason"].to_numpy(zero_copy_only=False)[pos]
    return pos, status, reason


def _trained_loader(params: Params, num_classes: int, workdir: str | Path, models_dir: str | Path | None = None) -> LoadModelFn:
    models_dir = Path(workdir) / "data" / "models" if models_dir is None else Path(models_dir)

    def load(name: str, fold: int):
        from ..models.factory import load_trained

        return load_trained(name, params.models[name], num_classes=num_classes, fold=fold, models_dir=models_dir)

    return load


def cam_candidates(manifest: pd.DataFrame, decisions: pd.DataFrame, ens: Ensemble, valid_rows: np.ndarray) -> pd.DataFrame:
    """Consensus-only removals with a box and at least one model that has the label in its top-5.

    ``models`` lists those models, most confident in the label first; ``folds``
    the fold model that held each sample out (-1: the full model).
    """
    cols = ["sample_id", "path", "label", "boxes", "width", "height", "content_hash", "models", "folds"]
    sel = consensus_only(decisions)
    has_box = np.array([b is not None and len(b) > 0 for b in manifest["boxes"].to_numpy()[valid_rows]], bool)
    sel &= has_box & (~ens.top5_miss).any(axis=0)
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


def clean_split(split: str, params: Params, *, workdir: str | Path = ".", paths: SplitPaths | None = None,
                models_dir: str | Path | None = None, cam: bool | None = None,
                find_exemptions: ExemptionFn | None = None, load_model: LoadModelFn | None = None,
                n_jobs: int | None = 1) -> dict:
    """Clean one split: decisions, clean manifest, change list and metrics.

    Args:
        split: A split name under ``splits`` in params.yaml.
        params: The validated params.
        workdir: The project folder (paths of the data contracts are relative to it).
        paths: Where to read and write (default: ``SplitPaths.of(split, workdir)``); the
            cleaning rounds pass their own folders.
        models_dir: Parent of the models' checkpoint folders for the CAMs (default
            ``<workdir>/data/models``).
        cam: Run the explainability exemption (default: ``params.cam.enabled``
            when that field exists, else True). Off: consensus removals stand.
        find_exemptions: The CAM function (default
            :func:`imagenet_clean.cleanup.cam.find_exemptions`); injectable for tests.
        load_model: ``(model name, fold) -> (module, data config)`` for the CAMs
            (default: :func:`imagenet_clean.models.factory.load_trained`).
        n_jobs: cleanlab's worker processes (None: all cores).

    Returns:
        The metrics written to ``metrics/cleanup/<split>.json``.

    A split that params.yaml does not configure, or whose ``root`` is null, is
    skipped: empty outputs and ``{"skipped": true}`` metrics are written (as
    ``ingest`` does), so that DVC finds the stage's outputs.

    Raises:
        ValueError: no models, predictions that do not match the manifest or
            are not probabilities (naming file, model and row).
    """
    paths = paths or SplitPaths.of(split, workdir)
    sc = params.splits.get(split)
    if sc is None or not sc.root:
        why = "not configured in params.yaml splits" if sc is None else f"splits.{split}.root is null"
        return _write_skipped(split, paths, why)
    if not params.models:
        raise ValueError("params.yaml lists no models; the cleanup needs at least one")
    thresholds = params.thresholds(split)
    params.resolved_thresholds(split)  # refuses a threshold outside [1, |M|] before any work
    manifest = read_table(paths.manifest)
    meta = read_metadata(paths.manifest)
    classes = project_classes(meta, params, workdir)
    k = len(classes)
    n = len(manifest)
    ids = pd.Index(manifest["sample_id"])
    if ids.has_duplicates:
        raise ValueError(f"file {paths.manifest}: duplicate sample_id {ids[ids.duplicated()][0]!r}")
    labels_all = manifest["label"].to_numpy(np.int64)
    ok = (manifest["status"].to_numpy() == "ok")
    reason = np.where(ok, "", manifest["reason"].fillna("").astype(str).to_numpy()).astype(object)
    bad_lab = ok & ((labels_all < 0) | (labels_all >= k))
    if bad_lab.any():
        i = int(np.flatnonzero(bad_lab)[0])
        raise ValueError(f"file {paths.manifest}: label {labels_all[i]} of {manifest['sample_id'].iloc[i]!r} (row {i}) "
                         f"is out of range for {k} classes")

    # pass 1: which rows does every model have usable predictions for?
    names = list(params.models)
    files = {m: paths.predictions / f"{m}.parquet" for m in names}
    positions = {}
    for m in names:
        pos, status, why = _prediction_index(files[m], ids)
        positions[m] = pos
        lost = ok & (status != "ok")
        reason[lost] = [f"model {m}: {w or 'no prediction'}" for w in why[lost]]
        ok &= ~lost
    valid_rows = np.flatnonzero(ok)
    labels = labels_all[valid_rows]

    # pass 2: one model at a time, reduced to N-vectors at once
    def items():
        for m in names:
            preds = read_predictions(files[m])
            if preds.probs.shape[1] != k:
                raise ValueError(f"file {files[m]}, model {m!r}: {preds.probs.shape[1]} classes, but the class list has {k}")
            take = positions[m][valid_rows]
            identity = len(take) == len(preds.probs) and np.array_equal(take, np.arange(len(take)))
            probs = preds.probs if identity else preds.probs[take]
            top5, fold = preds.top5[take], preds.fold[take]
            del preds
            try:
                ev = model_evidence(labels, probs, frac_noise=thresholds.fn, top5=top5, topk=params.topk, n_jobs=n_jobs,
                                    source=str(files[m]), model=m)
            except ValueError as e:
                raise ValueError(_row_to_sample(str(e), manifest["sample_id"].to_numpy()[valid_rows])) from None
            del probs
            yield m, ev, fold

    ens = Ensemble.stack(items(), len(valid_rows))
    dec = ens.decide(labels, thresholds)
    dec.insert(0, "sample_id", manifest["sample_id"].to_numpy()[valid_rows])
    dec = apply_exemptions(dec, None)

    use_cam = cam if cam is not None else bool(getattr(params.cam, "enabled", True))
    cands = cam_candidates(manifest, dec, ens, valid_rows)
    if use_cam and len(cands):
        extra = {}
        if find_exemptions is None:
            from .cam import find_exemptions

            extra["max_pixels"] = params.ingest.max_pixels
        loader = load_model or _trained_loader(params, k, workdir, models_dir)
        root = _root(meta, params, split, workdir)
        ex = find_exemptions(cands, root=root, load_model=loader, cfg=params.cam, cache_dir=paths.cam_cache, **extra)
        dec = apply_exemptions(dec, ex)
    if _rank() != 0:  # under torchrun the ranks shared the CAM work; rank 0 writes the outputs
        return {"split": split, "rank": _rank(), "cam_candidates": int(len(cands))}

    decisions = _full_decisions(manifest, dec, valid_rows, reason, classes)
    decisions, review = review_split(decisions, paths.reviews, classes)  # human verdicts (cleanup/verdicts.py)
    merges = load_merges(merge_spec(params.dataset.merges, workdir), classes)
    clean = clean_manifest(manifest, decisions, merges, classes)
    res = resolved(thresholds, len(names))
    changes = change_list(decisions, clean, classes, n_models=len(names), thresholds=res)

    table_meta = {**meta, "thresholds": json.dumps(_thr_dict(thresholds)), "models": json.dumps(names),
                  "merges": str(params.dataset.merges), "cam": json.dumps(use_cam)}
    schema = DECISIONS_SCHEMA.append(pa.field("verdict", pa.string())) if "verdict" in decisions else DECISIONS_SCHEMA
    write_table(paths.decisions, pa.Table.from_pandas(decisions, schema=schema, preserve_index=False),
                metadata=table_meta)
    write_table(paths.clean, pa.Table.from_pandas(clean, schema=CLEAN_SCHEMA, preserve_index=False), metadata=table_meta)
    write_text(paths.changes, changes.to_csv(index=False, lineterminator="\n"))
    metrics = {**_metrics(split, decisions, clean, ens, thresholds, res, use_cam, cands, n), "topk": params.topk}
    metrics["threshold_sources"] = params.threshold_sources(split)
    if "verdict" in decisions:
        metrics.update(reviewed=len(review.applied), stale_verdicts=len(review.stale))
    write_json(paths.metrics, metrics)
    return metrics


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _write_skipped(split: str, paths: SplitPaths, why: str) -> dict:
    """Empty outputs for a split that is not configured (as ``ingest`` does), so DVC finds its outs."""
    from .changes import CHANGE_COLUMNS

    meta = {"split": split, "skipped": "true"}
    write_table(paths.decisions, DECISIONS_SCHEMA.empty_table(), metadata=meta)
    write_table(paths.clean, CLEAN_SCHEMA.empty_table(), metadata=meta)
    write_text(paths.changes, ",".join(CHANGE_COLUMNS) + "\n")
    metrics = {"split": split, "skipped": True, "why": why, "samples": 0, "keep": 0, "fix": 0, "remove": 0}
    write_json(paths.metrics, metrics)
    return metrics


def _row_to_sample(msg: str, sample_ids: np.ndarray) -> str:
    """Add the sample id to a 'row i' message (rows are positions among the usable rows)."""
    import re

    m = re.search(r"row (\d+)", msg)
    if m and int(m.group(1)) < len(sample_ids):
        return f"{msg} (sample {sample_ids[int(m.group(1))]!r})"
    return msg


def project_classes(meta: dict, params: Params, workdir) -> ClassList:
    """The class list a manifest names (``meta["classes"]``), else ``dataset.classes``, a relative path read in ``workdir``."""
    spec = meta.get("classes") or params.dataset.classes
    if spec != "imagenet-1k" and not Path(spec).is_absolute():
        spec = str(Path(workdir) / spec)
    return load_classes(spec)


def merge_spec(spec: str, workdir) -> str:
    """``dataset.merges`` with a relative CSV path made relative to ``workdir``; built-in names pass through."""
    from .merges import BUILTIN_MERGES, NO_MERGES

    if spec in BUILTIN_MERGES or spec == NO_MERGES or Path(spec).is_absolute():
        return spec
    return str(Path(workdir) / spec)


def _root(meta: dict, params: Params, split: str, workdir) -> Path:
    root = meta.get("root") or params.splits[split].root or "."
    root = Path(root)
    return root if root.is_absolute() else Path(workdir) / root


def _full_decisions(manifest: pd.DataFrame, dec: pd.DataFrame, valid_rows: np.ndarray, reason: np.ndarray,
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
    """Kept and fixed rows after merges, plus a placeholder row per merged (emptied) class."""
    keep = (decisions["action"] != "remove").to_numpy()
    fixed = (decisions["action"] == "fix").to_numpy()[keep]
    new = decisions["new_label"].to_numpy(np.int64)[keep]
    final, moved = apply_merges(new, merges, classes)
    action = np.where(fixed, np.where(moved, "fix+merge", "fix"), np.where(moved, "merge", "keep")).astype(object)
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
    return pd.concat([rows, placeholder_rows(merges, classes)], ignore_index=True)


def _metrics(split, decisions, clean, ens: Ensemble, thresholds: Thresholds, res: dict, use_cam: bool,
             cands: pd.DataFrame, n: int) -> dict:
    act = decisions["action"]
    rules = decisions["rules"]
    has = lambda r: int(sum(r in x for x in rules))  # noqa: E731
    return {
        "split": split,
        "samples": int(n),
        "models": ens.names,
        "n_models": len(ens.names),
        "thresholds": _thr_dict(thresholds),
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
