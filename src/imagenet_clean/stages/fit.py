"""Stage ``fit@model``: k-fold cross-validation of one model on the round's training manifest."""
from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace, model: str, *, manifest: Path | None = None, models_dir: Path | None = None,
        predictions_dir: Path | None = None, live_root: Path | None = None) -> dict | None:
    """Out-of-fold predictions of ``model`` on the training split, fold checkpoints (and the full model).

    Reads ``ws.round_manifest("train")``; writes ``ws.model_dir(model)``,
    ``ws.predictions("train", model)`` and, in round 1, the training curves under
    ``ws.live_root``. See :func:`imagenet_clean.models.fit_run.run_fit`. The
    keyword arguments replace one of these paths (``imagenet-clean fit`` on files
    outside the project).

    Returns:
        The summary on rank 0; None on other ranks.
    """
    from ..models.fit_run import run_fit

    return run_fit(model, params, manifest=manifest or ws.round_manifest("train"), models_dir=models_dir or ws.models,
                   predictions_dir=predictions_dir or ws.predictions_dir("train"), live_root=live_root or ws.live_root,
                   features_dir=ws.features)
