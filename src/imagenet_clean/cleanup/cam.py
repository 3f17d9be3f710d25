"""Explainability exemption (paper section 3.2, DESIGN.md rule 5).

A consensus-removal candidate with a bounding box is exempted when one model
that has its label in the top-5 "looks at" the box: for Grad-CAM, Grad-CAM++
and Score-CAM (``pytorch_grad_cam``) on the model's last convolutional stage,
the heatmap of the label is mapped back to the original image
(:mod:`imagenet_clean.cleanup.camgeom`) and the fraction of box pixels with heat
``>= cfg.heat`` is the method's score; a method passes at ``>= cfg.pass_score``;
a model exempts when ``>= cfg.min_methods`` methods pass.

Cost: Score-CAM runs one forward pass per activation channel (~300x Grad-CAM),
so the methods run cheapest first and a model stops as soon as its verdict is
settled (with the paper's 3 methods and 2 needed: Score-CAM only when Grad-CAM
and Grad-CAM++ disagree), a sample stops at its first exempting model, each
(model, fold) is loaded once per round and fed batches of images, and every
score is cached on disk (:mod:`imagenet_clean.cleanup.camcache`). ``lazy=False``
computes every method of every model; the decisions are provably the same.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from imagenet_clean.cleanup.camcache import ScoreCache, boxes_digest
from imagenet_clean.cleanup.camgeom import box_heat_score, box_mask, eval_geometry
from imagenet_clean.cleanup.cammethods import (
    CAM_METHODS,
    TARGET_LAYERS,
    compute_heatmaps,
    find_target_layer,
    model_fingerprint,
    register_target_layer,
)
from imagenet_clean.config import CamConfig
from imagenet_clean.constants import MAX_IMAGE_PIXELS
from imagenet_clean.models.distributed import dist_info

if TYPE_CHECKING:
    import torch

CANDIDATE_COLUMNS = ("sample_id", "path", "label", "boxes", "width", "height", "content_hash", "models", "folds")

__all__ = ["CAM_METHODS", "TARGET_LAYERS", "compute_heatmaps", "find_exemptions", "find_target_layer",
           "register_target_layer"]


def _verdict(scores: dict[str, float], methods: Sequence[str], cfg: CamConfig) -> bool | None:
    # True: exempts; False: cannot reach min_methods; None: more methods needed
    passed = sum(scores[m] >= cfg.pass_score for m in methods if m in scores)
    left = sum(m not in scores for m in methods)
    if passed >= cfg.min_methods:
        return True
    if passed + left < cfg.min_methods:
        return False
    return None


@dataclass
class _Sample:
    row: dict
    scores: dict  # model -> {method: score}
    error: str = ""
    exempted_by: str = ""


def _load_input(s: _Sample, root: Path, data_cfg: dict, transform, max_pixels: int):
    """(tensor, geometry, boxes in the loaded image's pixels) or raise ValueError."""
    from imagenet_clean.data.images import load_rgb

    in_h, in_w = data_cfg["input_size"][-2:]
    crop = data_cfg.get("crop_pct") or 0.875
    try:
        img = load_rgb(root / s.row["path"], max_pixels=max_pixels, within=root,
                       draft_size=(math.floor(in_w / crop), math.floor(in_h / crop)))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {s.row['path']}: {e}") from None
    w, h = img.size
    boxes = np.asarray(s.row["boxes"], dtype=np.float64).reshape(-1, 4)
    W, H = (int(v) if not pd.isna(v) else -1 for v in (s.row["width"], s.row["height"]))
    if W > 0 and H > 0 and (W, H) != (w, h):  # draft decode (or a resized file): rescale the boxes
        boxes = boxes * [w / W, h / H, w / W, h / H]
    if not box_mask(boxes, w, h).any():
        raise ValueError(f"{s.row['path']}: boxes {np.asarray(s.row['boxes']).tolist()} lie outside the {w}x{h} image")
    return transform(img), eval_geometry(data_cfg, w, h), boxes


def _image_key(row: dict) -> str:
    h = row["content_hash"]
    return str(row["sample_id"]) if h is None or pd.isna(h) or not h else str(h)


def _method_order(cfg: CamConfig) -> list[str]:
    bad = [m for m in cfg.methods if m not in CAM_METHODS]
    if bad:
        raise ValueError(f"cam.methods {bad} unknown; choose from {sorted(CAM_METHODS)}")
    if not 1 <= cfg.min_methods <= len(cfg.methods):
        raise ValueError(f"cam.min_methods={cfg.min_methods} must be in 1..{len(cfg.methods)} (len(cam.methods))")
    return sorted(dict.fromkeys(cfg.methods), key=lambda m: CAM_METHODS[m].cost)


def _validate(candidates: pd.DataFrame) -> None:
    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lack columns {missing}; need {list(CANDIDATE_COLUMNS)}")
    for i, r in enumerate(candidates[["sample_id", "models", "folds"]].itertuples(index=False)):
        if len(r.models) != len(r.folds):
            raise ValueError(f"candidates row {i} ({r.sample_id!r}): models {list(r.models)} and folds "
                             f"{list(r.folds)} differ in length")


def _cam_device():
    """This rank's device: its GPU under torchrun when CUDA is available, else the CPU."""
    from imagenet_clean.models.distributed import env_info

    return env_info().device


def _run_model(samples: list[_Sample], name: str, fold: int, model, data_cfg: dict, *, root: Path,
               cfg: CamConfig, methods: list[str], cache: ScoreCache, lazy: bool, max_pixels: int) -> None:
    """Score ``samples`` with one (model, fold), method by method, filling their ``scores``/``exempted_by``.

    Per method, the samples whose verdict is still open and whose score is not
    cached are cut into batches of ``cfg.batch_size``; under torch.distributed
    batch ``j`` is rank ``j % world_size``'s (disjoint shares), every rank commits
    its scores (and image errors) to the shared cache, and after a barrier every
    rank reads all of them back. A single process runs the same batches, so the
    scores, hence the decisions, are the same; a rerun after a kill computes only
    the batches that were not committed.
    """
    import timm.data

    from imagenet_clean.models.distributed import barrier

    k = getattr(model, "num_classes", None)
    bad = [(s.row["sample_id"], s.row["label"]) for s in samples if k and not 0 <= int(s.row["label"]) < k]
    if bad:
        raise ValueError(f"model {name!r} (fold {fold}) has {k} classes; labels out of range: {bad[:5]}")
    rank, world = dist_info()
    layer = find_target_layer(model, input_size=data_cfg["input_size"])
    fp = model_fingerprint(model, data_cfg, layer)
    model.to(_cam_device())
    keys_tf = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    transform = timm.data.create_transform(**{k: data_cfg[k] for k in keys_tf if k in data_cfg}, is_training=False)
    heat = float(cfg.heat)
    keys = {id(s): (_image_key(s.row), int(s.row["label"]), boxes_digest(s.row["boxes"]), name, int(fold), fp)
            for s in samples}
    got: dict[int, dict] = {id(s): {} for s in samples}

    def refresh(group: list[_Sample]) -> None:
        cached = cache.get_many(keys[id(s)] + (m, heat) for s in group for m in methods)
        errors = cache.get_errors(keys[id(s)] for s in group)
        for s in group:
            got[id(s)].update({m: cached[q] for m in methods if (q := keys[id(s)] + (m, heat)) in cached})
            if keys[id(s)] in errors:
                s.error = errors[keys[id(s)]]

    def settled(s: _Sample, upto: int) -> dict:
        # the scores of the methods before ``upto`` (cheapest first), so that a cached score of a later
        # method (another run's, or an exhaustive run's) never changes what is computed or reported
        return {q: got[id(s)][q] for q in methods[:upto] if q in got[id(s)]}

    refresh(samples)
    for i, m in enumerate(methods):
        todo = [s for s in samples if not s.error and m not in got[id(s)]
                and (not lazy or _verdict(settled(s, i), methods, cfg) is None)]
        batches = [todo[b0:b0 + cfg.batch_size] for b0 in range(0, len(todo), cfg.batch_size)]
        for batch in batches[rank::world]:
            inputs, errors = {}, {}
            for s in batch:
                try:
                    inputs[id(s)] = _load_input(s, root, data_cfg, transform, max_pixels)
                except ValueError as e:
                    s.error = errors[keys[id(s)]] = str(e)
            ok = [s for s in batch if id(s) in inputs]
            new = {}
            if ok:
                import torch

                hm = compute_heatmaps(model, layer, torch.stack([inputs[id(s)][0] for s in ok]),
                                      [s.row["label"] for s in ok], method=m, batch_size=cfg.batch_size,
                                      impl=getattr(cfg, "impl", "pytorch-grad-cam"),
                                      freeze=getattr(cfg, "freeze", False))
                for s, h in zip(ok, hm):
                    _, geom, boxes = inputs[id(s)]
                    got[id(s)][m] = new[keys[id(s)] + (m, heat)] = box_heat_score(h, boxes, geom, heat=cfg.heat)
            cache.put_many(new, errors=errors)  # one transaction: a kill keeps whole batches only
        if world > 1:
            barrier()
            refresh(todo)
    for s in samples:
        if s.error:
            continue
        n = len(methods)
        if lazy:  # the shortest run of methods, cheapest first, that settles the verdict
            n = next((j for j in range(1, n + 1) if _verdict(settled(s, j), methods, cfg) is not None), n)
        s.scores[name] = settled(s, n)
        if not s.exempted_by and _verdict(s.scores[name], methods, cfg):
            s.exempted_by = name


def find_exemptions(candidates: pd.DataFrame, *, root: str | Path,
                    load_model: Callable[[str, int], tuple[torch.nn.Module, dict]], cfg: CamConfig,
                    cache_dir: Path | None, lazy: bool = True, max_pixels: int = MAX_IMAGE_PIXELS) -> pd.DataFrame:
    """Which consensus-removal candidates an explainability check saves.

    Args:
        candidates: One row per candidate: ``sample_id``, ``path`` (relative to
            ``root``), ``label``, ``boxes`` (list of ``[xmin, ymin, xmax, ymax]`` in
            original pixels), ``width``, ``height``, ``content_hash`` (or null),
            ``models`` (models whose top-5 has the label, in the order to try) and
            ``folds`` (aligned with ``models``; -1 = the full model).
        root: Dataset root the paths are relative to.
        load_model: ``(model name, fold) -> (model, timm data config)``; called
            once per (model, fold) and round (round r = each sample's r-th model).
        cfg: Methods and thresholds.
        cache_dir: Folder of the score cache (reused across runs), or None.
        lazy: Compute methods cheapest first and only while a model's verdict is
            open, stopping at the first exempting model. ``False`` computes every
            method of every model (same decisions; for tests and audits).
        max_pixels: Decompression-bomb limit for reading images.

    Returns:
        One row per candidate, in order: ``sample_id``, ``exempted_by`` (the first
        exempting model, or ``""``) and ``cam_scores`` (JSON ``{model: {method:
        score}}`` of every score computed or cached, or ``{"error": reason}`` for a
        sample that cannot be scored: unreadable image, no box, box outside the image).

    Raises:
        ValueError: missing columns, ``models``/``folds`` of different lengths,
            unknown methods or ``min_methods`` out of range.
    """
    _validate(candidates)
    methods = _method_order(cfg)
    root = Path(root)
    samples = [_Sample(row=r, scores={}) for r in candidates[list(CANDIDATE_COLUMNS)].to_dict("records")]
    for s in samples:
        if s.row["boxes"] is None or not len(s.row["boxes"]):
            s.error = "no bounding box"
    rank, world = dist_info()
    if world > 1 and cache_dir is None:
        raise ValueError(f"sharding the CAMs over {world} ranks needs an on-disk cache_dir (got None)")
    if world > 1 and rank != 0:
        from imagenet_clean.models.distributed import barrier

        barrier()  # rank 0 checks (and rebuilds) the cache file first
    cache = ScoreCache(cache_dir)
    if world > 1 and rank == 0:
        from imagenet_clean.models.distributed import barrier

        barrier()
    try:
        for r in range(max((len(s.row["models"]) for s in samples), default=0)):
            groups: dict[tuple[str, int], list[_Sample]] = {}
            for s in samples:
                if not s.error and not (lazy and s.exempted_by) and len(s.row["models"]) > r:
                    groups.setdefault((str(s.row["models"][r]), int(s.row["folds"][r])), []).append(s)
            for (name, fold), group in groups.items():
                model, data_cfg = load_model(name, fold)
                _run_model(group, name, fold, model, data_cfg, root=root, cfg=cfg, methods=methods,
                           cache=cache, lazy=lazy, max_pixels=max_pixels)
    finally:
        cache.close()
    return pd.DataFrame({
        "sample_id": [s.row["sample_id"] for s in samples],
        "exempted_by": [s.exempted_by for s in samples],
        "cam_scores": [json.dumps({**s.scores, "error": s.error} if s.error else s.scores, sort_keys=True)
                       for s in samples],
    })
