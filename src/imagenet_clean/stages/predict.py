"""Stage ``predict@split``: every configured model predicts an evaluated split."""
from __future__ import annotations

from typing import Sequence

from ..config import Params
from ..workspace import Workspace


def run(params: Params, ws: Workspace, split: str, *, models: Sequence[str] | None = None) -> dict:
    """Predict the original manifest of ``split`` with the round's models into ``ws.predictions_dir(split)``.

    See :func:`imagenet_clean.models.predict_run.run_predict_split` (weights, skipped
    splits, subsets, torchrun). Shards go to ``ws.predict_cache`` (resumable).

    Returns:
        ``{model: summary}`` on rank 0; ``{}`` on other ranks.
    """
    from ..models.predict_run import run_predict_split

    return run_predict_split(split, params, manifests_dir=ws.manifests, models_dir=ws.models, out_dir=ws.all_predictions,
                             cache_dir=ws.predict_cache, models=list(models) if models else None,
                             features_dir=ws.features)
