"""Stage ``features@model``: pooled features of one pretrained backbone on every split (``train.mode: probe``)."""
from __future__ import annotations

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace, model: str) -> dict:
    """Write ``ws.features / model / <split>.parquet`` for each split with manifest rows (a skipped marker outside probe mode).

    See :func:`imagenet_clean.models.probe_run.run_features`. Shards go to ``ws.features_cache`` (resumable).
    """
    from ..models.probe_run import run_features

    return run_features(model, params, manifests_dir=ws.manifests, out_dir=ws.features, cache_dir=ws.features_cache)
