"""Stage ``clean@split``: an ensemble's predictions -> decisions, clean manifest, change list, metrics.

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

import numpy as np
import pandas as pd
import pyarrow as pa

from ..classes import ClassList
from ..cleanup.changes import change_list
from ..cleanup.confident import model_evidence
from ..cleanup.ensemble import (
    CLEAN_SCHEMA,
    DECISIONS_SCHEMA,
    LABELS_FIELD,
    Ensemble,
    ExemptionFn,
    LoadModelFn,
    cam_candidates,
    clean_manifest,
    cleanup_metrics,
    full_decisions,
    row_to_sample,
    thresholds_dict,
)
from ..cleanup.inputs import check_prediction_shape, check_unique_ids
from ..cleanup.merges import load_merges, merge_index
from ..cleanup.rules import ACTION_SET, apply_exemptions, resolved
from ..cleanup.streamread import read_model_rows, usable_rows
from ..cleanup.verdicts import review_split
from ..config import Params, Thresholds
from ..constants import SKIPPED_WHY
from ..diskspace import check_free_space, clean_outputs_bytes
from ..io import read_metadata, read_table, write_json, write_table, write_text
from ..leftovers import sweep_outputs
from ..models.distributed import dist_info
from ..workspace import Workspace
from .common import merge_spec, project_classes, skip_reason, split_root


def trained_loader(params: Params, num_classes: int, models_dir: str | Path) -> LoadModelFn:
    """``(model name, fold) -> (module, data config)`` over the checkpoints under ``models_dir``, for the CAMs."""
    models_dir = Path(models_dir)

    def load(name: str, fold: int):
        from ..models.factory import load_trained

        return load_trained(name, params.models[name], num_classes=num_classes, fold=fold, models_dir=models_dir)

    return load


def run(params: Params, ws: Workspace, split: str, *, cam: bool | None = None,
        find_exemptions: ExemptionFn | None = None, load_model: LoadModelFn | None = None,
        n_jobs: int | None = 1) -> dict:
    """Clean one split of the workspace's round: decisions, clean manifest, change list and metrics.

    Args:
        params: The validated params.
        ws: The project and round (round >= 2 cleans the round's own training manifest
            with the round's models).
        split: A split name under ``splits`` in params.yaml.
        cam: Run the explainability exemption (default: ``params.cam.enabled``
            when that field exists, else True). Off: consensus removals stand.
        find_exemptions: The CAM function (default
            :func:`imagenet_clean.cleanup.cam.find_exemptions`); injectable for tests.
        load_model: ``(model name, fold) -> (module, data config)`` for the CAMs
            (default: :func:`trained_loader` over the round's models).
        n_jobs: cleanlab's worker processes (None: all cores).

    Returns:
        The metrics written to ``ws.cleanup_metrics(split)``.

    A split that params.yaml does not configure, or whose ``root`` is null, is
    skipped: empty outputs and ``{"skipped": true}`` metrics are written (as
    ``ingest`` does), so that DVC finds the stage's outputs.

    Raises:
        ValueError: no models, predictions that do not match the manifest or
            are not probabilities (naming file, model and row).
    """
    sweep_outputs([ws.decisions(split), ws.clean(split), ws.changes(split), ws.cleanup_metrics(split),
                   ws.cam_cache(split)])  # what killed runs' atomic writes left (leftovers.py)
    why = skip_reason(params, split)
    if why:
        return write_skipped(ws, split, why)
    ev = split_evidence(params, ws, split, n_jobs=n_jobs)
    manifest, meta, classes, k, n = ev.manifest, ev.meta, ev.classes, len(ev.classes), len(ev.manifest)
    thresholds, names, valid_rows, labels, reason, merges, ens = (ev.thresholds, ev.names, ev.valid_rows, ev.labels,
                                                                  ev.reason, ev.merges, ev.ens)
    merge_lut, candidate_lut = ev.merge_lut, ev.candidate_lut
    dec = ens.decide(labels, thresholds)
    dec.insert(0, "sample_id", manifest["sample_id"].to_numpy()[valid_rows])
    dec = apply_exemptions(dec, None)

    use_cam = cam if cam is not None else bool(getattr(params.cam, "enabled", True))
    cands = cam_candidates(manifest, dec, ens, valid_rows)
    if use_cam and len(cands):
        extra = {}
        if find_exemptions is None:
            from ..cleanup.cam import find_exemptions

            extra["max_pixels"] = params.ingest.max_pixels
        loader = load_model or trained_loader(params, k, ws.models)
        root = split_root(meta, params, split, ws)
        ex = find_exemptions(cands, root=root, load_model=loader, cfg=params.cam, cache_dir=ws.cam_cache(split), **extra)
        dec = apply_exemptions(dec, ex)
    rank, _ = dist_info()
    if rank != 0:  # under torchrun the ranks shared the CAM work; rank 0 writes the outputs
        return {"split": split, "rank": rank, "cam_candidates": int(len(cands))}

    decisions = full_decisions(manifest, dec, valid_rows, reason, classes)
    qc = params.quality
    if qc.enabled:  # the optional quality rule (cleanup/quality.py); off, the quality file is not read
        from ..cleanup.quality import apply_quality_rule, read_quality

        decisions = apply_quality_rule(decisions, read_quality(ws.quality(split)), qc.thresholds, source=str(ws.quality(split)))
    if params.label_sets.enabled:  # the optional label-set rule (cleanup/labelsets.py); off, the windows file is not read
        decisions = label_set_decisions(params, ws, split, decisions, merges=merges, classes=classes, models=names,
                                        ens=ens, valid_rows=valid_rows)
    dc = params.duplicates
    if dc.remove:  # the optional duplicate rule (cleanup/duplicate_rule.py); off, the removal list is not read
        from ..cleanup.duplicate_rule import apply_duplicate_rule, read_removals

        decisions = apply_duplicate_rule(decisions, read_removals(ws.duplicate_removals, remove_max_distance=dc.remove_max_distance),
                                         split=split)
    decisions, review = review_split(decisions, ws.reviews(split), classes)  # human verdicts (cleanup/verdicts.py)
    clean = clean_manifest(manifest, decisions, merges, classes)
    res = resolved(thresholds, len(names))
    changes = change_list(decisions, clean, classes, n_models=len(names), thresholds=res)

    table_meta = {**meta, "thresholds": json.dumps(thresholds_dict(thresholds)), "models": json.dumps(names),
                  "merges": str(params.dataset.merges), "cam": json.dumps(use_cam)}
    if qc.enabled:
        table_meta["quality"] = json.dumps({m: {"min": b.min, "max": b.max} for m, b in qc.thresholds.items()})
    if params.label_sets.enabled:
        ls = params.label_sets
        table_meta["label_sets"] = json.dumps({"window": ls.window, "stride": ls.stride, "min_prob": ls.min_prob,
                                               "min_models": ls.min_models, "max_confidence": ls.max_confidence,
                                               "extend_prob": ls.extend_prob, "max_overlap": ls.max_overlap})
    if dc.remove:
        table_meta["duplicates"] = json.dumps({"remove_max_distance": dc.remove_max_distance})
    schema, clean_schema = DECISIONS_SCHEMA, CLEAN_SCHEMA
    if "labels" in decisions:
        schema, clean_schema = schema.append(LABELS_FIELD), clean_schema.append(LABELS_FIELD)
    if "verdict" in decisions:
        schema = schema.append(pa.field("verdict", pa.string()))
    write_table(ws.decisions(split), pa.Table.from_pandas(decisions, schema=schema, preserve_index=False),
                metadata=table_meta)
    write_table(ws.clean(split), pa.Table.from_pandas(clean, schema=clean_schema, preserve_index=False), metadata=table_meta)
    write_text(ws.changes(split), changes.to_csv(index=False, lineterminator="\n"))
    metrics = {**cleanup_metrics(split, decisions, clean, ens, thresholds, res, use_cam, cands, n), "topk": params.topk,
               "topk_merged": bool(merge_lut is not None), "flags_merged": bool(candidate_lut is not None)}
    metrics["threshold_sources"] = params.threshold_sources(split)
    if qc.enabled:  # only then, so that the metrics with the rule off are those of before
        metrics["remove_quality"] = int(sum("quality" in r for r in decisions["rules"]))
        metrics["remove_quality_only"] = int(sum(list(r) == ["quality"] for r in decisions["rules"]))
    if "labels" in decisions:  # only then, as for the quality rule
        metrics["relabel_set"] = int((decisions["action"] == ACTION_SET).sum())
    if dc.remove:  # likewise: only then
        metrics["remove_duplicate"] = int(sum("duplicate" in r for r in decisions["rules"]))
    if "verdict" in decisions:
        metrics.update(reviewed=len(review.applied), stale_verdicts=len(review.stale))
    write_json(ws.cleanup_metrics(split), metrics)
    return metrics



def label_set_decisions(params: Params, ws: Workspace, split: str, decisions: pd.DataFrame, *, merges: dict,
                        classes: ClassList, models: list[str], ens: Ensemble, valid_rows: np.ndarray) -> pd.DataFrame:
    """The decisions with the label-set rule applied from ``ws.windows(split)`` (cleanup/labelsets.py).

    Raises:
        ValueError: the windows file was written by other models (stale), or
            ``label_sets.min_models`` asks more models than the ensemble has.
    """
    from ..cleanup.labelsets import ambiguous, apart, apply_label_sets, class_windows, extend_sets, found_classes, read_windows
    from ..errors import ConfigError
    from ..thresholds import resolve_threshold

    cfg = params.label_sets
    if cfg.extend_prob > cfg.min_prob:
        raise ConfigError(f"label_sets.extend_prob {cfg.extend_prob} is above label_sets.min_prob {cfg.min_prob}: "
                          "the extension level must be the looser one")
    need = resolve_threshold(cfg.min_models, len(models))
    if not 1 <= need <= len(models):
        raise ConfigError(f"label_sets.min_models {cfg.min_models!r} resolves to {need:g} models; the ensemble has {len(models)}")
    path = ws.windows(split)
    rows, cls, prob = read_windows(path)
    file_meta = read_metadata(path)
    written_by = json.loads(file_meta.get("models", "[]"))
    if written_by != models:
        raise ValueError(f"{path} was written by models {written_by}, params.yaml lists {models}: "
                         f"rerun `imagenet-clean windows --split {split}`")
    lut = merge_index(merges, classes) if merges else None
    found = class_windows(cls, prob, min_prob=cfg.min_prob, min_models=need, merge_lut=lut)
    far = apart(found, rows[["width", "height"]].to_numpy(), window=float(file_meta["window"]),
                stride=float(file_meta["stride"]), max_overlap=cfg.max_overlap)  # two classes in separate regions
    sets = [list(f) if ok else [] for f, ok in zip(found, far)]
    if cfg.extend_prob < cfg.min_prob:
        sets = extend_sets(sets, found_classes(cls, prob, min_prob=cfg.extend_prob, min_models=need, merge_lut=lut))
    eligible = np.zeros(len(decisions), bool)
    eligible[valid_rows] = ambiguous(ens.top_probs, max_confidence=cfg.max_confidence)
    return apply_label_sets(decisions, rows, sets, eligible=eligible, source=str(path))


@dataclass
class SplitEvidence:
    """What the clean stage reads of a split before it decides: the manifest, the stacked per-model evidence
    (:class:`~imagenet_clean.cleanup.ensemble.Ensemble`, over the rows every model predicted) and the merges.

    ``imagenet-clean tune`` reads the same (:mod:`imagenet_clean.review.tune`), so that its decisions are the
    clean stage's.
    """

    manifest: pd.DataFrame
    meta: dict
    classes: ClassList
    thresholds: Thresholds
    names: list[str]
    valid_rows: np.ndarray
    labels: np.ndarray
    reason: np.ndarray
    merges: dict
    merge_lut: np.ndarray | None
    candidate_lut: np.ndarray | None
    ens: Ensemble


def split_evidence(params: Params, ws: Workspace, split: str, *, n_jobs: int | None = 1,
                   check_space: bool = True) -> SplitEvidence:
    """Read a split's manifest and every model's predictions, one model at a time, into the ensemble's evidence.

    Args:
        params: The validated params.
        ws: The project and round.
        split: A cleaned split.
        n_jobs: cleanlab's worker processes (None: all cores).
        check_space: Refuse when the decisions' folder lacks room for the clean stage's outputs
            (off for readers that write nothing, such as ``imagenet-clean tune``).

    Raises:
        ValueError: no models, predictions that do not match the manifest or
            are not probabilities (naming file, model and row).
    """
    if not params.models:
        raise ValueError("params.yaml lists no models; the cleanup needs at least one")
    thresholds = params.thresholds(split)
    params.resolved_thresholds(split)  # refuses a threshold outside [1, |M|] before any work
    manifest_path = ws.round_manifest(split)
    manifest = read_table(manifest_path)
    meta = read_metadata(manifest_path)
    classes = project_classes(meta, params, ws)
    k = len(classes)
    n = len(manifest)
    if check_space:
        check_free_space({ws.decisions(split).parent: clean_outputs_bytes(manifest_path, n)}, what=f"clean@{split}")
    ids = pd.Index(manifest["sample_id"])
    check_unique_ids(ids, source=str(manifest_path))
    labels_all = manifest["label"].to_numpy(np.int64)
    ok = (manifest["status"].to_numpy() == "ok")
    reason = np.where(ok, "", manifest["reason"].fillna("").astype(str).to_numpy()).astype(object)
    bad_lab = ok & ((labels_all < 0) | (labels_all >= k))
    if bad_lab.any():
        i = int(np.flatnonzero(bad_lab)[0])
        raise ValueError(f"file {manifest_path}: label {labels_all[i]} of {manifest['sample_id'].iloc[i]!r} (row {i}) "
                         f"is out of range for {k} classes")

    # pass 1: which rows does every model have usable predictions for?
    names = list(params.models)
    files = {m: ws.predictions(split, m) for m in names}
    positions, ok = usable_rows(files, ids, ok, reason=reason,  # shapes checked before any probabilities are read
                                check=lambda m, path: check_prediction_shape(path, model=m, num_classes=k))
    valid_rows = np.flatnonzero(ok)
    labels = labels_all[valid_rows]

    merges = load_merges(merge_spec(params, ws), classes)
    lut = merge_index(merges, classes) if merges else None
    merge_lut = lut if params.topk_merged else None
    candidate_lut = lut if params.flags_merged else None

    # pass 2: one model at a time, reduced to N-vectors at once
    def items():
        for m in names:
            preds = read_model_rows(files[m], positions[m][valid_rows])  # batch by batch: no second copy of the matrix
            if preds.probs.shape[1] != k:
                raise ValueError(f"file {files[m]}, model {m!r}: {preds.probs.shape[1]} classes, but the class list has {k}")
            probs, top5, fold = preds.probs, preds.top5, preds.fold
            del preds
            try:
                ev = model_evidence(labels, probs, frac_noise=thresholds.fn, fn_scope=thresholds.fn_scope, top5=top5,
                                    topk=params.topk, merge_lut=merge_lut, candidate_lut=candidate_lut, n_jobs=n_jobs,
                                    source=str(files[m]), model=m)
            except ValueError as e:
                raise ValueError(row_to_sample(str(e), manifest["sample_id"].to_numpy()[valid_rows])) from None
            del probs
            yield m, ev, fold

    ens = Ensemble.stack(items(), len(valid_rows))
    return SplitEvidence(manifest=manifest, meta=meta, classes=classes, thresholds=thresholds, names=names,
                         valid_rows=valid_rows, labels=labels, reason=reason, merges=merges, merge_lut=merge_lut,
                         candidate_lut=candidate_lut, ens=ens)


def write_skipped(ws: Workspace, split: str, why: str) -> dict:
    """Empty outputs for a split that is not configured (as ``ingest`` does), so DVC finds its outs."""
    from ..cleanup.changes import CHANGE_COLUMNS

    meta = {"split": split, "skipped": "true"}
    write_table(ws.decisions(split), DECISIONS_SCHEMA.empty_table(), metadata=meta)
    write_table(ws.clean(split), CLEAN_SCHEMA.empty_table(), metadata=meta)
    write_text(ws.changes(split), ",".join(CHANGE_COLUMNS) + "\n")
    metrics = {"split": split, "skipped": True, SKIPPED_WHY: why, "samples": 0, "keep": 0, "fix": 0, "remove": 0}
    write_json(ws.cleanup_metrics(split), metrics)
    return metrics
